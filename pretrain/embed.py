"""Per-frame embeddings from a (pretrained) ViT: the CLS token and the mean of the patch tokens.

Frames are resized whole (no crop) so that their short side is `img_size` and both sides are
multiples of the patch size, ImageNet-normalised, and embedded in batches of frames that share a
working size. Results are float32 in memory and float16 on disk.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from segloop.platform.core.device import resolve_device
from segloop.platform.core.image import working_size
from segloop.platform.core.storage import atomic_path
from segloop.pretrain.backbones import patch_size
from segloop.pretrain.transforms import to_tensor

Progress = Callable[[float, str], None]


class EmbedError(ValueError):
    """Frames or an output path that cannot be embedded/written; the message names which and why."""


class _FrameDataset(torch.utils.data.Dataset):
    """Resized, normalised frames of a list of paths (one working size per item)."""

    def __init__(self, paths: Sequence[Path], sizes: Sequence[tuple[int, int]]):
        self.paths, self.sizes = list(paths), list(sizes)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        try:
            image = Image.open(self.paths[index])
            image.draft("RGB", self.sizes[index])
            image = image.convert("RGB").resize(self.sizes[index], Image.BICUBIC)
        except (OSError, ValueError) as exc:
            raise EmbedError(f"{self.paths[index]}: cannot read image: {exc}") from None
        return to_tensor(image)


def _size_batches(sizes: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Indices grouped by working size, in order, cut into batches."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, size in enumerate(sizes):
        groups.setdefault(size, []).append(index)
    return [indices[i:i + batch_size] for indices in groups.values() for i in range(0, len(indices), batch_size)]


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) read from the file header."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError) as exc:
        raise EmbedError(f"{path}: cannot read image: {exc}") from None


@torch.inference_mode()
def embed_frames(paths: Sequence[Path], backbone: nn.Module, img_size: int = 224, batch_size: int = 32,
                 num_workers: int = 1, device: str | torch.device | None = None,
                 progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(cls, patch_mean): two float32 arrays (N, C), one row per path in order."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise EmbedError("no frames to embed")
    device = torch.device(resolve_device(str(device or "auto")))
    backbone = backbone.eval().to(device)
    patch = patch_size(backbone)
    prefix = int(getattr(backbone, "num_prefix_tokens", 1))
    # PIL sizes are (width, height); working_size's are (height, width)
    sizes = [working_size(h, w, img_size, patch, rounding="nearest")[::-1] for w, h in map(_image_size, paths)]
    batches = _size_batches(sizes, batch_size)
    loader = torch.utils.data.DataLoader(_FrameDataset(paths, sizes), batch_sampler=batches, num_workers=num_workers)
    dim = int(backbone.embed_dim)
    cls = np.zeros((len(paths), dim), dtype=np.float32)
    patch_mean = np.zeros((len(paths), dim), dtype=np.float32)
    done = 0
    for indices, images in zip(batches, loader):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            tokens = backbone.forward_features(images.to(device))
        tokens = tokens.float()
        cls[indices] = tokens[:, 0].cpu().numpy()
        patch_mean[indices] = tokens[:, prefix:].mean(dim=1).cpu().numpy()
        done += len(indices)
        if progress is not None:
            progress(done / len(paths), f"{done}/{len(paths)} frames")
    return cls, patch_mean


def output_paths(out: str | Path) -> dict[str, Path]:
    """The files written for --out FILE: <stem>.npy (CLS), <stem>.patch_mean.npy, <stem>.json (keys + meta)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".npy", ".npz", ".json") else out
    return {"cls": stem.with_name(stem.name + ".npy"),
            "patch_mean": stem.with_name(stem.name + ".patch_mean.npy"),
            "keys": stem.with_name(stem.name + ".json")}


def save_embeddings(out: str | Path, keys: Sequence[str], cls: np.ndarray, patch_mean: np.ndarray,
                    meta: dict) -> dict[str, Path]:
    """Write float16 arrays and a JSON of frame keys + metadata atomically; the written paths."""
    files = output_paths(out)

    for name, array in (("cls", cls), ("patch_mean", patch_mean)):
        with atomic_path(files[name]) as tmp, tmp.open("wb") as handle:
            np.save(handle, array.astype(np.float16))
    document = {**meta, "count": len(keys), "dim": int(cls.shape[1]), "dtype": "float16",
                "cls_file": files["cls"].name, "patch_mean_file": files["patch_mean"].name, "keys": list(keys)}
    with atomic_path(files["keys"]) as tmp:
        tmp.write_text(json.dumps(document, indent=1))
    return files
