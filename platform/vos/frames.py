"""Frames held in memory with their (video, index) key, and a featurizer wrapper that caches keyed frames' features.

Used wherever the same video is propagated many times (keyframe benchmarks, leave-one-out model
choice, fine-tuning the VOS model): each frame is read and embedded once.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segloop.platform.core.image import read_rgb


class LoadedFrames(Sequence):
    """A video's frames read once into memory; items carry (video, index) so features can be cached."""

    def __init__(self, frames: list[np.ndarray], name: str = "") -> None:
        self.frames = frames
        self.name = name

    @classmethod
    def of(cls, paths: Sequence[Path], name: str = "") -> LoadedFrames:
        """Read every frame file."""
        return cls([read_rgb(p) for p in paths], name)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> np.ndarray:
        frame = self.frames[index].view(IndexedFrame)
        frame.key = (self.name, int(index))
        return frame


class IndexedFrame(np.ndarray):
    """An RGB frame that knows its video and index."""

    key: tuple[str, int] | None = None


class CachedFeaturizer:
    """Wraps a featurizer: features of keyed frames are computed once and reused (unkeyed ones are not cached)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.device = inner.device
        self.patch = inner.patch
        self.config = inner.config
        self.name = inner.name
        self.cache: dict[tuple[str, int], object] = {}

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid of a frame size."""
        return self.inner.grid(height, width)

    def reset(self) -> None:
        """Forget the cached features."""
        self.cache.clear()

    def __call__(self, frames: Sequence[np.ndarray]):
        import torch

        keys = [getattr(f, "key", None) for f in frames]
        if any(k is None for k in keys):
            return self.inner([np.asarray(f) for f in frames])
        missing = [f for f, k in zip(frames, keys) if k not in self.cache]
        if missing:
            for frame, feature in zip(missing, self.inner([np.asarray(f) for f in missing])):
                self.cache[frame.key] = feature
        return torch.stack([self.cache[k] for k in keys])
