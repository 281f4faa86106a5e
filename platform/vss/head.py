"""Video semantic segmentation: a head on cached backbone features, trained on the labeled frames.

Two heads: `linear` (a 1×1 convolution on the last layer's patch tokens, logits upsampled
bilinearly) and `multiscale` (the default: the chosen intermediate layers projected and summed at
patch resolution, a 3×3 convolution there, then coarse logits upsampled plus a correction computed
at stride 4 from the upsampled features and a small convolutional stem on the frame; the stride-4
stage is kept tiny, 16 channels and no normalisation, so a training step takes tens of ms on a CPU).
Class 0 is background. Training samples labeled frames with replacement (horizontal flips),
cross-entropy with 255 ignored, AdamW; with `finetune_backbone` the ViT is trained too, its blocks
at layer-wise decayed learning rates (lr × decay^(depth - i)). Predictions are per-pixel class
probabilities at the head's resolution, stored as uint8 (p × 255) and upsampled for scoring. A head
trained with the temporal module (`temporal.py`) carries its gate in the same checkpoint.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from segloop.platform.core.device import resolve_device
from segloop.platform.core.errors import FinetuneError
from segloop.platform.core.image import image_tensor
from segloop.platform.core.optim import finite_loss, layer_decay_groups
from segloop.platform.core.schedules import cosine
from segloop.platform.core.storage import read_torch_dict, read_torch_file
from segloop.platform.features.backbone import FeatureSpec, VideoFeatures

IGNORE = 255
FINE = 16
HEAD_KINDS = ("linear", "multiscale")


@dataclass(frozen=True)
class VSSConfig:
    """Head training settings; defaults train in seconds on a 2-core CPU on cached features."""

    head: str = "multiscale"
    hidden: int = 64
    epochs: int = 30
    min_steps: int = 200
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    finetune_backbone: bool = False
    backbone_lr: float = 5e-5
    layer_decay: float = 0.75
    seed: int = 0
    device: str = "auto"
    save_every: int = 100

    def __post_init__(self) -> None:
        if self.head not in HEAD_KINDS:
            raise FinetuneError(f"head: {self.head!r} is not one of {', '.join(HEAD_KINDS)}")
        bad = [k for k in ("hidden", "epochs", "batch_size", "save_every") if getattr(self, k) < 1]
        if bad or self.lr <= 0 or not 0 < self.layer_decay <= 1 or self.min_steps < 0:
            raise FinetuneError(f"invalid VSS setting(s): {bad or 'lr > 0, 0 < layer_decay ≤ 1, min_steps ≥ 0'}")

    def as_dict(self) -> dict:
        """JSON-ready settings."""
        return asdict(self)


def build_head(kind: str, in_dim: int, layers: int, num_classes: int, hidden: int = 64):
    """A `linear` or `multiscale` segmentation head (torch module)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class LinearHead(nn.Module):
        """1×1 convolution on the last layer's tokens, upsampled to the label size."""

        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.BatchNorm2d(in_dim)
            self.classifier = nn.Conv2d(in_dim, num_classes, 1)

        def forward(self, feats, images):
            logits = self.classifier(self.norm(feats[:, -1]))
            return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)

    class MultiScaleHead(nn.Module):
        """Intermediate layers fused at patch resolution, then a light stride-4 stage with an RGB stem."""

        def __init__(self) -> None:
            super().__init__()
            self.project = nn.ModuleList([nn.Conv2d(in_dim, hidden, 1) for _ in range(layers)])
            self.fuse = nn.Sequential(nn.BatchNorm2d(hidden), nn.GELU(), nn.Conv2d(hidden, hidden, 3, padding=1),
                                      nn.BatchNorm2d(hidden), nn.GELU(), nn.Conv2d(hidden, FINE, 1))
            self.coarse = nn.Conv2d(FINE, num_classes, 1)
            self.stem = nn.Sequential(nn.Conv2d(3, FINE, 3, padding=1), nn.ReLU())
            self.refine = nn.Sequential(nn.Conv2d(2 * FINE, FINE, 3, padding=1), nn.ReLU(),
                                        nn.Conv2d(FINE, num_classes, 1))

        def forward(self, feats, images):
            fused = self.fuse(sum(proj(feats[:, i]) for i, proj in enumerate(self.project)))
            size = images.shape[-2:]
            up = F.interpolate(fused, size=size, mode="bilinear", align_corners=False)
            coarse = F.interpolate(self.coarse(fused), size=size, mode="bilinear", align_corners=False)
            return coarse + self.refine(torch.cat([up, self.stem(images)], dim=1))

    if kind not in HEAD_KINDS:
        raise FinetuneError(f"head: {kind!r} is not one of {', '.join(HEAD_KINDS)}")
    return LinearHead() if kind == "linear" else MultiScaleHead()


def labels_at(label_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A class map resized (nearest) to (height, width)."""
    import cv2

    return cv2.resize(np.asarray(label_map, dtype=np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


@dataclass
class Sample:
    """One labeled frame: its video, index and class map (any size; resized to the head's)."""

    video: str
    index: int
    labels: np.ndarray


@dataclass
class TrainedVSS:
    """A trained head (and maybe backbone) with what is needed to apply it."""

    head: object
    head_kind: str
    num_classes: int
    in_dim: int
    layers: int
    hidden: int
    spec: FeatureSpec
    backbone_state: dict | None = None
    losses: list[float] = field(default_factory=list)
    temporal: object | None = None  # a `temporal.TemporalModel` when trained with the temporal module

    def state(self) -> dict:
        """Everything `load_vss` needs, as a torch-saveable dict."""
        return {"kind": "vss", "head": self.head.state_dict(), "head_kind": self.head_kind,
                "num_classes": self.num_classes, "in_dim": self.in_dim, "layers": self.layers, "hidden": self.hidden,
                "spec": self.spec.as_dict(), "backbone_state": self.backbone_state, "losses": self.losses,
                "temporal": self.temporal.state() if self.temporal is not None else None}


def total_steps(config: VSSConfig, samples: int) -> int:
    """max(min_steps, epochs × batches per epoch)."""
    return max(config.min_steps, config.epochs * math.ceil(samples / config.batch_size))


def _check_samples(samples: Sequence[Sample], videos: dict[str, VideoFeatures], num_classes: int) -> None:
    """Reject samples of unknown videos or frames, or with classes out of range."""
    if not samples:
        raise FinetuneError("no labeled frames to train on: label some frames first")
    for sample in samples:
        if sample.video not in videos or not 0 <= sample.index < videos[sample.video].count:
            raise FinetuneError(f"labeled frame {sample.video}#{sample.index} has no features")
        values = np.unique(sample.labels)
        values = values[values != IGNORE]
        if values.size and values.max() >= num_classes:
            raise FinetuneError(f"labeled frame {sample.video}#{sample.index}: class {int(values.max())} "
                                f"outside 0..{num_classes - 1}")


def train_vss(samples: Sequence[Sample], videos: dict[str, VideoFeatures], num_classes: int, spec: FeatureSpec,
              config: VSSConfig = VSSConfig(), *, frame_paths: dict[str, Sequence[str | Path]] | None = None,
              state_path: str | Path | None = None,
              progress: Callable[[float, str], None] | None = None) -> TrainedVSS:
    """Train a head on the labeled frames (cached features, or the backbone too with `finetune_backbone`).

    `state_path` makes training resumable (state saved every `save_every` steps, resumed when
    present). Under torchrun each process draws its own batches and gradients are averaged.
    """
    import torch
    import torch.nn.functional as F

    from segloop.pretrain import dist

    _check_samples(samples, videos, num_classes)
    if config.finetune_backbone and frame_paths is None:
        raise FinetuneError("finetune_backbone needs the frame files (frame_paths)")
    dist.init_distributed(config.device)  # joins torchrun's process group when launched under it
    device = resolve_device(config.device)
    info = dist.info()
    torch.manual_seed(config.seed)
    first = next(iter(videos.values()))
    layers, in_dim = int(first.feats.shape[1]), int(first.feats.shape[2])
    head = build_head(config.head, in_dim, layers, num_classes, config.hidden).to(device)
    dist.broadcast_module(head)
    params = [{"params": list(head.parameters()), "lr": config.lr, "weight_decay": config.weight_decay}]
    backbone = None
    if config.finetune_backbone:
        from segloop.platform.features.backbone import load_backbone

        backbone = load_backbone(spec, device).train()
        dist.broadcast_module(backbone)
        params += layer_decay_groups(backbone.named_parameters(), len(backbone.blocks), config.backbone_lr,
                                     config.layer_decay, config.weight_decay)
    optimizer = torch.optim.AdamW(params)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    steps = total_steps(config, len(samples))
    start_step, losses = 0, []
    if state_path is not None and Path(state_path).is_file():
        saved = read_torch_dict(Path(state_path), device)
        same_run = (saved.get("config") == config.as_dict() and saved.get("samples") == _sample_keys(samples)
                    and saved.get("spec") == spec.as_dict())  # the same features: a new encoder trains afresh
        if same_run:
            head.load_state_dict(saved["head"])
            optimizer.load_state_dict(saved["optimizer"])
            if backbone is not None and saved.get("backbone"):
                backbone.load_state_dict(saved["backbone"])
            start_step, losses = int(saved["step"]), list(saved["losses"])
    label_size = first.label_size
    targets = [torch.as_tensor(labels_at(s.labels, label_size).astype(np.int64)) for s in samples]
    rng = np.random.default_rng(config.seed * 1000 + info.rank + start_step)
    use_bf16 = device.startswith("cuda")
    head.train()
    for step in range(start_step, steps):
        pick = rng.integers(0, len(samples), size=config.batch_size)
        flip = rng.random(config.batch_size) < 0.5
        feats, images = _batch_inputs([samples[i] for i in pick], videos, spec, backbone, frame_paths, device)
        target = torch.stack([targets[i] for i in pick]).to(device)
        flip_t = torch.as_tensor(flip, device=device)
        feats = torch.where(flip_t.view(-1, 1, 1, 1, 1), feats.flip(-1), feats)
        images = torch.where(flip_t.view(-1, 1, 1, 1), images.flip(-1), images)
        target = torch.where(flip_t.view(-1, 1, 1), target.flip(-1), target)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            logits = head(feats, images)
        loss = F.cross_entropy(logits.float(), target, ignore_index=IGNORE)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(list(head.parameters()) + (list(backbone.parameters()) if backbone else []))
        optimizer.step()
        losses.append(finite_loss(float(loss.detach()), step + 1,
                                  "lower lr" + (" and backbone_lr" if config.finetune_backbone else "")))
        lr_scale = cosine(step + 1, steps, 1.0, 0.0)
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * lr_scale
        if progress and (step % 10 == 0 or step == steps - 1):
            progress((step + 1) / steps, f"step {step + 1}/{steps} loss {losses[-1]:.4f}")
        if state_path is not None and info.is_main and ((step + 1) % config.save_every == 0 or step == steps - 1):
            _save_state(Path(state_path), head, optimizer, backbone, step + 1, losses, config, samples, spec)
    head.eval()
    backbone_state = {k: v.detach().cpu() for k, v in backbone.state_dict().items()} if backbone else None
    return TrainedVSS(head, config.head, num_classes, in_dim, layers, config.hidden, spec, backbone_state, losses)


def _sample_keys(samples: Sequence[Sample]) -> list[str]:
    """Identity of a training set (to refuse resuming on a different one)."""
    return [f"{s.video}#{s.index}" for s in samples]


def _save_state(path: Path, head, optimizer, backbone, step: int, losses: list[float], config: VSSConfig,
                samples: Sequence[Sample], spec: FeatureSpec) -> None:
    """Write the resumable training state atomically."""
    import io

    import torch

    from segloop.platform.core.storage import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save({"head": head.state_dict(), "optimizer": optimizer.state_dict(),
                "backbone": backbone.state_dict() if backbone is not None else None, "step": step,
                "losses": losses, "config": config.as_dict(), "samples": _sample_keys(samples),
                "spec": spec.as_dict()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _batch_inputs(batch: Sequence[Sample], videos: dict[str, VideoFeatures], spec: FeatureSpec, backbone,
                  frame_paths, device: str):
    """(features (B, L, C, h, w), images (B, 3, H4, W4)) of a batch: cached, or from the training backbone."""
    import torch

    images = image_tensor(np.stack([videos[s.video].images[s.index] for s in batch]), device)
    if backbone is None:
        feats = torch.as_tensor(np.stack([videos[s.video].feats[s.index] for s in batch]), device=device).float()
        return feats, images
    from segloop.platform.core.image import imagenet_normalise, read_rgb
    from segloop.platform.features.backbone import multilayer_tokens, resize_frames

    cached = videos[batch[0].video].feats
    work = (cached.shape[3] * _patch(backbone), cached.shape[4] * _patch(backbone))
    frames = resize_frames([read_rgb(frame_paths[s.video][s.index]) for s in batch], work)
    feats, _ = multilayer_tokens(backbone, imagenet_normalise(frames, device), spec.layers)
    return feats, images


def _patch(backbone) -> int:
    """Patch size of the backbone."""
    from segloop.pretrain.backbones import patch_size

    return patch_size(backbone)


def load_vss(path: str | Path, device: str = "cpu") -> tuple[TrainedVSS, object | None]:
    """(trained head, fine-tuned backbone or None) from a checkpoint file written by `save_vss`."""

    path = Path(path)
    if not path.is_file():
        raise FinetuneError(f"{path}: VSS checkpoint does not exist")
    state = read_torch_file(path, "VSS checkpoint", FinetuneError, weights_only=False, map_location=device)
    if not isinstance(state, dict) or state.get("kind") != "vss":
        raise FinetuneError(f"{path}: not a segloop VSS checkpoint")
    head = build_head(state["head_kind"], state["in_dim"], state["layers"], state["num_classes"], state["hidden"])
    head.load_state_dict(state["head"])
    head.to(device).eval()
    spec = FeatureSpec(**state["spec"])
    trained = TrainedVSS(head, state["head_kind"], state["num_classes"], state["in_dim"], state["layers"],
                         state["hidden"], spec, state.get("backbone_state"), state.get("losses", []))
    if state.get("temporal"):
        from segloop.platform.vss.temporal import temporal_from_state

        trained.temporal = temporal_from_state(state["temporal"])
    backbone = None
    if trained.backbone_state:
        from segloop.platform.features.backbone import load_backbone

        backbone = load_backbone(FeatureSpec(**{**state["spec"], "weights": None}), device)
        backbone.load_state_dict(trained.backbone_state)
    return trained, backbone


def save_vss(path: str | Path, trained: TrainedVSS) -> Path:
    """Write a trained head as a checkpoint file atomically."""
    import io

    import torch

    from segloop.platform.core.storage import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save(trained.state(), buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def predict_video(trained: TrainedVSS, features: VideoFeatures, batch_size: int = 16,
                  device: str = "cpu") -> np.ndarray:
    """Class probabilities (T, C, H4, W4) float32 of every frame of a video."""
    import torch

    head = trained.head.to(device).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, features.count, batch_size):
            feats = torch.as_tensor(features.feats[start:start + batch_size], device=device).float()
            images = image_tensor(features.images[start:start + batch_size], device)
            out.append(torch.softmax(head(feats, images).float(), dim=1).cpu().numpy())
    return np.concatenate(out)


def quantize(probs: np.ndarray) -> np.ndarray:
    """Probabilities as uint8 (round(p × 255)): the compact stored form."""
    return np.clip(np.rint(np.asarray(probs) * 255.0), 0, 255).astype(np.uint8)


def dequantize(stored: np.ndarray) -> np.ndarray:
    """Stored uint8 probabilities back to float32, renormalised to sum to 1 per pixel."""
    probs = stored.astype(np.float32) + 1e-3
    return probs / probs.sum(axis=-3, keepdims=True)


def class_map(probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Argmax class map (H, W) uint8 of one frame's (C, h, w) probabilities upsampled bilinearly to `size`."""
    import cv2

    channels = [cv2.resize(np.ascontiguousarray(p, dtype=np.float32), (size[1], size[0]),
                           interpolation=cv2.INTER_LINEAR) for p in probs]
    return np.argmax(np.stack(channels), axis=0).astype(np.uint8)


def uncertainty_signals(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame vss_entropy_mean, vss_entropy_p90 and vss_margin (mean 1 - (p1 - p2)) of (T, C, h, w) probabilities."""
    from segloop.selectors.uncertainty import pixel_entropy, pixel_margin

    probs = np.asarray(probs, dtype=np.float32)
    entropy = pixel_entropy(probs)
    margin = pixel_margin(probs)
    flat = entropy.reshape(entropy.shape[0], -1)
    return {"vss_entropy_mean": flat.mean(axis=1).astype(np.float64),
            "vss_entropy_p90": np.percentile(flat, 90, axis=1).astype(np.float64),
            "vss_margin": margin.reshape(margin.shape[0], -1).mean(axis=1).astype(np.float64)}


def save_predictions(path: str | Path, name: str, probs: np.ndarray, size: tuple[int, int],
                     frame_ids: Sequence[int] | None = None) -> Path:
    """One video's predictions as a compressed .npz (uint8 probabilities, original size, frame ids), atomically."""
    import io

    from segloop.platform.core.storage import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez_compressed(buffer, probs=quantize(probs), size=np.asarray(size), name=np.asarray(name),
                        frame_ids=np.asarray(list(frame_ids) if frame_ids is not None else [], dtype=np.int64))
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def load_predictions(path: str | Path) -> tuple[np.ndarray, tuple[int, int], np.ndarray]:
    """(probabilities float32 (T, C, h, w), original (H, W), frame ids) of a stored prediction file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return dequantize(data["probs"]), tuple(int(v) for v in data["size"]), data["frame_ids"]
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise FinetuneError(f"{path}: unreadable prediction file ({exc})") from None
