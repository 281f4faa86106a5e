"""Self-supervised pretraining on the user's own footage (segloop.pretrain).

Modules (after facebookresearch/dinov2's split into configs / data / layers / losses / train loop):
`config` typed dataclasses + YAML overrides; `frames` finds per-video frame lists on disk;
`transforms`, `masking`, `data` multi-crop views, clips, iBOT block masks, seeded sampler;
`heads` DINO head; `losses` DINO, iBOT, KoLeo, contrastive random walk; `model` student/EMA
teacher; `schedules`; `checkpoint`; `dist` torchrun/DDP helpers; `train` the loop as a function
(`pretrain(config, videos, out_dir, resume=, progress=)`); `embed` per-frame embeddings
(`embed_frames`); `plot` loss curves; `backbones` timm ViTs by name; `dense` the stride-8 correspondence
encoder trained beside the ViT by colour reconstruction (`load_dense_encoder(run_dir)`,
`dense_features(encoder, frames)` for label propagation).
"""
