"""Fine-tune the memory VOS model (`memory.py`) on a project's labelled frames, arrays in.

Training samples (one memory frame, one query frame, cropped to the same window):
* pairs: two labelled frames of one video at most `max_pair_gap` frames apart, one as memory, the other as
  query (on the DAVIS sample with uniform:3 keyframes, 13-20 frames apart, pairs lowered J&F: see exp12b);
* deformed singles: one labelled frame as memory, and as query the same frame and mask under a random
  affine + smooth elastic warp, flip and colour jitter.
The dense encoder stays frozen; the key projection, value encoder, stride-4 frame encoder and decoder
are trained with cross-entropy of the soft-aggregated object probabilities against the query's labels
(objects absent from the memory crop and void pixels are ignored). Defaults train in about two minutes
on a 2-core CPU (240 px short side, 192 px crops).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segloop.platform.core.optim import finite_loss
from segloop.platform.core.schedules import cosine
from segloop.platform.vos.memory import (
    FrameEncoder,
    MemoryConfig,
    MemoryModelError,
    MemoryVOS,
    check_settings,
    label_masks,
)
from segloop.platform.vos.propagation import DENSE_ENCODER_FILE

IGNORE = -100
VOID = 255


@dataclass(frozen=True)
class MemoryTrainConfig:
    """Fine-tuning settings (defaults: ≤ 3 minutes on a 2-core CPU)."""

    short_side: int = 240
    crop: int = 192
    steps: int = 600
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-4
    pair_fraction: float = 0.5
    max_pair_gap: int = 5
    max_objects: int = 3
    rotate_degrees: float = 10.0
    scale_range: float = 0.1
    shift_fraction: float = 0.06
    elastic_fraction: float = 0.02
    object_centred: float = 0.8
    train_keys: bool = True
    max_seconds: float = 170.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "short_side": self.short_side >= 32, "crop": self.crop >= 32, "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1, "lr": self.lr > 0, "weight_decay": self.weight_decay >= 0,
            "pair_fraction": 0 <= self.pair_fraction <= 1, "max_pair_gap": self.max_pair_gap >= 1,
            "max_objects": self.max_objects >= 1,
            "object_centred": 0 <= self.object_centred <= 1, "max_seconds": self.max_seconds > 0,
        }
        check_settings("memory training", self, checks)

    def as_dict(self) -> dict:
        """JSON-ready settings."""
        return dataclasses.asdict(self)


@dataclass
class TrainingResult:
    """The trained model, its loss per step and how long training took."""

    model: MemoryVOS
    losses: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)  # after each step
    seconds: float = 0.0
    labelled_frames: int = 0


@dataclass
class _Labelled:
    """One labelled frame at the training resolution."""

    video: str
    index: int
    image: np.ndarray
    mask: np.ndarray


def _resize_pair(image: np.ndarray, mask: np.ndarray, short_side: int, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame (linear) and label map (nearest) resized to short side `short_side`, both sides floored to `multiple`."""
    import cv2

    height, width = mask.shape
    ratio = short_side / min(height, width)
    new_h = max(multiple, int(round(height * ratio)) // multiple * multiple)
    new_w = max(multiple, int(round(width * ratio)) // multiple * multiple)
    return (cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=cv2.INTER_LINEAR),
            cv2.resize(np.ascontiguousarray(mask), (new_w, new_h), interpolation=cv2.INTER_NEAREST))


def labelled_frames(frames: dict[str, Sequence[np.ndarray]], labels: dict[str, dict[int, np.ndarray]],
                    short_side: int, multiple: int) -> list[_Labelled]:
    """The labelled frames resized for training; errors name the video and frame of a bad label."""
    out = []
    for video, masks in sorted(labels.items()):
        if video not in frames:
            raise MemoryModelError(f"video {video!r}: labels given but no frames")
        for index, mask in sorted(masks.items()):
            mask = np.asarray(mask)
            if not 0 <= int(index) < len(frames[video]):
                raise MemoryModelError(f"video {video!r}: labelled frame {index} outside 0..{len(frames[video]) - 1}")
            image = np.asarray(frames[video][int(index)])
            if mask.shape != image.shape[:2]:
                raise MemoryModelError(f"video {video!r} frame {index}: mask size {mask.shape[::-1]} differs from "
                                       f"the frame's {image.shape[:2][::-1]}")
            out.append(_Labelled(video, int(index), *_resize_pair(image, mask.astype(np.uint8), short_side, multiple)))
    if not any(_objects(item.mask) for item in out):
        raise MemoryModelError("no labelled frame holds an object (every mask is background)")
    return out


def _objects(mask: np.ndarray) -> list[int]:
    """Object ids of a label map (0 and 255 excluded)."""
    return [int(v) for v in np.unique(mask) if v not in (0, VOID)]


def deform(image: np.ndarray, mask: np.ndarray, config: MemoryTrainConfig,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A frame and its label map under one random affine + smooth elastic warp (border reflected, mask nearest)."""
    import cv2

    height, width = mask.shape
    angle = rng.uniform(-config.rotate_degrees, config.rotate_degrees)
    scale = 1.0 + rng.uniform(-config.scale_range, config.scale_range)
    affine = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    affine[:, 2] += rng.uniform(-config.shift_fraction, config.shift_fraction, 2) * (width, height)
    inverse = cv2.invertAffineTransform(affine)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    map_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    map_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    map_x, map_y = map_x.astype(np.float32), map_y.astype(np.float32)
    if config.elastic_fraction > 0:
        amplitude = config.elastic_fraction * min(height, width)
        coarse = rng.normal(0.0, amplitude, (2, 4, 4)).astype(np.float32)
        map_x += cv2.resize(coarse[0], (width, height), interpolation=cv2.INTER_CUBIC)
        map_y += cv2.resize(coarse[1], (width, height), interpolation=cv2.INTER_CUBIC)
    warped = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    warped_mask = cv2.remap(mask, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)
    return warped, warped_mask


def _jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random brightness / contrast change of a frame."""
    gain, offset = rng.uniform(0.85, 1.15), rng.uniform(-15, 15)
    return np.clip(image.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)


def _crop_window(mask: np.ndarray, crop: int, multiple: int, centred: bool,
                 rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a crop (≤ `crop`, multiple of `multiple`), around an object pixel if `centred`."""
    height, width = mask.shape
    crop_h = min(crop, height) // multiple * multiple
    crop_w = min(crop, width) // multiple * multiple
    foreground = np.argwhere((mask != 0) & (mask != VOID))
    if centred and len(foreground):
        y, x = foreground[rng.integers(len(foreground))]
        top = int(np.clip(y - rng.integers(crop_h // 4, 3 * crop_h // 4 + 1), 0, height - crop_h))
        left = int(np.clip(x - rng.integers(crop_w // 4, 3 * crop_w // 4 + 1), 0, width - crop_w))
    else:
        top, left = int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))
    return top, left, crop_h, crop_w


def make_sample(items: list[_Labelled], by_video: dict[str, list[int]], config: MemoryTrainConfig, multiple: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(memory image, memory mask, query image, query mask) of one random pair or deformed single, or None
    when the memory crop holds no object."""
    first = int(rng.integers(len(items)))
    memory = items[first]
    partners = [i for i in by_video[memory.video]
                if i != first and abs(items[i].index - memory.index) <= config.max_pair_gap]
    if partners and rng.random() < config.pair_fraction:
        query = items[partners[int(rng.integers(len(partners)))]]
        query_image, query_mask = query.image, query.mask
        if query_mask.shape != memory.mask.shape:
            return None
    else:
        query_image, query_mask = deform(memory.image, memory.mask, config, rng)
    top, left, height, width = _crop_window(memory.mask, config.crop, multiple, rng.random() < config.object_centred,
                                            rng)
    window = (slice(top, top + height), slice(left, left + width))
    crops = [memory.image[window], memory.mask[window], _jitter(query_image[window], rng), query_mask[window]]
    if rng.random() < 0.5:
        crops = [c[:, ::-1] for c in crops]
    if not _objects(crops[1]):
        return None
    return tuple(np.ascontiguousarray(c) for c in crops)


def query_targets(query_mask: np.ndarray, objects: Sequence[int]) -> np.ndarray:
    """Class index per pixel: 0 background, i + 1 for objects[i], IGNORE for void and objects not in memory."""
    lookup = np.full(256, IGNORE, dtype=np.int64)
    lookup[0] = 0
    for slot, obj in enumerate(objects):
        lookup[obj] = slot + 1
    return lookup[query_mask]


def sample_loss(model: MemoryVOS, sample: tuple[np.ndarray, ...], max_objects: int,
                rng: np.random.Generator) -> torch.Tensor | None:
    """Cross-entropy of the soft-aggregated prediction of the query from the memory frame (None: nothing to score)."""
    memory_image, memory_mask, query_image, query_mask = sample
    objects = _objects(memory_mask)
    if len(objects) > max_objects:
        objects = sorted(rng.choice(objects, size=max_objects, replace=False).tolist())
    features = model.features(np.stack([memory_image, query_image]))
    keys = model.keys(features)
    grid = tuple(features.shape[-2:])
    values = model.values(features[:1], label_masks(memory_mask, objects, grid))[None]
    skip = model.frame_skip(query_image[None])
    log_probs = model.segment(keys[1:], features[1:], skip, keys[:1], values)
    log_probs = torch.log_softmax(F.interpolate(log_probs[None], size=query_mask.shape, mode="bilinear",
                                                align_corners=False), dim=1)
    target = torch.from_numpy(query_targets(query_mask, objects))[None]
    if not (target != IGNORE).any():
        return None
    return F.nll_loss(log_probs, target, ignore_index=IGNORE)


def train_memory_model(frames: dict[str, Sequence[np.ndarray]], labels: dict[str, dict[int, np.ndarray]],
                       encoder: FrameEncoder | MemoryVOS, config: MemoryTrainConfig | None = None,
                       model_config: MemoryConfig | None = None,
                       progress: Callable[[float, str], None] | None = None) -> TrainingResult:
    """Fine-tune a memory model on `labels` ({video: {frame index: label map}}) of `frames` ({video: frames}).

    `encoder` is a frozen `FrameEncoder` (a new model is built with `model_config`) or a `MemoryVOS` to continue.
    Stops after `steps` or `max_seconds`, whichever comes first; the cosine learning rate follows whichever is
    nearer its end, so a run cut by the time limit still ends annealed.
    """
    config = config or MemoryTrainConfig()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = encoder if isinstance(encoder, MemoryVOS) else MemoryVOS(encoder, model_config)
    multiple = max(model.stride, 4)
    items = labelled_frames(frames, labels, config.short_side, multiple)
    by_video: dict[str, list[int]] = {}
    for position, item in enumerate(items):
        by_video.setdefault(item.video, []).append(position)
    frozen = () if config.train_keys else ("key_proj.", "log_scale")
    trained = [p for name, p in model.named_parameters() if p.requires_grad and not name.startswith(frozen)]
    optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=config.weight_decay)
    model.train()
    losses: list[float] = []
    learning_rates: list[float] = []
    started = time.monotonic()
    for step in range(config.steps):
        batch = [loss for loss in (_one_loss(model, items, by_video, config, multiple, rng)
                                   for _ in range(config.batch_size)) if loss is not None]
        if not batch:
            continue
        loss = torch.stack(batch).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = schedule_fraction(step + 1, config.steps, time.monotonic() - started, config.max_seconds)
        for group in optimizer.param_groups:
            group["lr"] = cosine(done, 1, config.lr, 0.0)  # `done` is the fraction of a horizon of 1
        losses.append(finite_loss(float(loss.detach()), step + 1, "retrain with another seed, or check that the "
                                  "encoder checkpoint holds finite weights"))
        learning_rates.append(optimizer.param_groups[0]["lr"])
        if progress and (step % 10 == 0 or done >= 1):
            progress(done, f"step {step + 1}/{config.steps} loss {losses[-1]:.4f}")
        if done >= 1:
            break
    model.eval()
    return TrainingResult(model, losses, learning_rates, time.monotonic() - started, len(items))


def schedule_fraction(steps_done: int, steps: int, elapsed: float, max_seconds: float) -> float:
    """How far training is through its horizon (0 to 1): the larger of the step and the time fractions."""
    return min(1.0, max(steps_done / steps, elapsed / max_seconds))


def _one_loss(model: MemoryVOS, items: list[_Labelled], by_video: dict[str, list[int]], config: MemoryTrainConfig,
              multiple: int, rng: np.random.Generator, attempts: int = 5) -> torch.Tensor | None:
    """The loss of one random sample (a few draws until one has an object in its memory crop)."""
    for _ in range(attempts):
        sample = make_sample(items, by_video, config, multiple, rng)
        if sample is not None:
            loss = sample_loss(model, sample, config.max_objects, rng)
            if loss is not None:
                return loss
    return None


def frame_encoder(source: str | Path | None) -> FrameEncoder:
    """The frozen encoder a memory model is built on: a pretrain run's dense encoder, else Lab colour cells."""
    from segloop.platform.vos.memory import DenseEncoderFrames, LabCellEncoder

    if source is None:
        return LabCellEncoder()
    if not (Path(source) / DENSE_ENCODER_FILE).is_file():  # it fell back to colour cells without a word
        raise MemoryModelError(f"{source}: holds no {DENSE_ENCODER_FILE}; the VOS model is built on the dense "
                               "encoder of a `segloop pretrain --out` folder: give such a folder, or none for colour "
                               "cells")
    from segloop.pretrain.dense import load_dense_encoder

    return DenseEncoderFrames(load_dense_encoder(source))


def check_scoring_size(frames: dict[str, Sequence[np.ndarray]], stride: int, short_side: int) -> None:
    """PropagationError naming the option and the video when `held_out_comparison` at `short_side` could not
    propagate a video's frames (checked before training, not after it)."""
    from segloop.platform.vos.memory import MemoryPropagationConfig, memory_working_size
    from segloop.platform.vos.propagation import PropagationError

    config = MemoryPropagationConfig(short_side=short_side)
    for name, video in frames.items():
        try:
            memory_working_size(video.size, stride, config)
        except PropagationError as exc:
            raise PropagationError(f"--prop-short-side {short_side}: {name}: {exc}; give a larger value") from None


def held_out_comparison(frames: dict[str, Sequence[np.ndarray]], truth: dict[str, dict[int, np.ndarray]],
                        keyframes: dict[str, list[int]], model: MemoryVOS, short_side: int,
                        progress: Callable[[float, str], None] | None = None) -> dict[str, float]:
    """J&F on the labelled non-keyframes of plain propagation (the model's own frozen encoder) and of the model."""
    from segloop.platform.evaluation import metrics as evaluation
    from segloop.platform.vos.memory import EncoderFeaturizer, MemoryPropagationConfig, iter_propagate_with_memory
    from segloop.platform.vos.propagation import PropagationConfig, iter_propagate

    plain_config = PropagationConfig(short_side=short_side, size_multiple=max(model.stride, 4))
    plain = EncoderFeaturizer(model.encoder, plain_config)
    memory_config = MemoryPropagationConfig(short_side=short_side)
    reports = {"J&F_plain": evaluation.VOSReport(), "J&F_model": evaluation.VOSReport()}
    for position, (name, video) in enumerate(frames.items()):
        keys = {k: truth[name][k] for k in keyframes[name]}
        # The protocol leaves out the first and last frame: a video with nothing else labelled is not scored (it
        # failed the whole run after training, leaving the model folder behind).
        scored = evaluation.scored_frames(len(video), [i for i in truth[name] if i not in keys])
        if not scored:
            continue
        objects = sorted({int(v) for m in keys.values() for v in np.unique(m) if v not in (0, 255)})
        runs = {"J&F_plain": iter_propagate(video, keys, plain, plain_config),
                "J&F_model": iter_propagate_with_memory(video, keys, model, memory_config)}
        for label, results in runs.items():
            masks = {r.index: r.mask for r in results if r.index in scored}
            gt = [truth[name].get(i, np.full(next(iter(keys.values())).shape, 255, np.uint8))
                  for i in range(len(video))]
            pred = [masks.get(i, gt[i]) for i in range(len(video))]
            reports[label].objects.extend(evaluation.evaluate_sequence(name, pred, gt, frames=scored,
                                                                       object_ids=objects))
        if progress:
            progress((position + 1) / len(frames), f"scored {name}")
    return {label: report.summary()["J&F"] for label, report in reports.items() if report.objects}
