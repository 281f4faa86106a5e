"""Video object segmentation with a space-time memory read (STM, Oh et al. 2019; XMem++-style permanent keyframes).

Per frame a frozen dense encoder (any `FrameEncoder`: `stride`, `dim`, `encode(frames)` -> unit-norm
(T, C, h, w) features of uint8 RGB frames) gives features; a learned 1×1 key projection turns them into
keys (L2-normalised, identity-initialised when the key width equals the encoder's, so an untrained model
reads with the encoder's own cosine affinity). A memory frame's value for one object = its soft mask at
the feature stride plus a small value encoder of (features, object mask, other objects' mask). The read
of a query frame is a softmax over the memory keys of all memory frames within a `radius`-cell window
(Chebyshev) of each query cell, optionally restricted to the `topk` best, computed tile by tile so cost
is linear in the number of cells. A light decoder sees the readout and the query features at the feature
stride, upsamples to stride 4 and fuses a stride-4 encoding of the frame; its output is the read mask's
logit plus a learned correction (zero at initialisation). Objects are decoded independently and merged
by STM's soft aggregation.

Inference (`propagate_with_memory`) runs as `propagation.py` does: between keyframes a < b a forward pass
from a and a backward pass from b, merged with weights (b - t)/(b - a) and (t - a)/(b - a); frames before
the first (after the last) keyframe get one pass. The memory of a pass = its source keyframe and the
nearest other keyframes (kept for the whole pass) + the last `n_last` predicted frames.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segloop.platform.core.image import working_size
from segloop.platform.core.storage import read_torch_file
from segloop.platform.vos.propagation import (
    Featurizer,
    FrameResult,
    PropagationConfig,
    PropagationError,
    PropagationResult,
    _keyframe_result,
    _label_set,
    _merge_weights,
    _segments,
    _validate,
    frame_confidence,
    pass_disagreement,
)

CONFIG_NAME = "memory_vos.json"
WEIGHTS_NAME = "memory_vos.pth"
FORMAT = "segloop-memory-vos"
VERSION = 1
SKIP_STRIDE = 4
EPS = 1e-6


class MemoryModelError(ValueError):
    """A memory VOS model, model folder or setting that cannot be used; the message names the file or field."""


def check_settings(what: str, settings: object, checks: dict[str, bool]) -> None:
    """Raise MemoryModelError naming every field of `settings` whose check is False."""
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        shown = ", ".join(f"{name}={getattr(settings, name)!r}" for name in bad)
        raise MemoryModelError(f"invalid {what} setting(s): {shown}")


# --------------------------------------------------------------------------------------------
# Frozen dense encoders (swappable)
# --------------------------------------------------------------------------------------------


class FrameEncoder(Protocol):
    """What the memory model needs from a dense encoder."""

    stride: int
    dim: int

    def encode(self, frames: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Unit-norm features (T, dim, H/stride, W/stride) of T equally sized H×W×3 uint8 RGB frames."""

    def spec(self) -> dict:
        """JSON description from which `encoder_from_spec` rebuilds the encoder (with `state()`)."""

    def state(self) -> dict:
        """Tensors the encoder needs besides its spec (empty for parameter-free encoders)."""


class LabCellEncoder:
    """Parameter-free encoder: each stride×stride cell's CIE-Lab colours area-averaged to cells×cells (+ a constant)."""

    kind = "lab_cells"

    def __init__(self, stride: int = 8, cells: int = 2) -> None:
        if stride < 1 or cells < 1 or stride % cells:
            raise MemoryModelError(f"lab cell encoder: stride {stride} must be a positive multiple of cells {cells}")
        self.stride, self.cells = int(stride), int(cells)
        self.dim = 3 * self.cells**2 + 1

    def encode(self, frames: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """(T, 3·cells² + 1, H/stride, W/stride) unit-norm Lab-cell features."""
        import cv2

        height, width = np.asarray(frames[0]).shape[:2]
        grid_h, grid_w = height // self.stride, width // self.stride
        p = self.cells
        lab = np.stack([
            cv2.resize(cv2.cvtColor(np.asarray(f, dtype=np.float32) / 255.0, cv2.COLOR_RGB2Lab),
                       (grid_w * p, grid_h * p), interpolation=cv2.INTER_AREA)
            for f in frames
        ])
        lab = (lab - np.array([50.0, 0.0, 0.0], dtype=np.float32)) / 50.0
        count = lab.shape[0]
        cells = lab.reshape(count, grid_h, p, grid_w, p, 3).transpose(0, 5, 2, 4, 1, 3)
        cells = cells.reshape(count, 3 * p * p, grid_h, grid_w)
        features = torch.from_numpy(np.ascontiguousarray(cells))
        return F.normalize(torch.cat([features, torch.ones_like(features[:, :1])], dim=1), dim=1)

    def spec(self) -> dict:
        """{"kind", "stride", "cells"}."""
        return {"kind": self.kind, "stride": self.stride, "cells": self.cells}

    def state(self) -> dict:
        """No tensors."""
        return {}


class DenseEncoderFrames:
    """A `segloop.pretrain.dense.DenseEncoder` (frozen, eval mode) as a `FrameEncoder`."""

    kind = "dense"

    def __init__(self, encoder, batch_size: int = 4) -> None:
        from segloop.pretrain.dense import inference_copy

        self.encoder = encoder.eval()
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)
        self.inference = inference_copy(self.encoder)  # batch norms folded: the saved state stays the encoder's
        self.stride = int(encoder.stride)
        self.batch_size = batch_size
        self.dim = int(self.encode(np.zeros((self.stride, self.stride, 3), np.uint8)[None]).shape[1])

    def encode(self, frames: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Unit-norm dense features of the wrapped encoder."""
        from segloop.pretrain.dense import dense_features

        return dense_features(self.inference, frames, batch_size=self.batch_size)

    def spec(self) -> dict:
        """{"kind", "config": the DenseEncoder's EncoderConfig}."""
        return {"kind": self.kind, "config": self.encoder.config.as_dict()}

    def state(self) -> dict:
        """The encoder's weights."""
        return {k: v.detach().cpu().clone() for k, v in self.encoder.state_dict().items()}


def encoder_from_spec(spec: dict, state: dict, source: str) -> FrameEncoder:
    """Rebuild a saved encoder; errors name `source` (the model file)."""
    kind = spec.get("kind")
    if kind == LabCellEncoder.kind:
        return LabCellEncoder(int(spec["stride"]), int(spec["cells"]))
    if kind == DenseEncoderFrames.kind:
        try:
            from segloop.pretrain.dense import DenseEncoder, EncoderConfig
        except ImportError:
            raise MemoryModelError(f"{source}: needs the dense encoder (segloop.pretrain.dense), "
                                   "which is not installed") from None
        encoder = DenseEncoder(EncoderConfig.from_dict(spec["config"], source=source))
        encoder.load_state_dict(state)
        return DenseEncoderFrames(encoder)
    raise MemoryModelError(f"{source}: unknown encoder kind {kind!r} (lab_cells|dense)")


class EncoderFeaturizer(Featurizer):
    """A `FrameEncoder` as a propagation.py featurizer (plain label propagation with the same features)."""

    def __init__(self, encoder: FrameEncoder, config: PropagationConfig, name: str = "encoder") -> None:
        super().__init__(config, "cpu")
        self.encoder = encoder
        self.patch = encoder.stride
        self.name = name

    def __call__(self, frames: Sequence[np.ndarray]):
        features = self.encoder.encode(self.resize(frames))
        return features.flatten(2).transpose(1, 2).contiguous()


# --------------------------------------------------------------------------------------------
# Memory read
# --------------------------------------------------------------------------------------------


def _window(tile: int, radius: int, device) -> torch.Tensor:
    """(tile², (tile + 2r)²) bool: halo cell (u, v) lies within `radius` of tile cell (i, j)."""
    halo = tile + 2 * radius
    q = torch.arange(tile, device=device)
    k = torch.arange(halo, device=device) - radius
    near = (k[None, :] - q[:, None]).abs() <= radius
    return (near[:, None, :, None] & near[None, :, None, :]).reshape(tile * tile, halo * halo)


def memory_read(query_key: torch.Tensor, memory_keys: torch.Tensor, memory_values: torch.Tensor, radius: int,
                scale: torch.Tensor | float, topk: int = 0, tile: int = 8) -> torch.Tensor:
    """(B, D, h, w): per query cell, softmax(scale · q·k) over the keys of all T memory frames within `radius`
    cells of its position (the `topk` best when topk > 0), applied to the memory values.

    query_key (B, C, h, w), memory_keys (B, T, C, h, w), memory_values (B, T, D, h, w). Computed per
    tile×tile block of queries against its block grown by `radius`: no (h·w)² matrix is formed.
    """
    if query_key.dim() != 4 or memory_keys.dim() != 5 or memory_keys.shape[2:] != query_key.shape[1:]:
        raise MemoryModelError(f"memory read: query key {tuple(query_key.shape)} and memory keys "
                               f"{tuple(memory_keys.shape)} must be (B, C, h, w) and (B, T, C, h, w)")
    if memory_values.dim() != 5 or memory_values.shape[:2] != memory_keys.shape[:2] \
            or memory_values.shape[3:] != memory_keys.shape[3:]:
        raise MemoryModelError(f"memory read: values {tuple(memory_values.shape)} must be (B, T, D, h, w) on the keys' "
                               f"grid {tuple(memory_keys.shape)}")
    batch, channels, height, width = query_key.shape
    frames, depth = memory_keys.shape[1], memory_values.shape[2]
    radius = max(0, int(radius))
    tile = max(1, min(tile, max(height, width)))
    pad_h, pad_w = -height % tile, -width % tile
    halo, cells = tile + 2 * radius, tile * tile
    padding = (radius, radius + pad_w, radius, radius + pad_h)
    query = F.pad(query_key, (0, pad_w, 0, pad_h))
    keys = F.pad(memory_keys.flatten(0, 1), padding)
    values = F.pad(memory_values.flatten(0, 1), padding)
    inside = F.pad(torch.ones(1, 1, height, width, device=query_key.device), padding)
    tiles = ((height + pad_h) // tile) * ((width + pad_w) // tile)
    q = F.unfold(query, tile, stride=tile).view(batch, channels, cells, tiles).permute(0, 3, 2, 1)
    k = F.unfold(keys, halo, stride=tile).view(batch, frames, channels, halo * halo, tiles)
    k = k.permute(0, 4, 2, 1, 3).reshape(batch, tiles, channels, frames * halo * halo)
    v = F.unfold(values, halo, stride=tile).view(batch, frames, depth, halo * halo, tiles)
    v = v.permute(0, 4, 1, 3, 2).reshape(batch, tiles, frames * halo * halo, depth)
    present = F.unfold(inside, halo, stride=tile).view(halo * halo, tiles).T > 0  # (tiles, halo²)
    allowed = _window(tile, radius, query_key.device)[None] & present[:, None, :]
    bias = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill_(~allowed, float("-inf"))
    logits = ((q * scale) @ k).view(batch, tiles, cells, frames, halo * halo).add_(bias[None, :, :, None])
    logits = logits.view(batch, tiles, cells, frames * halo * halo)
    if 0 < topk < logits.shape[-1]:
        kth = logits.topk(topk, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    out = torch.softmax(logits, dim=-1) @ v  # (B, tiles, cells, D)
    out = out.permute(0, 3, 2, 1).reshape(batch, depth * cells, tiles)
    out = F.fold(out, (height + pad_h, width + pad_w), tile, stride=tile)
    return out[:, :, :height, :width]


def soft_aggregate(object_probs: torch.Tensor) -> torch.Tensor:
    """(N + 1, ...) log-probabilities of background + N objects from independent object probabilities (N, ...),
    STM's soft aggregation: background = Π(1 - p_i), then a softmax of the odds' logs."""
    probs = object_probs.clamp(EPS, 1 - EPS)
    background = torch.prod(1 - probs, dim=0, keepdim=True)
    merged = torch.cat([background, probs], dim=0).clamp(EPS, 1 - EPS)
    return torch.log_softmax(torch.log(merged / (1 - merged)), dim=0)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryConfig:
    """Architecture and read settings of the memory model (saved with it)."""

    key_dim: int = 0
    value_dim: int = 16
    hidden: int = 32
    skip_dim: int = 16
    radius: int = 6
    temperature: float = 0.05
    topk: int = 16
    prior_clamp: float = 0.9

    def __post_init__(self) -> None:
        checks = {
            "key_dim": self.key_dim >= 0, "value_dim": self.value_dim >= 1, "hidden": self.hidden >= 1,
            "skip_dim": self.skip_dim >= 1, "radius": self.radius >= 0, "temperature": self.temperature > 0,
            "topk": self.topk >= 0, "prior_clamp": 0 < self.prior_clamp < 1,
        }
        check_settings("memory model", self, checks)

    def as_dict(self) -> dict:
        """JSON-ready settings."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str) -> MemoryConfig:
        """Settings from a dict; unknown keys raise an error naming `source`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise MemoryModelError(f"{source}: unknown memory model setting(s) {unknown}")
        return cls(**values)


def _conv(channels_in: int, channels_out: int, stride: int = 1) -> nn.Sequential:
    """3×3 convolution + ReLU."""
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, stride, 1), nn.ReLU(inplace=True))


class MemoryVOS(nn.Module):
    """Key projection, value encoder, frame (stride-4) encoder and decoder around a frozen `FrameEncoder`."""

    def __init__(self, encoder: FrameEncoder, config: MemoryConfig | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = config or MemoryConfig()
        in_dim, key_dim = encoder.dim, self.config.key_dim or encoder.dim
        hidden, value_dim, skip = self.config.hidden, self.config.value_dim, self.config.skip_dim
        self.key_proj = nn.Conv2d(in_dim, key_dim, 1)
        if key_dim == in_dim:
            nn.init.eye_(self.key_proj.weight[:, :, 0, 0])
            nn.init.zeros_(self.key_proj.bias)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / self.config.temperature)))
        self.value_encoder = nn.Sequential(_conv(in_dim + 2, hidden), nn.Conv2d(hidden, value_dim, 3, 1, 1))
        self.skip = nn.Sequential(_conv(3, skip, 2), _conv(skip, skip, 2), _conv(skip, skip))
        self.query_proj = nn.Conv2d(in_dim, hidden, 1)
        self.coarse = nn.Sequential(_conv(value_dim + 1 + hidden, hidden), _conv(hidden, hidden))
        self.fine = nn.Sequential(_conv(hidden + skip + 1, hidden), _conv(hidden, hidden))
        self.out = nn.Conv2d(hidden, 1, 3, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def stride(self) -> int:
        """Pixels per feature cell."""
        return self.encoder.stride

    def features(self, frames: np.ndarray) -> torch.Tensor:
        """Frozen encoder features (T, C, h, w) of working-size frames (T, H, W, 3) uint8."""
        with torch.no_grad():
            return self.encoder.encode(frames).float()

    def keys(self, features: torch.Tensor) -> torch.Tensor:
        """Unit-norm keys (T, K, h, w)."""
        return F.normalize(self.key_proj(features), dim=1)

    def frame_skip(self, frames: np.ndarray) -> torch.Tensor:
        """Stride-4 encoding (T, S, H/4, W/4) of working-size frames (T, H, W, 3) uint8."""
        rgb = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        return self.skip(rgb)

    def values(self, features: torch.Tensor, object_masks: torch.Tensor) -> torch.Tensor:
        """Values (N, 1 + value_dim, h, w) of N objects on one frame: features (1, C, h, w), soft masks (N, h, w)
        at the feature grid; channel 0 is the object's mask itself."""
        count = object_masks.shape[0]
        others = (object_masks.sum(0, keepdim=True) - object_masks).clamp(0, 1)
        inputs = torch.cat([features.expand(count, -1, -1, -1), object_masks[:, None], others[:, None]], dim=1)
        return torch.cat([object_masks[:, None], self.value_encoder(inputs)], dim=1)

    def read(self, query_key: torch.Tensor, memory_keys: torch.Tensor, memory_values: torch.Tensor,
             radius: int | None = None) -> torch.Tensor:
        """Readout (N, 1 + value_dim, h, w) of N objects: query key (1, K, h, w), memory keys (T, K, h, w),
        memory values (T, N, 1 + value_dim, h, w)."""
        count, depth = memory_values.shape[1], memory_values.shape[2]
        radius = self.config.radius if radius is None else radius
        flat = memory_values.flatten(1, 2)[None]
        out = memory_read(query_key, memory_keys[None], flat, radius, self.log_scale.exp(), self.config.topk)
        return out.view(count, depth, *out.shape[-2:])

    def decode(self, readout: torch.Tensor, features: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Object logits (N, H4, W4) at stride 4: read mask's logit + a learned correction."""
        count = readout.shape[0]
        query = self.query_proj(features).expand(count, -1, -1, -1)
        coarse = self.coarse(torch.cat([readout, query], dim=1))
        size = skip.shape[-2:]
        up = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
        prior = F.interpolate(readout[:, :1], size=size, mode="bilinear", align_corners=False).clamp(0, 1)
        correction = self.out(self.fine(torch.cat([up, skip.expand(count, -1, -1, -1), prior * 2 - 1], dim=1)))
        clamped = 0.5 + (prior - 0.5) * self.config.prior_clamp
        return (torch.log(clamped / (1 - clamped)) + correction)[:, 0]

    def segment(self, query_key: torch.Tensor, features: torch.Tensor, skip: torch.Tensor, memory_keys: torch.Tensor,
                memory_values: torch.Tensor, radius: int | None = None) -> torch.Tensor:
        """Log-probabilities (N + 1, H4, W4) of background + N objects for one query frame."""
        readout = self.read(query_key, memory_keys, memory_values, radius)
        return soft_aggregate(torch.sigmoid(self.decode(readout, features, skip)))


def cell_masks(probs: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Soft object masks (N, h, w) at the feature grid from probabilities (N, H', W') at any finer size."""
    return F.adaptive_avg_pool2d(probs[None], grid)[0] if probs.shape[-2:] != grid else probs


def label_masks(mask: np.ndarray, objects: Sequence[int], size: tuple[int, int]) -> torch.Tensor:
    """Binary object masks (N, H', W') of a label map, area-resized to `size` (coverage in [0, 1])."""
    import cv2

    planes = [cv2.resize((mask == obj).astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA)
              for obj in objects]
    return torch.from_numpy(np.stack(planes)) if planes else torch.zeros(0, *size)


# --------------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------------


def save_memory_model(model: MemoryVOS, folder: str | Path, extra: dict | None = None) -> Path:
    """Write the model folder: `memory_vos.json` (format, settings, encoder spec, `extra`) and
    `memory_vos.pth` (trainable weights + encoder tensors), each atomically; returns the folder."""
    from segloop.platform.core.storage import atomic_write_bytes

    folder = Path(folder)
    trainable = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "model": trainable, "encoder": model.encoder.state()}, buffer)
    atomic_write_bytes(folder / WEIGHTS_NAME, buffer.getvalue())
    return write_memory_settings(model, folder, extra)


def write_memory_settings(model: MemoryVOS, folder: str | Path, extra: dict | None = None) -> Path:
    """Write (atomically) the model folder's `memory_vos.json`: format, settings, encoder spec and `extra`."""
    from segloop.platform.core.storage import write_json

    folder = Path(folder)
    write_json(folder / CONFIG_NAME, {"format": FORMAT, "version": VERSION, "config": model.config.as_dict(),
                                      "encoder": model.encoder.spec(), **({"extra": extra} if extra else {})})
    return folder


def _read_config(path: Path) -> dict:
    """The model folder's JSON settings; errors name the file."""
    if not path.is_file():
        raise MemoryModelError(f"{path}: missing (not a memory VOS model folder; "
                               "train one with `segloop finetune vos`)")
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MemoryModelError(f"{path}: corrupt model settings ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MemoryModelError(f"{path}: not a memory VOS model settings file (format tag missing)")
    if payload.get("version") != VERSION:
        raise MemoryModelError(f"{path}: model format version {payload.get('version')!r}, this segloop reads {VERSION}")
    return payload


def load_memory_model(folder: str | Path) -> MemoryVOS:
    """The model saved by `save_memory_model` in eval mode; errors name the missing or corrupt file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MemoryModelError(f"{folder}: no such model folder")
    payload = _read_config(folder / CONFIG_NAME)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise MemoryModelError(f"{weights}: missing (the model folder has settings but no weights)")
    state = read_torch_file(weights, "model weights", MemoryModelError)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise MemoryModelError(f"{weights}: not a memory VOS weights file (format tag missing)")
    try:
        config = MemoryConfig.from_dict(dict(payload.get("config", {})), str(folder / CONFIG_NAME))
        encoder = encoder_from_spec(dict(payload.get("encoder", {})), state.get("encoder", {}), str(weights))
        model = MemoryVOS(encoder, config)
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise MemoryModelError(f"{weights}: weights do not match {folder / CONFIG_NAME} ({exc})") from None
    return model.eval()


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryPropagationConfig:
    """Inference settings: working resolution, memory size, window (None = the model's)."""

    short_side: int = 480
    size_multiple: int = 64
    n_last: int = 7
    max_keyframes_in_context: int = 4
    radius: int | None = None
    batch_size: int = 8

    def __post_init__(self) -> None:
        checks = {
            "short_side": self.short_side >= 16, "size_multiple": self.size_multiple >= 1, "n_last": self.n_last >= 0,
            "max_keyframes_in_context": self.max_keyframes_in_context >= 1,
            "radius": self.radius is None or self.radius >= 0, "batch_size": self.batch_size >= 1,
        }
        check_settings("memory propagation", self, checks)

    def as_dict(self) -> dict:
        """JSON-ready settings."""
        return dataclasses.asdict(self)


class _Frames:
    """Working-size frames of one segment with their features, keys and stride-4 encodings, computed in batches."""

    def __init__(self, frames: Sequence[np.ndarray], model: MemoryVOS, size: tuple[int, int], batch_size: int) -> None:
        self.frames, self.model, self.size, self.batch_size = frames, model, size, batch_size
        self.cache: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def resized(self, indices: Sequence[int]) -> np.ndarray:
        """Frames resized to the working size (n, H, W, 3) uint8."""
        import cv2

        return np.stack([cv2.resize(np.ascontiguousarray(self.frames[i]), (self.size[1], self.size[0]),
                                    interpolation=cv2.INTER_LINEAR) for i in indices])

    def load(self, indices: Sequence[int]) -> None:
        """Compute (features, key, skip) of the frames not yet cached."""
        missing = [i for i in indices if i not in self.cache]
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            images = self.resized(chunk)
            features = self.model.features(images)
            keys, skips = self.model.keys(features), self.model.frame_skip(images)
            for offset, index in enumerate(chunk):
                self.cache[index] = (features[offset:offset + 1], keys[offset:offset + 1], skips[offset:offset + 1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.load([index])
        return self.cache[index]

    def keep_only(self, indices: Sequence[int]) -> None:
        """Drop cached frames other than `indices`."""
        keep = set(indices)
        self.cache = {k: v for k, v in self.cache.items() if k in keep}


def _run_pass(store: _Frames, model: MemoryVOS, order: list[int], context: list[int],
              keyframe_values: dict[int, torch.Tensor], config: MemoryPropagationConfig,
              grid: tuple[int, int]) -> Iterator[tuple[int, torch.Tensor]]:
    """(frame index, probabilities (N + 1, H4, W4)) along `order`, with the context keyframes in memory."""
    fixed_keys = [store[k][1][0] for k in context]
    fixed_values = [keyframe_values[k] for k in context]
    recent: deque = deque(maxlen=config.n_last)
    store.load(order)
    for index in order:
        features, key, skip = store[index]
        memory_keys = torch.stack(fixed_keys + [k for k, _ in recent])
        memory_values = torch.stack(fixed_values + [v for _, v in recent])
        log_probs = model.segment(key, features, skip, memory_keys, memory_values, config.radius)
        probs = log_probs.exp()
        if config.n_last:
            recent.append((key[0], model.values(features, cell_masks(probs[1:], grid))))
        yield index, probs


def _context(source: int, keyframes: list[int], limit: int) -> list[int]:
    """The pass's source keyframe and the temporally nearest other keyframes, `limit` in all."""
    others = sorted((k for k in keyframes if k != source), key=lambda k: (abs(k - source), k))
    return [source, *others[: limit - 1]]


def _frame_result(index: int, forward, backward, left, right, size: tuple[int, int], labels: list[int]) -> FrameResult:
    """Label map (original size) and confidence of one frame from its forward and/or backward probabilities."""
    w_fwd, w_bwd = _merge_weights(index, left, right)
    lookup = np.asarray(labels, dtype=np.uint8)
    if forward is not None and backward is not None:
        probs = w_fwd * forward + w_bwd * backward
        forward_labels, backward_labels = forward.max(0).indices.numpy(), backward.max(0).indices.numpy()  # = argmax(0)
        disagreement = pass_disagreement(lookup[forward_labels], lookup[backward_labels])
        passes = 2
    else:
        probs = forward if forward is not None else backward
        disagreement, passes = 0.0, 1
    full = F.interpolate(probs[None], size=size, mode="bilinear", align_corners=False)[0]
    best = full.max(dim=0)
    mask = lookup[best.indices.numpy()]
    return FrameResult(index, mask, frame_confidence(mask, best.values.numpy(), disagreement, passes, False))


def memory_working_size(size: tuple[int, int], stride: int, config: MemoryPropagationConfig) -> tuple[int, int]:
    """(height, width) at which the memory model propagates frames of `size` (PropagationError when too small)."""
    return working_size(size[0], size[1], config.short_side, max(stride, SKIP_STRIDE), rounding="floor",
                        long_multiple=config.size_multiple, error=PropagationError)


def iter_propagate_with_memory(frames: Sequence[np.ndarray], keyframe_masks: dict[int, np.ndarray], model: MemoryVOS,
                               config: MemoryPropagationConfig | None = None) -> Iterator[FrameResult]:
    """Masks and confidences of every frame in frame order (keyframes keep their own mask), as
    `propagation.iter_propagate` returns them; forward and backward passes merged between keyframes."""
    config = config or MemoryPropagationConfig()
    count, size = _validate(frames, keyframe_masks)
    keyframe_masks = {int(k): np.asarray(v, dtype=np.uint8) for k, v in keyframe_masks.items()}
    keyframes = sorted(keyframe_masks)
    labels = _label_set(keyframe_masks)
    objects = [label for label in labels if label != 0]
    work = memory_working_size(size, model.stride, config)
    grid = (work[0] // model.stride, work[1] // model.stride)
    store = _Frames(frames, model, work, config.batch_size)
    model.eval()
    with torch.inference_mode():
        keyframe_values = {k: model.values(store[k][0], label_masks(m, objects, grid))
                           for k, m in keyframe_masks.items()}
        for left, right, indices in _segments(count, keyframes):
            backward: dict[int, torch.Tensor] = {}
            if right is not None and indices:
                context = _context(right, keyframes, config.max_keyframes_in_context)
                backward = dict(_run_pass(store, model, indices[::-1], context, keyframe_values, config, grid))
            if left is not None:
                context = _context(left, keyframes, config.max_keyframes_in_context)
                forward_iter = _run_pass(store, model, indices, context, keyframe_values, config, grid)
            else:
                forward_iter = ((i, None) for i in indices)
            for index, forward in forward_iter:
                yield _frame_result(index, forward, backward.pop(index, None), left, right, size, labels)
            store.keep_only(keyframes)
            if right is not None:
                yield _keyframe_result(right, keyframe_masks[right])


def propagate_with_memory(frames: Sequence[np.ndarray], keyframe_masks: dict[int, np.ndarray], model: MemoryVOS,
                          config: MemoryPropagationConfig | None = None) -> PropagationResult:
    """All masks (T, H, W) uint8 and per-frame confidences; see `iter_propagate_with_memory`."""
    results = list(iter_propagate_with_memory(frames, keyframe_masks, model, config))
    return PropagationResult(np.stack([r.mask for r in results]), [r.confidence for r in results])


class MemoryPropagator:
    """A trained memory model used wherever a featurizer is taken (`propagation.iter_propagate` delegates to it)."""

    def __init__(self, model: MemoryVOS, config: MemoryPropagationConfig | None = None,
                 name: str = "vos model") -> None:
        self.model = model.eval()
        self.config = config or MemoryPropagationConfig()
        self.name = name
        self.device = "cpu"

    def iter_propagate(self, frames: Sequence[np.ndarray], keyframe_masks: dict[int, np.ndarray]
                       ) -> Iterator[FrameResult]:
        """Masks and confidences of every frame, as `iter_propagate_with_memory` gives them."""
        return iter_propagate_with_memory(frames, keyframe_masks, self.model, self.config)


def load_memory_propagator(folder: str | Path, short_side: int = 480) -> MemoryPropagator:
    """The saved model of `folder` (`segloop finetune vos --out`) as a propagator at this working short side."""
    return MemoryPropagator(load_memory_model(folder), MemoryPropagationConfig(short_side=short_side),
                            name=f"vos model ({Path(folder).name})")
