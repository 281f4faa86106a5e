"""Backbone features per frame, computed once and cached: multi-layer patch tokens, a small RGB copy, CLS.

Frames are resized to a working size (short side `short_side`, both sides multiples of the patch),
ImageNet-normalised and embedded; the patch tokens of `layers` evenly spaced blocks (the last one
included, each layer-normed) are kept as float16 (T, L, C, h, w), plus the frame at stride
`image_stride` (uint8, for decoders that need edges) and the CLS token (float32, for selectors).
A cache file per video lives under the cache dir, keyed by the frame files, the weights and the spec.
"""
from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from segloop.platform.core.backbones import DEFAULT_BACKBONE
from segloop.platform.core.image import imagenet_normalise, read_rgb, working_size

CACHE_VERSION = 1


class FeatureError(ValueError):
    """Frames or settings that cannot be embedded; the message names the file or field."""


@dataclass(frozen=True)
class FeatureSpec:
    """Which backbone embeds the frames and how (defaults run on a 2-core CPU)."""

    backbone: str = DEFAULT_BACKBONE
    weights: str | None = None
    short_side: int = 192
    layers: int = 4
    image_stride: int = 4
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.short_side < 16 or self.layers < 1 or self.image_stride < 1 or self.batch_size < 1:
            raise FeatureError(f"invalid feature spec {asdict(self)}: short_side ≥ 16, "
                               "layers/image_stride/batch_size ≥ 1")

    def as_dict(self) -> dict:
        """JSON-ready settings."""
        return asdict(self)


@dataclass
class VideoFeatures:
    """Cached features of one video's frames."""

    name: str
    size: tuple[int, int]
    feats: np.ndarray
    images: np.ndarray
    cls: np.ndarray

    @property
    def count(self) -> int:
        """Number of frames."""
        return int(self.feats.shape[0])

    @property
    def label_size(self) -> tuple[int, int]:
        """(height, width) at which heads predict: the stored RGB copy's size."""
        return int(self.images.shape[2]), int(self.images.shape[3])


def layer_indices(depth: int, count: int) -> list[int]:
    """`count` evenly spaced block indices of a `depth`-block ViT, the last block included."""
    count = min(count, depth)
    return sorted({int(round(depth * (i + 1) / count)) - 1 for i in range(count)})


def load_backbone(spec: FeatureSpec, device: str = "cpu"):
    """The spec's timm backbone (random init or local weights), in eval mode on `device`."""
    from segloop.pretrain.backbones import create_backbone

    return create_backbone(spec.backbone, weights=spec.weights).eval().to(device)


def multilayer_tokens(model, images, layers: int):
    """(patch tokens (B, L, C, h, w), CLS (B, C)) of normalised images (B, 3, H, W)."""
    import torch

    indices = layer_indices(len(model.blocks), layers)
    outputs = model.forward_intermediates(images, indices=indices, norm=True, output_fmt="NCHW",
                                         return_prefix_tokens=True, intermediates_only=True)
    spatial = torch.stack([o[0] for o in outputs], dim=1)
    cls = outputs[-1][1][:, 0]
    return spatial, cls


def resize_frames(frames: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Frames resized (area) to (height, width), stacked uint8."""
    import cv2

    return np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in frames])


def extract_video(name: str, paths: Sequence[str | Path], spec: FeatureSpec, model, device: str = "cpu",
                  progress: Callable[[int, int], None] | None = None) -> VideoFeatures:
    """Features of one video's frame files (all of one size) with an already loaded backbone."""
    import torch

    from segloop.pretrain.backbones import patch_size

    if not paths:
        raise FeatureError(f"{name}: no frames")
    first = read_rgb(paths[0])
    size = first.shape[:2]
    patch = patch_size(model)
    work = working_size(size[0], size[1], spec.short_side, patch)
    small = (work[0] // spec.image_stride, work[1] // spec.image_stride)
    feats, images, cls = [], [], []
    use_bf16 = str(device).startswith("cuda")
    for start in range(0, len(paths), spec.batch_size):
        frames = [first if start + i == 0 else read_rgb(p) for i, p in enumerate(paths[start:start + spec.batch_size])]
        for path, frame in zip(paths[start:start + spec.batch_size], frames):
            if frame.shape[:2] != size:
                raise FeatureError(f"{path}: size {frame.shape[1]}x{frame.shape[0]} differs from {size[1]}x{size[0]}")
        resized = resize_frames(frames, work)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            tokens, cls_tokens = multilayer_tokens(model, imagenet_normalise(resized, device), spec.layers)
        feats.append(tokens.float().cpu().numpy().astype(np.float16))
        cls.append(cls_tokens.float().cpu().numpy())
        images.append(resize_frames(resized, small).transpose(0, 3, 1, 2))
        if progress:
            progress(min(start + spec.batch_size, len(paths)), len(paths))
    return VideoFeatures(name, (int(size[0]), int(size[1])), np.concatenate(feats), np.concatenate(images),
                         np.concatenate(cls).astype(np.float32))


def cache_key(name: str, paths: Sequence[str | Path], spec: FeatureSpec) -> str:
    """Hash of the frame files (path, size, mtime), the weights file and the spec."""
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, name, spec.as_dict()]).encode())
    files = [*paths] + ([spec.weights] if spec.weights else [])
    for path in files:
        stat = Path(path).stat()
        digest.update(f"{Path(path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def save_video_features(path: Path, features: VideoFeatures) -> None:
    """Write one video's features as an .npz atomically."""
    from segloop.platform.core.storage import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez(buffer, feats=features.feats, images=features.images, cls=features.cls,
             size=np.asarray(features.size), name=np.asarray(features.name))
    atomic_write_bytes(path, buffer.getvalue())


def load_video_features(path: Path) -> VideoFeatures:
    """Read a cached .npz; errors name the file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return VideoFeatures(str(data["name"]), tuple(int(v) for v in data["size"]), data["feats"],
                                 data["images"], data["cls"])
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise FeatureError(f"{path}: unreadable feature cache ({exc})") from None


def video_features(videos: dict[str, Sequence[str | Path]], spec: FeatureSpec, cache_dir: str | Path | None = None,
                   device: str = "cpu",
                   progress: Callable[[float, str], None] | None = None) -> dict[str, VideoFeatures]:
    """Features of every video ({name: frame files}), read from the cache or computed once and cached."""
    out: dict[str, VideoFeatures] = {}
    model = None
    total = sum(len(p) for p in videos.values()) or 1
    done = 0
    for name, paths in videos.items():
        cached = Path(cache_dir) / f"{cache_key(name, paths, spec)}.npz" if cache_dir else None
        if cached is not None and cached.is_file():
            out[name] = load_video_features(cached)
        else:
            model = model or load_backbone(spec, device)
            base = done

            def report(frames_done: int, frames_total: int, base: int = base, name: str = name) -> None:
                if progress:
                    progress((base + frames_done) / total, f"features {name} {frames_done}/{frames_total}")

            out[name] = extract_video(name, paths, spec, model, device, report)
            if cached is not None:
                save_video_features(cached, out[name])
        done += len(paths)
        if progress:
            progress(done / total, f"features {name}")
    return out
