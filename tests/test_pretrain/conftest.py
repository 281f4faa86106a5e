"""Shared fixtures: a tiny ViT config and synthetic moving-square videos as JPEG folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "davis-sample"


def tiny_overrides(**sections) -> dict:
    """Overrides for a config that trains vit_tiny at 32 px in well under a second per step."""
    base = {
        "model": {"backbone": "vit_tiny_patch16_224", "head_out_dim": 64, "head_hidden_dim": 32,
                  "head_bottleneck_dim": 16},
        "data": {"global_size": 32, "local_size": 16, "clip_size": 32, "clip_length": 3, "num_local_crops": 2,
                 "num_workers": 0, "max_frame_gap": 3},
        "run": {"steps": 4, "batch_size": 4, "checkpoint_every": 2},
        "loss": {"random_walk_weight": 1.0},  # off by default; the tiny runs keep exercising it
        "dense": {"width": 8, "blocks": 1, "dim": 16, "crop_size": 64, "radius": 2, "max_gap": 3},
    }
    for section, values in sections.items():
        base.setdefault(section, {}).update(values)
    return base


def write_video(folder: Path, frames: int = 8, size: tuple[int, int] = (80, 64), seed: int = 0) -> list[Path]:
    """JPEG frames of a textured square moving over a noisy background."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    background = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    square = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
    paths = []
    for t in range(frames):
        image = background.copy()
        x, y = 5 + 4 * t, 10 + 2 * t
        image[y:y + 20, x:x + 20] = square
        path = folder / f"{t:05d}.jpg"
        Image.fromarray(image).save(path, quality=95)
        paths.append(path)
    return paths


@pytest.fixture
def videos(tmp_path: Path) -> list[list[Path]]:
    """Two synthetic videos as ordered frame lists."""
    root = tmp_path / "frames"
    return [write_video(root / "a", 8, seed=0), write_video(root / "b", 6, seed=1)]


@pytest.fixture
def shared_sample() -> Path:
    """The shared DAVIS sample, or skip."""
    if not (SHARED_SAMPLE / "JPEGImages" / "480p").is_dir():
        pytest.skip(f"shared DAVIS sample not found at {SHARED_SAMPLE.resolve()}")
    return SHARED_SAMPLE


@pytest.fixture
def tiny():
    """Factory of tiny-config overrides (see tiny_overrides)."""
    return tiny_overrides
