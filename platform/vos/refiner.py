"""VOS: label propagation followed by a trained refinement decoder.

The decoder sees, for one object of one frame, the frame's cached multi-layer backbone features,
its stride-4 RGB copy and the propagated mask of that object (binary, at stride 4), and outputs
refined mask logits = prior logit + a learned correction (the correction's last layer starts at
zero, so an untrained decoder returns the propagated mask). It is trained on the labeled frames
of the project: their ground-truth masks are degraded the way propagation degrades masks (pooled
to the patch grid, jittered, dilated or eroded, upsampled and thresholded) and the decoder learns
to restore them. Several objects are refined one at a time; a pixel takes the object of highest
probability when that probability exceeds 0.5, else background.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from segloop.platform.core.device import resolve_device
from segloop.platform.core.errors import FinetuneError
from segloop.platform.core.image import image_tensor
from segloop.platform.core.schedules import cosine
from segloop.platform.core.storage import read_torch_dict, read_torch_file
from segloop.platform.features.backbone import FeatureSpec, VideoFeatures

PRIOR_CLAMP = 0.9
FINE = 16


@dataclass(frozen=True)
class RefineConfig:
    """Refinement decoder training settings (defaults: a minute or less on a 2-core CPU)."""

    hidden: int = 48
    steps: int = 300
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    save_every: int = 100

    def __post_init__(self) -> None:
        if min(self.hidden, self.steps, self.batch_size, self.save_every) < 1 or self.lr <= 0:
            raise FinetuneError("refine settings: hidden, steps, batch_size, save_every ≥ 1 and lr > 0")

    def as_dict(self) -> dict:
        """JSON-ready settings."""
        return asdict(self)


def build_decoder(in_dim: int, layers: int, hidden: int = 48):
    """The refinement decoder (torch module): (feats, images, prior) -> mask logits at the images' size."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class RefineDecoder(nn.Module):
        """Features + RGB + propagated mask -> prior logit + learned correction (light stride-4 stage)."""

        def __init__(self) -> None:
            super().__init__()
            self.project = nn.ModuleList([nn.Conv2d(in_dim, hidden, 1) for _ in range(layers)])
            self.fuse = nn.Sequential(nn.BatchNorm2d(hidden), nn.GELU(), nn.Conv2d(hidden, FINE, 1))
            self.stem = nn.Sequential(nn.Conv2d(4, FINE, 3, padding=1), nn.ReLU())
            self.body = nn.Sequential(nn.Conv2d(2 * FINE + 1, FINE, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(FINE, FINE, 3, padding=2, dilation=2), nn.ReLU())
            self.out = nn.Conv2d(FINE, 1, 3, padding=1)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

        def forward(self, feats, images, prior):
            fused = self.fuse(sum(proj(feats[:, i]) for i, proj in enumerate(self.project)))
            up = F.interpolate(fused, size=images.shape[-2:], mode="bilinear", align_corners=False)
            signed = prior * 2.0 - 1.0
            rgb = self.stem(torch.cat([images, signed], dim=1))
            correction = self.out(self.body(torch.cat([up, rgb, signed], dim=1)))
            clamped = 0.5 + (prior - 0.5) * PRIOR_CLAMP
            return torch.log(clamped / (1 - clamped)) + correction

    return RefineDecoder()


def degrade_mask(mask: np.ndarray, grid: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A binary mask (H4, W4) degraded the way propagation degrades masks (pooled, jittered, dilated/eroded)."""
    import cv2

    height, width = mask.shape
    shift = rng.integers(-3, 4, size=2)
    moved = np.roll(mask.astype(np.float32), (int(shift[0]), int(shift[1])), axis=(0, 1))
    coarse = cv2.resize(moved, (grid[1], grid[0]), interpolation=cv2.INTER_AREA)
    coarse = coarse + rng.normal(0.0, 0.15, coarse.shape).astype(np.float32)
    radius = int(rng.integers(0, 2))
    if radius:
        kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
        coarse = cv2.dilate(coarse, kernel) if rng.random() < 0.5 else cv2.erode(coarse, kernel)
    up = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    return (up > rng.uniform(0.3, 0.7)).astype(np.float32)


def mask_at(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A binary mask area-resized to (height, width) as float32 coverage in [0, 1]."""
    import cv2

    return cv2.resize(np.asarray(mask, dtype=np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA)


@dataclass
class ObjectSample:
    """One object on one labeled frame: video, frame index, binary mask (any size)."""

    video: str
    index: int
    mask: np.ndarray


def object_samples(labeled: dict[str, dict[int, np.ndarray]]) -> list[ObjectSample]:
    """One sample per object id (255 = void excluded) of every labeled frame ({video: {index: label map}})."""
    out = []
    for video, frames in labeled.items():
        for index, labels in sorted(frames.items()):
            for object_id in np.unique(labels):
                if object_id not in (0, 255):
                    out.append(ObjectSample(video, int(index), labels == object_id))
    return out


@dataclass
class TrainedRefiner:
    """A trained refinement decoder and what is needed to apply it."""

    decoder: object
    in_dim: int
    layers: int
    hidden: int
    spec: FeatureSpec
    losses: list[float] = field(default_factory=list)

    def state(self) -> dict:
        """Everything `load_refiner` needs, torch-saveable."""
        return {"kind": "vos", "decoder": self.decoder.state_dict(), "in_dim": self.in_dim, "layers": self.layers,
                "hidden": self.hidden, "spec": self.spec.as_dict(), "losses": self.losses}


def train_refiner(samples: Sequence[ObjectSample], videos: dict[str, VideoFeatures], spec: FeatureSpec,
                  config: RefineConfig = RefineConfig(), *, state_path: str | Path | None = None,
                  progress: Callable[[float, str], None] | None = None) -> TrainedRefiner:
    """Train the decoder to restore degraded ground-truth masks of the labeled frames (resumable via `state_path`)."""
    import torch
    import torch.nn.functional as F

    from segloop.pretrain import dist

    if not samples:
        raise FinetuneError("no labeled object masks to train the refinement decoder on")
    dist.init_distributed(config.device)  # joins torchrun's process group when launched under it
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    first = next(iter(videos.values()))
    layers, in_dim = int(first.feats.shape[1]), int(first.feats.shape[2])
    grid = (int(first.feats.shape[3]), int(first.feats.shape[4]))
    decoder = build_decoder(in_dim, layers, config.hidden).to(device)
    dist.broadcast_module(decoder)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start, losses = 0, []
    if state_path is not None and Path(state_path).is_file():
        saved = read_torch_dict(Path(state_path), device)
        if saved.get("config") == config.as_dict() and saved.get("count") == len(samples):
            decoder.load_state_dict(saved["decoder"])
            optimizer.load_state_dict(saved["optimizer"])
            start, losses = int(saved["step"]), list(saved["losses"])
    targets = [(mask_at(s.mask, videos[s.video].label_size) > 0.5).astype(np.float32) for s in samples]
    rng = np.random.default_rng(config.seed * 1000 + dist.info().rank + start)
    decoder.train()
    for step in range(start, config.steps):
        pick = rng.integers(0, len(samples), size=config.batch_size)
        flip = rng.random(config.batch_size) < 0.5
        feats = np.stack([videos[samples[i].video].feats[samples[i].index] for i in pick]).astype(np.float32)
        images = np.stack([videos[samples[i].video].images[samples[i].index] for i in pick])
        target = np.stack([targets[i] for i in pick])
        prior = np.stack([degrade_mask(t, grid, rng) for t in target])
        feats, images, target, prior = (np.where(flip.reshape((-1,) + (1,) * (a.ndim - 1)), a[..., ::-1], a)
                                        for a in (feats, images, target, prior))
        logits = decoder(torch.as_tensor(np.ascontiguousarray(feats), device=device),
                         image_tensor(np.ascontiguousarray(images), device),
                         torch.as_tensor(np.ascontiguousarray(prior), device=device)[:, None])
        loss = F.binary_cross_entropy_with_logits(logits[:, 0], torch.as_tensor(np.ascontiguousarray(target),
                                                                                device=device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(list(decoder.parameters()))
        optimizer.step()
        for group in optimizer.param_groups:
            group["lr"] = config.lr * cosine(step + 1, config.steps, 1.0, 0.0)
        losses.append(float(loss.detach()))
        if progress and (step % 10 == 0 or step == config.steps - 1):
            progress((step + 1) / config.steps, f"step {step + 1}/{config.steps} loss {losses[-1]:.4f}")
        if state_path is not None and dist.info().is_main and ((step + 1) % config.save_every == 0
                                                                or step == config.steps - 1):
            _save(Path(state_path), {"decoder": decoder.state_dict(), "optimizer": optimizer.state_dict(),
                                     "step": step + 1, "losses": losses, "config": config.as_dict(),
                                     "count": len(samples)})
    decoder.eval()
    return TrainedRefiner(decoder, in_dim, layers, config.hidden, spec, losses)


def _save(path: Path, payload: dict) -> None:
    """torch.save to a file atomically."""
    import io

    import torch

    from segloop.platform.core.storage import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def save_refiner(path: str | Path, trained: TrainedRefiner) -> Path:
    """Write a trained decoder as a checkpoint file atomically."""
    _save(Path(path), trained.state())
    return Path(path)


def load_refiner(path: str | Path, device: str = "cpu") -> TrainedRefiner:
    """A decoder checkpoint written by `save_refiner`; errors name the file."""

    path = Path(path)
    if not path.is_file():
        raise FinetuneError(f"{path}: VOS checkpoint does not exist")
    state = read_torch_file(path, "VOS checkpoint", FinetuneError, weights_only=False, map_location=device)
    if not isinstance(state, dict) or state.get("kind") != "vos":
        raise FinetuneError(f"{path}: not a segloop VOS refinement checkpoint")
    decoder = build_decoder(state["in_dim"], state["layers"], state["hidden"])
    decoder.load_state_dict(state["decoder"])
    return TrainedRefiner(decoder.to(device).eval(), state["in_dim"], state["layers"], state["hidden"],
                          FeatureSpec(**state["spec"]), state.get("losses", []))


def refine_mask(trained: TrainedRefiner, features: VideoFeatures, index: int, mask: np.ndarray,
                device: str = "cpu") -> np.ndarray:
    """The refined label map (original size) of one frame's propagated label map."""
    import cv2
    import torch

    objects = [int(v) for v in np.unique(mask) if v not in (0, 255)]
    if not objects:
        return np.asarray(mask, dtype=np.uint8).copy()
    size = features.label_size
    priors = np.stack([(mask_at(mask == obj, size) > 0.5).astype(np.float32) for obj in objects])[:, None]
    feats = torch.as_tensor(features.feats[index:index + 1], device=device).float().expand(len(objects), -1, -1, -1, -1)
    images = image_tensor(features.images[index:index + 1], device).expand(len(objects), -1, -1, -1)
    with torch.inference_mode():
        probs = torch.sigmoid(trained.decoder.to(device)(feats, images, torch.as_tensor(priors, device=device)))
    height, width = mask.shape
    full = np.stack([cv2.resize(p[0], (width, height), interpolation=cv2.INTER_LINEAR) for p in probs.cpu().numpy()])
    best = full.argmax(axis=0)
    labels = np.asarray(objects, dtype=np.uint8)[best]
    return np.where(full.max(axis=0) > 0.5, labels, 0).astype(np.uint8)


def iter_refined(frames, keyframe_masks: dict[int, np.ndarray], featurizer, trained: TrainedRefiner,
                 features: VideoFeatures, config=None,
                 device: str = "cpu") -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(frame index, propagated label map, refined label map) of every frame; keyframes keep their mask."""
    from segloop.platform.vos import propagation as vos

    for item in vos.iter_propagate(frames, keyframe_masks, featurizer, config):
        if item.index in keyframe_masks:
            yield item.index, item.mask, item.mask
        else:
            yield item.index, item.mask, refine_mask(trained, features, item.index, item.mask, device)
