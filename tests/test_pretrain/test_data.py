"""Frame discovery, multi-crop dataset, seeded sampler, collate."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from segloop.pretrain.config import config_from_dict
from segloop.pretrain.data import MultiCropCollate, SeededInfiniteSampler, VideoClipDataset
from segloop.pretrain.frames import FramesError, discover_videos
from segloop.pretrain.transforms import crop_resize


def test_discover_sequence_folders_and_single_folder(videos, tmp_path):
    found = discover_videos(tmp_path / "frames")
    assert [len(v) for v in found] == [8, 6]
    assert found[0] == sorted(found[0])
    assert [len(v) for v in discover_videos(tmp_path / "frames" / "a")] == [8]


def test_discover_reports_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FramesError, match="empty"):
        discover_videos(tmp_path / "empty")
    with pytest.raises(FramesError, match="does not exist"):
        discover_videos(tmp_path / "missing")


def test_discover_davis_layout(shared_sample):
    videos = discover_videos(shared_sample)
    assert [len(v) for v in videos] == [50, 40, 60, 40]
    assert all("JPEGImages" in str(v[0]) for v in videos)


def test_discover_decodes_videos_with_decord(shared_sample, tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    (root / "car-shadow.mp4").symlink_to((shared_sample / "videos" / "car-shadow.mp4").resolve())
    videos = discover_videos(root, cache_dir=tmp_path / "cache")
    assert len(videos) == 1 and len(videos[0]) == 40
    assert (tmp_path / "cache" / "car-shadow" / ".complete").is_file()


def test_sample_shapes_and_determinism(tiny, videos):
    config = config_from_dict(tiny())
    dataset = VideoClipDataset(videos, config.data)
    sample = dataset[(3, 123)]
    assert sample["global"].shape == (2, 3, 32, 32)
    assert sample["local"].shape == (2, 3, 16, 16)
    assert sample["clip"].shape == (3, 3, 32, 32)
    again = VideoClipDataset(videos, config.data)[(3, 123)]
    assert all(torch.equal(sample[k], again[k]) for k in ("global", "local", "clip"))
    assert not torch.equal(sample["global"], dataset[(3, 124)]["global"])


def test_second_global_frame_is_within_the_gap_range(tiny, videos):
    config = config_from_dict(tiny(data={"min_frame_gap": 2, "max_frame_gap": 3}))
    dataset = VideoClipDataset(videos, config.data)
    rng = random.Random(0)
    for anchor in range(8):
        other = dataset.second_frame(0, anchor, rng)
        assert 2 <= abs(other - anchor) <= 3


def test_clip_frames_fit_the_video(tiny, videos):
    config = config_from_dict(tiny(data={"clip_length": 4, "clip_stride": 2}))
    dataset = VideoClipDataset(videos, config.data)
    assert dataset.clip_frames(0, 0) == [0, 2, 4, 6]
    assert dataset.clip_frames(0, 7) == [1, 3, 5, 7]
    assert dataset.clip_frames(1, 5) == [2, 3, 4, 5]  # 6 frames: stride shrinks to fit


def test_sampler_resumes_at_any_position_and_splits_ranks():
    def take(sampler, count):
        iterator = iter(sampler)
        return [next(iterator) for _ in range(count)]

    full = take(SeededInfiniteSampler(5, seed=1), 12)
    assert take(SeededInfiniteSampler(5, seed=1, start=7), 5) == full[7:12]
    assert sorted(i for i, _ in full[:5]) == [0, 1, 2, 3, 4]
    rank0 = [i for i, _ in take(SeededInfiniteSampler(6, seed=1, rank=0, world_size=2), 3)]
    rank1 = [i for i, _ in take(SeededInfiniteSampler(6, seed=1, rank=1, world_size=2), 3)]
    assert sorted(rank0 + rank1) == [0, 1, 2, 3, 4, 5]


def test_collate_is_crop_major_with_masks(tiny, videos):
    config = config_from_dict(tiny(loss={"mask_probability": 0.5}))
    dataset = VideoClipDataset(videos, config.data)
    samples = [dataset[(i, i)] for i in range(4)]
    batch = MultiCropCollate.from_config(16, config.data, config.loss)(samples)
    assert batch["global"].shape == (8, 3, 32, 32)
    assert torch.equal(batch["global"][1], samples[1]["global"][0])
    assert torch.equal(batch["global"][5], samples[1]["global"][1])
    assert batch["local"].shape == (8, 3, 16, 16)
    assert batch["clip"].shape == (4, 3, 3, 32, 32)
    assert batch["masks"].shape == (8, 2, 2) and (batch["masks"].flatten(1).sum(1) > 0).sum() == 4


def test_ablation_without_temporal_terms_uses_one_frame_and_no_clip(tiny, videos):
    from segloop.pretrain.data import dataloader

    config = config_from_dict(tiny(data={"min_frame_gap": 0, "max_frame_gap": 0},
                                   loss={"random_walk_weight": 0.0}))
    dataset = VideoClipDataset(videos, config.data)
    assert all(dataset.second_frame(0, anchor, random.Random(anchor)) == anchor for anchor in range(8))
    batch = next(iter(dataloader(videos, config.data, config.loss, 16, batch_size=2, seed=0)))
    assert "clip" not in batch and batch["global"].shape == (4, 3, 32, 32)


def test_jitter_box_keeps_size_and_stays_inside():
    from segloop.pretrain.data import jitter_box

    rng = random.Random(0)
    assert jitter_box((10, 10, 50, 40), 100, 80, 0.0, rng) == (10, 10, 50, 40)
    shifted = {jitter_box((0, 0, 40, 30), 100, 80, 0.25, rng) for _ in range(50)}
    assert len(shifted) > 1
    for left, top, right, bottom in shifted:
        assert right - left == 40 and bottom - top == 30 and left >= 0 and top >= 0 and right <= 100
        assert left <= 10 and top <= 8


def test_dense_sample_holds_the_anchor_and_its_references(tiny, videos):
    config = config_from_dict(tiny(dense={"pairs": 2, "references": 2}))
    pairs = VideoClipDataset(videos, config.data, config.dense)[(3, 123)]["pair"]
    assert pairs.shape == (2, 3, 3, 64, 64) and pairs.dtype == torch.uint8
    still = config_from_dict(tiny(dense={"references": 2}))
    jittered = config_from_dict(tiny(dense={"references": 2, "box_jitter": 0.5}))
    same_box = VideoClipDataset(videos, still.data, still.dense)[(3, 123)]["pair"]
    moved = VideoClipDataset(videos, jittered.data, jittered.dense)[(3, 123)]["pair"]
    assert torch.equal(same_box[:, 0], moved[:, 0]) and not torch.equal(same_box[:, 1:], moved[:, 1:])


def test_crop_resize_stays_close_to_the_exact_bicubic_resize():
    """The fast two-step resize of a large crop box differs from one exact bicubic pass by under half a grey level."""
    rows, cols = np.mgrid[0:480, 0:854]
    smooth = (127 + 60 * np.sin(rows / 23.0) + 60 * np.cos(cols / 31.0)).astype(np.uint8)
    image = Image.fromarray(np.stack([smooth, smooth[::-1], smooth[:, ::-1]], axis=-1))
    box = (100, 40, 740, 440)
    fast = np.asarray(crop_resize(image, box, 64)).astype(float)
    exact = np.asarray(image.resize((64, 64), Image.BICUBIC, box=box)).astype(float)
    assert fast.shape == (64, 64, 3)
    assert np.abs(fast - exact).mean() < 0.5
