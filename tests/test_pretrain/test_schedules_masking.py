"""Schedules, EMA update and block masking."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from segloop.pretrain.config import config_from_dict
from segloop.pretrain.masking import block_mask, sample_masks
from segloop.pretrain.schedules import Schedules, cosine, linear_warmup


def test_cosine_schedule_warmup_midpoint_and_end():
    assert cosine(0, 100, 1.0, 0.0, warmup=10) == 0.0
    assert math.isclose(cosine(5, 100, 1.0, 0.0, warmup=10), 0.5)
    assert math.isclose(cosine(10, 100, 1.0, 0.0, warmup=10), 1.0)
    assert math.isclose(cosine(55, 100, 1.0, 0.0, warmup=10), 0.5)
    assert math.isclose(cosine(100, 100, 1.0, 0.0, warmup=10), 0.0, abs_tol=1e-12)


def test_run_schedules_follow_the_config():
    config = config_from_dict({"run": {"steps": 100}, "optim": {"warmup_fraction": 0.1, "lr": 1e-3, "min_lr": 0.0},
                               "loss": {"warmup_teacher_temp_fraction": 0.2}})
    schedules = Schedules(config)
    assert schedules.at(0).momentum == pytest.approx(0.992)
    assert schedules.at(100).momentum == pytest.approx(1.0)
    assert schedules.at(50).momentum == pytest.approx(0.996)
    assert schedules.at(10).lr == pytest.approx(1e-3)
    assert schedules.at(0).weight_decay == pytest.approx(0.04)
    assert schedules.at(100).weight_decay == pytest.approx(0.2)
    assert schedules.at(0).teacher_temp == pytest.approx(0.04)
    assert schedules.at(10).teacher_temp == pytest.approx(0.055)
    assert schedules.at(20).teacher_temp == pytest.approx(0.07)
    assert linear_warmup(5, 0, 1.0, 2.0) == 2.0


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5])
def test_block_mask_masks_exactly_the_requested_share(ratio):
    rng = random.Random(0)
    for _ in range(20):
        mask = block_mask(8, 8, round(ratio * 64), rng)
        assert mask.shape == (8, 8)
        assert mask.sum() == round(ratio * 64)


def test_block_mask_is_mostly_contiguous():
    mask = block_mask(14, 14, 60, random.Random(1))
    # neighbours of masked patches are masked far more often than the 30% a random mask would give
    padded = np.pad(mask, 1)
    neighbours = (padded[:-2, 1:-1] & mask).sum() + (padded[2:, 1:-1] & mask).sum()
    assert neighbours / (2 * mask.sum()) > 0.5


def test_sample_masks_masks_the_requested_share_of_images_within_the_ratio_range():
    masks = sample_masks(20, 6, 6, (0.1, 0.5), 0.5, random.Random(2))
    counts = masks.reshape(20, -1).sum(1)
    assert (counts > 0).sum() == 10
    masked = counts[counts > 0] / 36
    assert masked.min() >= 0.1 - 1 / 36 and masked.max() <= 0.5 + 1 / 36
