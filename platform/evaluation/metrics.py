"""DAVIS J&F for video object segmentation, and mIoU / per-class J&F / temporal stability for VSS.

Definitions follow the DAVIS benchmark (Perazzi et al. 2016; Pont-Tuset et al. 2017, and the
reference `davis2017-evaluation` code), re-implemented here with numpy and cv2:

* J (region similarity) = |P ∩ G| / |P ∪ G|, 1 when the union is empty. Void pixels (label 255 in
  a palette ground truth) count in neither.
* F (boundary F-measure): one-pixel boundary maps of both masks (`boundary_map`, DAVIS' seg2bmap),
  each dilated with a disk of radius ceil(0.008 × image diagonal) pixels; precision = fraction of
  predicted boundary pixels within the tolerance of a ground-truth boundary pixel, recall the
  converse, F = 2PR / (P + R) (0 when P + R = 0). Empty boundaries: both empty P = R = 1; only the
  prediction empty P = 1, R = 0; only the ground truth empty P = 0, R = 1.
* Per object, over the scored frames in temporal order: mean, recall (fraction > 0.5) and decay
  (mean of the first of 4 temporal bins minus the mean of the last; DAVIS' bin edges, which
  overlap by one frame). The semi-supervised protocol does not score the first and last frame.
* The J&F mean pools all objects of all sequences: (mean J + mean F) / 2.

VSS temporal measures: `temporal_stability` = mean IoU of consecutive predicted class maps (blind to the
ground truth: a prediction that never changes scores 1); `temporal_flicker` = the fraction of pixels
whose predicted class changes between consecutive scored frames where the true class does not (pooled
over pixels of all pairs; 0 = steady where the scene is, lower is better).

Object ids of a sequence are the labels found in its ground truth (any frame; 0 = background and
255 = void excluded). For DAVIS, whose first frame holds every object, this equals DAVIS' 1..K.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from segloop.platform.core import davis
from segloop.platform.core.davis import list_sequences
from segloop.platform.core.masks import VOID_LABEL, object_ious

DAVIS_BOUND_TH = 0.008


class EvaluationError(ValueError):
    """Predictions and ground truth that cannot be scored together; the message says which and why."""


# --------------------------------------------------------------------------------------------
# Per-frame measures
# --------------------------------------------------------------------------------------------


def boundary_tolerance(shape: tuple[int, int], bound_th: float = DAVIS_BOUND_TH) -> int:
    """Boundary tolerance in pixels: `bound_th` itself if ≥ 1, else ceil(bound_th × diagonal)."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.hypot(shape[0], shape[1])))


def disk_kernel(radius: int) -> np.ndarray:
    """Disk structuring element (2r+1)² with x² + y² ≤ r² (as skimage.morphology.disk)."""
    coords = np.arange(-radius, radius + 1)
    return ((coords[:, None] ** 2 + coords[None, :] ** 2) <= radius**2).astype(np.uint8)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary of a binary mask, DAVIS' seg2bmap.

    A pixel is boundary if it differs from its right, bottom or bottom-right neighbour; outside the
    image counts as "equal", so the image border itself is never a boundary (in the last column
    only the bottom neighbour is compared, in the last row only the right one, and the
    bottom-right corner pixel is never boundary). The map therefore marks the pixels on both sides
    of each up/left edge: a lone foreground pixel at (r, c) gives the 2×2 block (r-1..r, c-1..c).
    """
    seg = np.asarray(mask).astype(bool)
    if seg.ndim != 2:
        raise EvaluationError(f"boundary_map needs a 2-D mask, got shape {seg.shape}")
    right = np.zeros_like(seg)
    below = np.zeros_like(seg)
    below_right = np.zeros_like(seg)
    right[:, :-1] = seg[:, 1:]
    below[:-1, :] = seg[1:, :]
    below_right[:-1, :-1] = seg[1:, 1:]
    boundary = (seg ^ right) | (seg ^ below) | (seg ^ below_right)
    boundary[-1, :] = seg[-1, :] ^ right[-1, :]
    boundary[:, -1] = seg[:, -1] ^ below[:, -1]
    boundary[-1, -1] = False
    return boundary


def region_similarity(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """J = |P ∩ G| / |P ∪ G| of two binary masks, 1 when the union is empty; void pixels ignored."""
    pred, gt = _binary_pair(pred, gt)
    keep = np.ones_like(gt) if void is None else ~np.asarray(void, dtype=bool)
    union = np.count_nonzero((pred | gt) & keep)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(pred & gt & keep) / union)


def boundary_precision_recall(
    pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None, bound_th: float = DAVIS_BOUND_TH
) -> tuple[float, float]:
    """Boundary precision and recall of two binary masks with DAVIS' tolerance and empty-map rules."""
    pred, gt = _binary_pair(pred, gt)
    if void is not None:
        keep = ~np.asarray(void, dtype=bool)
        pred, gt = pred & keep, gt & keep
    pred_boundary = boundary_map(pred)
    gt_boundary = boundary_map(gt)
    n_pred = int(np.count_nonzero(pred_boundary))
    n_gt = int(np.count_nonzero(gt_boundary))
    if n_pred == 0 and n_gt == 0:
        return 1.0, 1.0
    if n_pred == 0:
        return 1.0, 0.0
    if n_gt == 0:
        return 0.0, 1.0
    kernel = disk_kernel(boundary_tolerance(gt.shape, bound_th))
    pred_dilated = cv2.dilate(pred_boundary.astype(np.uint8), kernel).astype(bool)
    gt_dilated = cv2.dilate(gt_boundary.astype(np.uint8), kernel).astype(bool)
    precision = np.count_nonzero(pred_boundary & gt_dilated) / n_pred
    recall = np.count_nonzero(gt_boundary & pred_dilated) / n_gt
    return float(precision), float(recall)


def boundary_f_measure(
    pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None, bound_th: float = DAVIS_BOUND_TH
) -> float:
    """F = 2PR / (P + R) of boundary precision P and recall R (0 when both are 0)."""
    precision, recall = boundary_precision_recall(pred, gt, void, bound_th)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _binary_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as bool arrays of equal 2-D shape."""
    pred = np.asarray(pred).astype(bool)
    gt = np.asarray(gt).astype(bool)
    if pred.shape != gt.shape or gt.ndim != 2:
        raise EvaluationError(f"mask shapes differ or are not 2-D: prediction {pred.shape}, ground truth {gt.shape}")
    return pred, gt


def object_ids_of(labels: np.ndarray) -> set[int]:
    """Object ids present in a label map (0 = background and 255 = void excluded)."""
    values = np.unique(labels)
    return {int(v) for v in values if v != 0 and v != VOID_LABEL}


def score_frame(
    pred: np.ndarray, gt: np.ndarray, object_ids: Sequence[int], bound_th: float = DAVIS_BOUND_TH
) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every object id in one frame of label maps (GT label 255 is void)."""
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise EvaluationError(f"prediction size {pred.shape[::-1]} differs from ground truth {gt.shape[::-1]}")
    void = gt == VOID_LABEL
    has_void = bool(void.any())
    j = np.empty(len(object_ids))
    f = np.empty(len(object_ids))
    for slot, object_id in enumerate(object_ids):
        pred_obj, gt_obj = pred == object_id, gt == object_id
        j[slot] = region_similarity(pred_obj, gt_obj, void if has_void else None)
        f[slot] = boundary_f_measure(pred_obj, gt_obj, void if has_void else None, bound_th)
    return j, f


# --------------------------------------------------------------------------------------------
# Temporal statistics and aggregation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statistics:
    """Mean, recall (fraction > 0.5) and decay of one measure over the frames of one object."""

    mean: float
    recall: float
    decay: float

    def as_dict(self) -> dict[str, float]:
        """{"mean", "recall", "decay"}."""
        return {"mean": self.mean, "recall": self.recall, "decay": self.decay}


def decay_bins(num_frames: int, num_bins: int = 4) -> list[tuple[int, int]]:
    """DAVIS' temporal bins as [start, stop) index ranges: edges round(linspace(1, n, 5)) - 1, stop = next edge + 1."""
    edges = (np.round(np.linspace(1, num_frames, num_bins + 1) + 1e-10) - 1).astype(np.int64)
    return [(int(edges[i]), int(edges[i + 1]) + 1) for i in range(num_bins)]


def temporal_statistics(values: Sequence[float]) -> Statistics:
    """Mean, recall and decay (first temporal bin mean minus last) of per-frame values in temporal order."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise EvaluationError("no frames to compute statistics over")
    bins = decay_bins(values.size)
    first = values[bins[0][0] : bins[0][1]]
    last = values[bins[-1][0] : bins[-1][1]]
    return Statistics(
        mean=float(values.mean()),
        recall=float((values > 0.5).mean()),
        decay=float(first.mean() - last.mean()),
    )


@dataclass
class ObjectScores:
    """Per-frame J and F of one object of one sequence, with the (original) frame indices scored."""

    sequence: str
    object_id: int
    frames: list[int]
    j: np.ndarray
    f: np.ndarray

    @property
    def j_stats(self) -> Statistics:
        """Temporal statistics of J."""
        return temporal_statistics(self.j)

    @property
    def f_stats(self) -> Statistics:
        """Temporal statistics of F."""
        return temporal_statistics(self.f)


def scored_frames(num_frames: int, frames: Iterable[int] | None = None, skip_first_last: bool = True) -> list[int]:
    """Frame indices to score: `frames` (or all) in order, minus the first and last frame if asked."""
    if frames is None:
        chosen = list(range(num_frames))
    else:
        chosen = sorted({int(i) for i in frames})
        bad = [i for i in chosen if not 0 <= i < num_frames]
        if bad:
            raise EvaluationError(f"frame indices {bad[:5]} out of range 0..{num_frames - 1}")
    if skip_first_last:
        chosen = [i for i in chosen if 0 < i < num_frames - 1]
    return chosen


def evaluate_sequence(
    name: str,
    pred_masks: Sequence[np.ndarray],
    gt_masks: Sequence[np.ndarray],
    frames: Iterable[int] | None = None,
    skip_first_last: bool = True,
    bound_th: float = DAVIS_BOUND_TH,
    object_ids: Sequence[int] | None = None,
    on_frame=None,
) -> list[ObjectScores]:
    """J and F per object over the scored frames of one sequence of label maps.

    `pred_masks` / `gt_masks` may be lazy sequences (indexed one frame at a time). `frames`
    restricts scoring to those indices; `skip_first_last` applies the semi-supervised protocol.
    Object ids default to every id seen in the ground truth. `on_frame()` is called per scored frame.
    """
    if len(pred_masks) != len(gt_masks):
        raise EvaluationError(f"{name}: {len(pred_masks)} predicted frames but {len(gt_masks)} ground-truth frames")
    chosen = scored_frames(len(gt_masks), frames, skip_first_last)
    if not chosen:
        raise EvaluationError(f"{name}: no frames left to score ({len(gt_masks)} frames)")
    if object_ids is None:
        found: set[int] = set()
        for index in range(len(gt_masks)):
            found |= object_ids_of(gt_masks[index])
        object_ids = sorted(found)
    if not object_ids:
        raise EvaluationError(f"{name}: ground truth has no object (all frames background)")
    j = np.empty((len(object_ids), len(chosen)))
    f = np.empty((len(object_ids), len(chosen)))
    for slot, index in enumerate(chosen):
        j[:, slot], f[:, slot] = score_frame(pred_masks[index], gt_masks[index], object_ids, bound_th)
        if on_frame is not None:
            on_frame()
    return [
        ObjectScores(sequence=name, object_id=int(obj), frames=list(chosen), j=j[k], f=f[k])
        for k, obj in enumerate(object_ids)
    ]


@dataclass
class VOSReport:
    """Scores of all objects of all evaluated sequences; `summary()` is the JSON contract."""

    objects: list[ObjectScores] = field(default_factory=list)

    def sequences(self) -> list[str]:
        """Sequence names in evaluation order."""
        return list(dict.fromkeys(o.sequence for o in self.objects))

    def sequence_scores(self, name: str) -> dict[str, float]:
        """{"J&F", "J", "F"} of one sequence: means over its objects."""
        objs = [o for o in self.objects if o.sequence == name]
        j = float(np.mean([o.j_stats.mean for o in objs]))
        f = float(np.mean([o.f_stats.mean for o in objs]))
        return {"J&F": (j + f) / 2, "J": j, "F": f}

    def measure(self, which: str) -> Statistics:
        """J or F statistics pooled over all objects (mean of per-object mean/recall/decay)."""
        stats = [o.j_stats if which == "J" else o.f_stats for o in self.objects]
        return Statistics(
            mean=float(np.mean([s.mean for s in stats])),
            recall=float(np.mean([s.recall for s in stats])),
            decay=float(np.mean([s.decay for s in stats])),
        )

    def summary(self) -> dict:
        """{"J&F", "J": {mean, recall, decay}, "F": {...}, "sequences": {seq: {"J&F", "J", "F"}}, "objects": [...]}."""
        if not self.objects:
            raise EvaluationError("nothing was evaluated")
        j, f = self.measure("J"), self.measure("F")
        return {
            "J&F": (j.mean + f.mean) / 2,
            "J": j.as_dict(),
            "F": f.as_dict(),
            "sequences": {name: self.sequence_scores(name) for name in self.sequences()},
            "objects": [
                {
                    "sequence": o.sequence,
                    "object": o.object_id,
                    "frames_scored": len(o.frames),
                    "J": o.j_stats.as_dict(),
                    "F": o.f_stats.as_dict(),
                }
                for o in self.objects
            ],
        }


# --------------------------------------------------------------------------------------------
# Video semantic segmentation (VSS)
# --------------------------------------------------------------------------------------------


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int = VOID_LABEL) -> np.ndarray:
    """Confusion counts (num_classes × num_classes, rows = ground truth, columns = prediction) of one frame."""
    pred = np.asarray(pred).astype(np.int64)
    gt = np.asarray(gt).astype(np.int64)
    if pred.shape != gt.shape:
        raise EvaluationError(f"prediction size {pred.shape[::-1]} differs from ground truth {gt.shape[::-1]}")
    valid = gt != ignore_index
    if (gt[valid] >= num_classes).any() or (gt < 0).any():
        raise EvaluationError(f"ground-truth class id {int(gt[valid].max())} outside 0..{num_classes - 1}")
    pred_valid = pred[valid]
    if pred_valid.size and (pred_valid.max() >= num_classes or pred_valid.min() < 0):
        raise EvaluationError(f"predicted class id {int(pred_valid.max())} outside 0..{num_classes - 1}")
    counts = np.bincount(gt[valid] * num_classes + pred_valid, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """IoU per class from a confusion matrix; NaN for classes absent from both prediction and ground truth."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over classes present in prediction or ground truth."""
    ious = class_iou(confusion)
    if np.all(np.isnan(ious)):
        raise EvaluationError("no class present: mIoU undefined")
    return float(np.nanmean(ious))


def frame_pair_iou(first: np.ndarray, second: np.ndarray, ignore_index: int = VOID_LABEL) -> float:
    """Mean over classes present in either label map of the IoU between the two maps' class masks (1 if none)."""
    first = np.asarray(first)
    second = np.asarray(second)
    if first.shape != second.shape:
        raise EvaluationError(f"consecutive masks differ in size: {first.shape[::-1]} vs {second.shape[::-1]}")
    ious = object_ious(first, second, exclude=(ignore_index,))
    return float(np.mean(list(ious.values()))) if ious else 1.0


def temporal_stability(pred_masks: Sequence[np.ndarray], ignore_index: int = VOID_LABEL) -> float:
    """Mean IoU of consecutive predicted label maps (1 = perfectly stable); needs ≥ 2 frames."""
    if len(pred_masks) < 2:
        raise EvaluationError("temporal stability needs at least 2 frames")
    previous = pred_masks[0]
    values = []
    for index in range(1, len(pred_masks)):
        current = pred_masks[index]
        values.append(frame_pair_iou(previous, current, ignore_index))
        previous = current
    return float(np.mean(values))


def flicker_counts(pred_masks: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray], frames: Iterable[int],
                   ignore_index: int = VOID_LABEL) -> tuple[int, int]:
    """(pixels whose predicted class changes, pixels whose true class does not) over consecutive pairs of `frames`."""
    chosen = set(frames)
    changed = steady = 0
    for index in sorted(chosen):
        if index + 1 not in chosen:
            continue
        gt_a, gt_b = np.asarray(gt_masks[index]), np.asarray(gt_masks[index + 1])
        keep = (gt_a == gt_b) & (gt_a != ignore_index)
        changed += int((np.asarray(pred_masks[index]) != np.asarray(pred_masks[index + 1]))[keep].sum())
        steady += int(keep.sum())
    return changed, steady


def temporal_flicker(pred_masks: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray],
                     frames: Iterable[int] | None = None, ignore_index: int = VOID_LABEL) -> float | None:
    """Fraction of pixels whose predicted class changes between consecutive frames where the ground truth does
    not (0 = steady; lower is better); None without a consecutive pair of scored frames."""
    changed, steady = flicker_counts(pred_masks, gt_masks, range(len(gt_masks)) if frames is None else frames,
                                     ignore_index)
    return changed / steady if steady else None


def evaluate_vss(
    predictions: dict[str, Sequence[np.ndarray]],
    ground_truth: dict[str, Sequence[np.ndarray]],
    num_classes: int,
    frames: dict[str, Iterable[int]] | None = None,
    ignore_index: int = VOID_LABEL,
    bound_th: float = DAVIS_BOUND_TH,
) -> dict:
    """mIoU, per-class IoU, per-class J&F (each class of each sequence scored like a VOS object over its
    frames) and temporal stability of predicted class maps; `frames` optionally restricts scoring per sequence."""
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    class_objects: dict[int, list[ObjectScores]] = {}
    stability: dict[str, float] = {}
    flicker: dict[str, tuple[int, int]] = {}
    for name, gt_masks in ground_truth.items():
        if name not in predictions:
            raise EvaluationError(f"{name}: no predictions for this sequence")
        pred_masks = predictions[name]
        if len(pred_masks) != len(gt_masks):
            raise EvaluationError(f"{name}: {len(pred_masks)} predicted frames but {len(gt_masks)} ground-truth frames")
        chosen = scored_frames(len(gt_masks), None if frames is None else frames.get(name), skip_first_last=False)
        present: set[int] = set()
        for index in chosen:
            gt = gt_masks[index]
            try:
                confusion += confusion_matrix(pred_masks[index], gt, num_classes, ignore_index)
            except EvaluationError as exc:
                raise EvaluationError(f"{name} frame {index}: {exc}") from None
            present |= {int(v) for v in np.unique(gt) if v != ignore_index}
        for scores in evaluate_sequence(
            name, pred_masks, gt_masks, frames=chosen, skip_first_last=False, bound_th=bound_th,
            object_ids=sorted(present) or [0],
        ):
            class_objects.setdefault(scores.object_id, []).append(scores)
        if len(pred_masks) >= 2:
            stability[name] = temporal_stability(pred_masks, ignore_index)
        flicker[name] = flicker_counts(pred_masks, gt_masks, chosen, ignore_index)
    ious = class_iou(confusion)
    per_class = {}
    for cls in range(num_classes):
        objs = class_objects.get(cls, [])
        entry: dict[str, float | None] = {"IoU": None if np.isnan(ious[cls]) else float(ious[cls])}
        if objs:
            j = float(np.mean([o.j_stats.mean for o in objs]))
            f = float(np.mean([o.f_stats.mean for o in objs]))
            entry.update({"J": j, "F": f, "J&F": (j + f) / 2})
        per_class[str(cls)] = entry
    changed, steady = (sum(counts) for counts in zip(*flicker.values())) if flicker else (0, 0)
    return {
        "mIoU": mean_iou(confusion),
        "classes": per_class,
        "temporal_stability": float(np.mean(list(stability.values()))) if stability else None,
        "temporal_flicker": changed / steady if steady else None,
        "sequences": {name: {"temporal_stability": value} for name, value in stability.items()},
    }


# --------------------------------------------------------------------------------------------
# Folders of PNG masks: `<root>/<sequence>/%05d.png`
# --------------------------------------------------------------------------------------------


class MaskFolder(Sequence):
    """Lazy, indexable label maps of one `<root>/<sequence>/` folder of PNGs (read on access)."""

    def __init__(self, paths: Sequence, expected_size: tuple[int, int] | None = None,
                 class_maps: bool = False) -> None:
        self.paths = list(paths)
        self.expected_size = expected_size
        self.class_maps = class_maps  # VSS class maps: grey values are class ids (255 void), never one binary object

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        from segloop.platform.core.masks import MaskError, read_mask

        path = self.paths[index]
        try:
            labels = read_mask(path, class_map=self.class_maps)
        except MaskError as exc:
            raise EvaluationError(str(exc)) from None
        if self.expected_size is not None and labels.shape != self.expected_size:
            raise EvaluationError(
                f"{path}: size {labels.shape[1]}x{labels.shape[0]} differs from the ground truth's "
                f"{self.expected_size[1]}x{self.expected_size[0]}"
            )
        return labels


def resolve_gt_root(root) -> Path:
    """A folder of `<seq>/` mask folders: `root` itself, or `root/Annotations/480p` for a DAVIS root."""
    root = davis.masks_root(root)
    if not root.is_dir():
        raise EvaluationError(f"{root}: ground-truth root is not a folder")
    return root


def sequence_mask_pairs(pred_root, gt_root, name: str, class_maps: bool = False) -> tuple[MaskFolder, MaskFolder]:
    """Matching prediction and ground-truth mask folders of one sequence (object masks, or with `class_maps` VSS class
    maps); errors name the missing file."""
    pred_dir, gt_dir = Path(pred_root) / name, Path(gt_root) / name
    if not gt_dir.is_dir():
        raise EvaluationError(f"{gt_dir}: ground-truth sequence folder does not exist")
    if not pred_dir.is_dir():
        raise EvaluationError(f"{pred_dir}: predicted sequence folder does not exist")
    gt_paths = sorted(gt_dir.glob("*.png"))
    pred_paths = sorted(pred_dir.glob("*.png"))
    if not gt_paths:
        raise EvaluationError(f"{gt_dir}: no ground-truth PNG masks")
    pred_names = {p.name for p in pred_paths}
    missing = [p.name for p in gt_paths if p.name not in pred_names]
    if missing or len(pred_paths) != len(gt_paths):
        extra = sorted(pred_names - {p.name for p in gt_paths})
        detail = f"missing {pred_dir / missing[0]}" if missing else f"unexpected {pred_dir / extra[0]}"
        raise EvaluationError(
            f"{name}: {len(pred_paths)} predicted frames but {len(gt_paths)} ground-truth frames ({detail})"
        )
    gt_size = MaskFolder(gt_paths, class_maps=class_maps)[0].shape
    return (MaskFolder([pred_dir / p.name for p in gt_paths], gt_size, class_maps),
            MaskFolder(gt_paths, gt_size, class_maps))


def evaluate_vos_folders(
    pred_root,
    gt_root,
    sequences: Sequence[str] | None = None,
    frames: dict[str, Iterable[int]] | None = None,
    skip_first_last: bool = True,
    bound_th: float = DAVIS_BOUND_TH,
    on_frame=None,
) -> VOSReport:
    """Score `<pred_root>/<seq>/*.png` against `<gt_root>/<seq>/*.png` (GT root may be a DAVIS root)."""
    gt_root = resolve_gt_root(gt_root)
    names = list(sequences) if sequences else list_sequences(gt_root)
    if not names:
        raise EvaluationError(f"{gt_root}: no sequence folders with PNG masks")
    report = VOSReport()
    for name in names:
        pred_masks, gt_masks = sequence_mask_pairs(pred_root, gt_root, name)
        report.objects.extend(
            evaluate_sequence(
                name, pred_masks, gt_masks,
                frames=None if frames is None else frames.get(name),
                skip_first_last=skip_first_last, bound_th=bound_th, on_frame=on_frame,
            )
        )
    return report
