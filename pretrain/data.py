"""Video multi-crop dataset, seeded infinite sampler and collate for self-supervised pretraining.

A sample is one anchor frame of one video. Its two DINO global crops come from the anchor and a
second frame of the same video at a random temporal gap (so the image-level objective asks for
temporal invariance), plus local crops, plus a short clip (same crop box in every frame) for the
contrastive random walk ("Space-Time Correspondence as a Contrastive Random Walk", Jabri et al.,
2020). Input is a plain `list[list[Path]]` (ordered frame files per video) so that frames from a
folder and frames stored by the segloop database feed the same class.
"""
from __future__ import annotations

import dataclasses
import random
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from segloop.pretrain.config import DataConfig, DenseConfig, LossConfig, dense_encoder_on
from segloop.pretrain.masking import sample_masks
from segloop.pretrain.transforms import (
    PhotometricAugment,
    color_jitter,
    crop_resize,
    maybe_flip,
    resized_crop_box,
    to_tensor,
)

MASK_SEED_SALT = 0x5EED


class DatasetError(ValueError):
    """Frames that cannot be used for pretraining; the message names the file or the reason."""


def load_frame(path: Path, min_side: int) -> Image.Image:
    """An RGB frame with its shorter side reduced to about min_side (fast JPEG draft decoding)."""
    try:
        image = Image.open(path)
        image.draft("RGB", (min_side * image.width // max(1, min(image.size)),
                            min_side * image.height // max(1, min(image.size))))
        image = image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read image: {exc}") from None
    scale = min_side / min(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.BILINEAR)
    return image


def jitter_box(box: tuple[int, int, int, int], width: int, height: int, fraction: float,
               rng: random.Random) -> tuple[int, int, int, int]:
    """The box shifted by up to `fraction` of its size in x and y, kept inside the image."""
    if fraction <= 0:
        return box
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    dx = round(rng.uniform(-fraction, fraction) * w)
    dy = round(rng.uniform(-fraction, fraction) * h)
    left = min(max(0, left + dx), width - w)
    top = min(max(0, top + dy), height - h)
    return left, top, left + w, top + h


class VideoClipDataset(Dataset):
    """Multi-crop views and a clip per (video, anchor frame); item = (index, sample seed)."""

    def __init__(self, videos: Sequence[Sequence[Path]], config: DataConfig, dense: DenseConfig | None = None):
        self.videos = [[Path(p) for p in frames] for frames in videos if len(frames) > 0]
        if not self.videos:
            raise DatasetError("no frames to pretrain on: every video is empty")
        self.config = config
        self.dense = dense if dense is not None and dense_encoder_on(dense.weight) else None
        self.index = [(v, f) for v, frames in enumerate(self.videos) for f in range(len(frames))]
        self.load_side = 2 * max(config.global_size, config.clip_size)
        if self.dense is not None:
            self.load_side = max(self.load_side, self.dense.load_side)
        self._cache: OrderedDict[Path, Image.Image] = OrderedDict()
        self.global_augments = (
            PhotometricAugment(config.color_jitter, 0.2, 1.0, 0.0),
            PhotometricAugment(config.color_jitter, 0.2, 0.1, config.solarization),
        )
        self.local_augment = PhotometricAugment(config.color_jitter, 0.2, 0.5, 0.0)

    def __len__(self) -> int:
        return len(self.index)

    def frame(self, path: Path) -> Image.Image:
        """A decoded frame, from a small per-process LRU cache."""
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        image = load_frame(path, self.load_side)
        if self.config.cache_frames > 0:
            self._cache[path] = image
            while len(self._cache) > self.config.cache_frames:
                self._cache.popitem(last=False)
        return image

    def second_frame(self, video: int, anchor: int, rng: random.Random) -> int:
        """Index of the other global frame: a random gap in [min_frame_gap, max_frame_gap], either direction."""
        length = len(self.videos[video])
        if length == 1:
            return anchor
        gap = rng.randint(self.config.min_frame_gap, self.config.max_frame_gap)
        candidates = [anchor + gap, anchor - gap]
        rng.shuffle(candidates)
        for other in candidates:
            if 0 <= other < length:
                return other
        return 0 if anchor >= length - 1 - anchor else length - 1  # video shorter than the gap: farthest frame

    def clip_frames(self, video: int, anchor: int) -> list[int]:
        """clip_length frame indices from the anchor at clip_stride (shifted or squeezed to fit the video)."""
        length, count = len(self.videos[video]), self.config.clip_length
        stride = max(1, min(self.config.clip_stride, (length - 1) // max(1, count - 1)))
        start = min(anchor, max(0, length - 1 - stride * (count - 1)))
        return [min(start + i * stride, length - 1) for i in range(count)]

    def _global_views(self, video: int, anchor: int, rng: random.Random) -> list[torch.Tensor]:
        """The two global crops: anchor frame and a temporally distant frame."""
        frames = [anchor, self.second_frame(video, anchor, rng)]
        views = []
        for frame_index, augment in zip(frames, self.global_augments):
            image = self.frame(self.videos[video][frame_index])
            box = resized_crop_box(image.width, image.height, self.config.global_scale, rng)
            view = maybe_flip(crop_resize(image, box, self.config.global_size), rng)
            views.append(to_tensor(augment(view, rng)))
        return views

    def _local_views(self, video: int, anchor: int, rng: random.Random) -> list[torch.Tensor]:
        """num_local_crops small crops of the anchor frame."""
        image = self.frame(self.videos[video][anchor])
        views = []
        for _ in range(self.config.num_local_crops):
            box = resized_crop_box(image.width, image.height, self.config.local_scale, rng)
            view = maybe_flip(crop_resize(image, box, self.config.local_size), rng)
            views.append(to_tensor(self.local_augment(view, rng)))
        return views

    def _clip(self, video: int, anchor: int, rng: random.Random) -> torch.Tensor:
        """(T, 3, S, S) clip: one crop box (shifted per frame by up to clip_jitter of its size, so that patch
        position alone does not solve the walk) and one flip for all frames, mild per-frame colour jitter."""
        indices = self.clip_frames(video, anchor)
        first = self.frame(self.videos[video][indices[0]])
        box = resized_crop_box(first.width, first.height, self.config.clip_scale, rng)
        flip = rng.random() < 0.5
        frames = []
        for frame_index in indices:
            frame_box = jitter_box(box, first.width, first.height, self.config.clip_jitter, rng)
            image = crop_resize(self.frame(self.videos[video][frame_index]), frame_box, self.config.clip_size)
            if flip:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
            image = color_jitter(image, rng, brightness=0.2, contrast=0.2, saturation=0.1, hue=0.0)
            frames.append(to_tensor(image))
        return torch.stack(frames)

    def pair_frame(self, video: int, anchor: int, rng: random.Random) -> int:
        """The other frame of a dense pair: dense.min_gap..max_gap frames away, either direction (clamped)."""
        length = len(self.videos[video])
        gap = rng.randint(self.dense.min_gap, self.dense.max_gap)
        candidates = [anchor + gap, anchor - gap]
        rng.shuffle(candidates)
        for other in candidates:
            if 0 <= other < length:
                return other
        return 0 if anchor >= length - 1 - anchor else length - 1

    def _pairs(self, video: int, anchor: int, rng: random.Random) -> torch.Tensor:
        """(pairs, 1 + references, 3, S, S) uint8 RGB: the anchor and its reference frames, one crop box
        (each reference's shifted by up to `box_jitter`) and one flip."""
        size, out = self.dense.crop_size, []
        for _ in range(self.dense.pairs):
            indices = [anchor] + [self.pair_frame(video, anchor, rng) for _ in range(self.dense.references)]
            first = self.frame(self.videos[video][indices[0]])
            box = resized_crop_box(first.width, first.height, tuple(self.dense.crop_scale), rng)
            flip = rng.random() < 0.5
            frames = []
            for position, frame_index in enumerate(indices):
                frame_box = box if position == 0 else jitter_box(box, first.width, first.height,
                                                                 self.dense.box_jitter, rng)
                image = crop_resize(self.frame(self.videos[video][frame_index]), frame_box, size)
                if flip:
                    image = image.transpose(Image.FLIP_LEFT_RIGHT)
                array = np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
                frames.append(torch.from_numpy(array).permute(2, 0, 1))
            out.append(torch.stack(frames))
        return torch.stack(out)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        """Views of sample `index`, every random choice seeded by `seed`."""
        index, seed = item
        video, anchor = self.index[index]
        rng = random.Random(seed)
        sample = {
            "global": torch.stack(self._global_views(video, anchor, rng)),
            "seed": seed,
        }
        if self.config.num_local_crops:
            sample["local"] = torch.stack(self._local_views(video, anchor, rng))
        if self.config.clip_length:
            sample["clip"] = self._clip(video, anchor, rng)
        if self.dense is not None:
            sample["pair"] = self._pairs(video, anchor, rng)
        return sample


class SeededInfiniteSampler(Sampler):
    """Endless (index, seed) pairs: per-epoch permutations split across ranks, startable at any position.

    Position p of rank r is a pure function of (seed, p, r, world size), so a resumed run that starts
    at `start = step * batch_size` sees exactly the samples and augmentations it would have seen.
    """

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0):
        if size <= 0:
            raise DatasetError("sampler over an empty dataset")
        self.size, self.seed, self.rank, self.world_size, self.start = size, seed, rank, world_size, start

    def _epoch_order(self, epoch: int) -> list[int]:
        """This rank's share of epoch `epoch`'s permutation."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        per_rank = max(1, self.size // self.world_size)
        share = order[self.rank::self.world_size][:per_rank]
        return share or order[:1]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start
        per_epoch = len(self._epoch_order(0))
        epoch, offset = divmod(position, per_epoch)
        while True:
            order = self._epoch_order(epoch)
            for index in order[offset:]:
                seed = (self.seed * 7_919 + position) * 65_537 + self.rank
                yield index, seed % (2**63)
                position += 1
            epoch, offset = epoch + 1, 0


@dataclass
class MultiCropCollate:
    """Stack samples crop-major ([crop 0 of every sample, crop 1 of every sample, ...]) and draw iBOT masks."""

    patch_size: int
    global_size: int
    mask_ratio: tuple[float, float] = (0.1, 0.5)
    mask_probability: float = 0.5

    @classmethod
    def from_config(cls, patch: int, data: DataConfig, loss: LossConfig) -> MultiCropCollate:
        """The collate matching a data/loss config and a backbone patch size."""
        return cls(patch, data.global_size, tuple(loss.mask_ratio), loss.mask_probability)

    def __call__(self, samples: list[dict]) -> dict:
        batch = {"global": torch.cat([torch.stack([s["global"][i] for s in samples]) for i in range(2)])}
        if "local" in samples[0]:
            count = samples[0]["local"].shape[0]
            batch["local"] = torch.cat([torch.stack([s["local"][i] for s in samples]) for i in range(count)])
        if "clip" in samples[0]:
            batch["clip"] = torch.stack([s["clip"] for s in samples])
        if "pair" in samples[0]:
            batch["pair"] = torch.cat([s["pair"] for s in samples])
        grid = self.global_size // self.patch_size
        rng = random.Random(sum(int(s["seed"]) for s in samples) ^ MASK_SEED_SALT)
        masks = sample_masks(len(batch["global"]), grid, grid, self.mask_ratio, self.mask_probability, rng)
        batch["masks"] = torch.from_numpy(masks)
        batch["seeds"] = torch.tensor([int(s["seed"]) for s in samples], dtype=torch.int64)
        return batch


def dataloader(videos: Sequence[Sequence[Path]], data: DataConfig, loss: LossConfig, patch: int,
               batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
               start: int = 0, dense: DenseConfig | None = None) -> torch.utils.data.DataLoader:
    """An endless DataLoader over the videos starting at sample position `start` of this rank."""
    if loss.random_walk_weight <= 0:
        data = dataclasses.replace(data, clip_length=0)  # no clip needed: do not decode one
    dataset = VideoClipDataset(videos, data, dense)
    sampler = SeededInfiniteSampler(len(dataset), seed, rank, world_size, start)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=data.num_workers,
        collate_fn=MultiCropCollate.from_config(patch, data, loss),
        drop_last=True,
        persistent_workers=data.num_workers > 0,
        prefetch_factor=2 if data.num_workers > 0 else None,
        worker_init_fn=_worker_init,
    )


def _worker_init(worker_id: int) -> None:
    """One intra-op thread per data worker (the trainer uses the cores)."""
    torch.set_num_threads(1)
    np.random.seed(worker_id)
