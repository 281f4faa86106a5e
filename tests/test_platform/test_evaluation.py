"""DAVIS J&F and VSS metrics against hand-derived values and brute-force reference definitions."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segloop.platform.cli.commands.eval import command as eval_command
from segloop.platform.core.davis import DavisLayout
from segloop.platform.core.masks import write_mask
from segloop.platform.evaluation import metrics as ev

SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "davis-sample"


# ---------------------------------------------------------------------------- references


def reference_boundary(mask: np.ndarray) -> np.ndarray:
    """seg2bmap written pixel by pixel: differs from right, bottom or bottom-right (inside the image)."""
    h, w = mask.shape
    out = np.zeros((h, w), dtype=bool)
    for r in range(h):
        for c in range(w):
            v = bool(mask[r, c])
            if r == h - 1 and c == w - 1:
                continue
            if r == h - 1:
                out[r, c] = v != bool(mask[r, c + 1])
            elif c == w - 1:
                out[r, c] = v != bool(mask[r + 1, c])
            else:
                out[r, c] = v != bool(mask[r, c + 1]) or v != bool(mask[r + 1, c]) or v != bool(mask[r + 1, c + 1])
    return out


def reference_f(pred: np.ndarray, gt: np.ndarray) -> float:
    """Boundary F by brute force: a boundary pixel matches if one of the other is within Euclidean distance r."""
    radius = ev.boundary_tolerance(gt.shape)
    bp, bg = reference_boundary(pred), reference_boundary(gt)
    pp, gp = np.argwhere(bp), np.argwhere(bg)
    if len(pp) == 0 and len(gp) == 0:
        return 1.0
    if len(pp) == 0 or len(gp) == 0:
        return 0.0
    dist = np.sqrt(((pp[:, None, :] - gp[None, :, :]) ** 2).sum(-1))
    precision = (dist.min(1) <= radius).mean()
    recall = (dist.min(0) <= radius).mean()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


small_masks = arrays(np.bool_, st.tuples(st.integers(2, 12), st.integers(2, 12)))


# ---------------------------------------------------------------------------- boundary maps


def test_tolerance_is_ceil_of_0008_diagonal():
    assert ev.boundary_tolerance((64, 64)) == 1  # 0.724 -> 1
    assert ev.boundary_tolerance((100, 100)) == 2  # 1.13 -> 2
    assert ev.boundary_tolerance((480, 854)) == 8  # 7.84 -> 8 (DAVIS 480p)
    assert ev.boundary_tolerance((480, 854), bound_th=3) == 3


def test_disk_kernel_shapes():
    assert ev.disk_kernel(1).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert ev.disk_kernel(2).sum() == 13
    assert ev.disk_kernel(0).tolist() == [[1]]


def test_boundary_of_one_interior_pixel_is_the_2x2_block_up_left():
    mask = np.zeros((6, 6), bool)
    mask[3, 3] = True
    assert sorted(map(tuple, np.argwhere(ev.boundary_map(mask)))) == [(2, 2), (2, 3), (3, 2), (3, 3)]


def test_boundary_at_the_image_border():
    top_left = np.zeros((5, 5), bool)
    top_left[0, 0] = True
    assert sorted(map(tuple, np.argwhere(ev.boundary_map(top_left)))) == [(0, 0)]
    bottom_right = np.zeros((5, 5), bool)
    bottom_right[4, 4] = True
    assert sorted(map(tuple, np.argwhere(ev.boundary_map(bottom_right)))) == [(3, 3), (3, 4), (4, 3)]
    assert not ev.boundary_map(np.ones((5, 7), bool)).any()  # the image border is never a boundary
    left_half = np.zeros((8, 8), bool)
    left_half[:, :4] = True
    assert np.array_equal(np.argwhere(ev.boundary_map(left_half))[:, 1], np.full(8, 3))


@settings(max_examples=60, deadline=None)
@given(small_masks)
def test_boundary_map_matches_pixelwise_definition(mask):
    assert np.array_equal(ev.boundary_map(mask), reference_boundary(mask))


# ---------------------------------------------------------------------------- J and F


def test_region_similarity_values():
    empty = np.zeros((4, 4), bool)
    assert ev.region_similarity(empty, empty) == 1.0
    a, b = empty.copy(), empty.copy()
    a[0, :2] = True
    b[0, :] = True
    assert ev.region_similarity(a, b) == 0.5
    assert ev.region_similarity(a, ~a) == 0.0
    void = empty.copy()
    void[0, 2:] = True
    assert ev.region_similarity(a, b, void) == 1.0


def test_f_empty_boundary_conventions():
    empty = np.zeros((20, 20), bool)
    obj = empty.copy()
    obj[5:10, 5:10] = True
    assert ev.boundary_precision_recall(empty, empty) == (1.0, 1.0)
    assert ev.boundary_precision_recall(empty, obj) == (1.0, 0.0)
    assert ev.boundary_precision_recall(obj, empty) == (0.0, 1.0)
    assert ev.boundary_f_measure(empty, obj) == 0.0
    assert ev.boundary_f_measure(obj, empty) == 0.0
    assert ev.boundary_f_measure(obj, obj) == 1.0
    full = np.ones((20, 20), bool)
    # DAVIS quirk: a full-frame object has no boundary, so an empty prediction scores F = 1 (but J = 0).
    assert ev.boundary_f_measure(empty, full) == 1.0
    assert ev.region_similarity(empty, full) == 0.0


def test_one_pixel_objects():
    gt = np.zeros((64, 64), bool)
    gt[10, 10] = True
    near, far = np.zeros_like(gt), np.zeros_like(gt)
    near[10, 11] = True
    far[10, 13] = True
    assert (ev.region_similarity(gt, gt), ev.boundary_f_measure(gt, gt)) == (1.0, 1.0)
    # boundaries {(9..10) x (9..10)} and {(9..10) x (10..11)}: every pixel within 1 px (tolerance 1 at 64x64)
    assert (ev.region_similarity(near, gt), ev.boundary_f_measure(near, gt)) == (0.0, 1.0)
    assert ev.boundary_f_measure(far, gt) == 0.0


def test_masks_touching_the_border():
    pred = np.zeros((64, 64), bool)
    pred[:, :32] = True
    gt_one, gt_two = np.zeros_like(pred), np.zeros_like(pred)
    gt_one[:, :33] = True
    gt_two[:, :34] = True
    assert ev.region_similarity(pred, gt_one) == pytest.approx(32 / 33)
    assert ev.boundary_f_measure(pred, gt_one) == 1.0  # boundary columns 31 vs 32
    assert ev.boundary_f_measure(pred, gt_two) == 0.0  # columns 31 vs 33: 2 px > tolerance 1


def test_partial_precision():
    gt = np.zeros((64, 64), bool)
    gt[:, :32] = True
    pred = gt.copy()
    pred[10, 50] = True  # adds a 4-pixel boundary far from any GT boundary
    precision, recall = ev.boundary_precision_recall(pred, gt)
    assert (precision, recall) == (pytest.approx(64 / 68), 1.0)
    assert ev.boundary_f_measure(pred, gt) == pytest.approx(32 / 33)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_f_matches_brute_force(data):
    gt = data.draw(small_masks)
    pred = data.draw(arrays(np.bool_, gt.shape))
    assert ev.boundary_f_measure(pred, gt) == pytest.approx(reference_f(pred, gt))


def test_score_frame_multi_object_with_void():
    gt = np.zeros((10, 10), np.uint8)
    gt[:5, :5] = 1
    gt[6:, 6:] = 2
    gt[0, 9] = ev.VOID_LABEL
    pred = gt.copy()
    pred[6:, 6:] = 0
    pred[0, 9] = 1  # inside void: does not count against object 1
    j, f = ev.score_frame(pred, gt, [1, 2])
    assert j.tolist() == [1.0, 0.0]
    assert f.tolist() == [1.0, 0.0]


# ---------------------------------------------------------------------------- temporal statistics


def test_davis_decay_bins_and_statistics():
    assert ev.decay_bins(8) == [(0, 3), (2, 5), (4, 6), (5, 8)]
    stats = ev.temporal_statistics([1, 1, 1, 1, 0, 0, 0, 0])
    assert (stats.mean, stats.recall, stats.decay) == (0.5, 0.5, 1.0)
    ramp = ev.temporal_statistics([0, 0.25, 0.5, 0.75, 1])
    assert ramp.decay == pytest.approx(0.125 - 0.875)
    assert ramp.recall == pytest.approx(2 / 5)  # 0.5 itself is not > 0.5
    with pytest.raises(ev.EvaluationError):
        ev.temporal_statistics([])


def _palette_sequence(num_frames: int = 4, size: int = 16) -> list[np.ndarray]:
    frames = []
    for t in range(num_frames):
        labels = np.zeros((size, size), np.uint8)
        labels[2:6, 2 + t : 6 + t] = 1
        labels[10:14, 10:14] = 2
        if t == 2:
            labels[0, 0] = 3  # object 3 appears in one frame only
        frames.append(labels)
    return frames


def test_evaluate_sequence_protocol_and_frame_filter():
    gt = _palette_sequence()
    pred = [m.copy() for m in gt]
    for m in pred:
        m[m == 2] = 0  # object 2 never predicted
    objects = ev.evaluate_sequence("toy", pred, gt)
    assert [o.object_id for o in objects] == [1, 2, 3]
    assert objects[0].frames == [1, 2]  # first and last frame not scored
    assert objects[1].j.tolist() == [0.0, 0.0]
    assert objects[2].j.tolist() == [1.0, 1.0]
    only = ev.evaluate_sequence("toy", pred, gt, frames=[0, 1, 3])
    assert only[0].frames == [1]
    everything = ev.evaluate_sequence("toy", pred, gt, frames=[0, 3], skip_first_last=False)
    assert everything[0].frames == [0, 3]
    report = ev.VOSReport(objects)
    summary = report.summary()
    assert summary["J"]["mean"] == pytest.approx((1 + 0 + 1) / 3)
    assert summary["J&F"] == pytest.approx((summary["J"]["mean"] + summary["F"]["mean"]) / 2)
    assert summary["sequences"]["toy"]["J"] == pytest.approx(2 / 3)
    with pytest.raises(ev.EvaluationError, match="no frames left"):
        ev.evaluate_sequence("toy", pred[:2], gt[:2])
    with pytest.raises(ev.EvaluationError, match="3 predicted frames but 4"):
        ev.evaluate_sequence("toy", pred[:3], gt)


def test_pooled_mean_weights_objects_not_sequences():
    gt_a = [np.pad(np.ones((2, 2), np.uint8), 3)] * 3
    pred_a = [m.copy() for m in gt_a]
    gt_b = [m.copy() for m in gt_a]
    for m in gt_b:
        m[0, 0], m[7, 7] = 2, 3
    pred_b = [np.zeros_like(m) for m in gt_b]
    report = ev.VOSReport(ev.evaluate_sequence("a", pred_a, gt_a) + ev.evaluate_sequence("b", pred_b, gt_b))
    assert report.summary()["J"]["mean"] == pytest.approx(1 / 4)  # 4 objects: a/1 = 1, b/1..3 = 0


# ---------------------------------------------------------------------------- VSS


def test_confusion_iou_and_miou():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 2]])
    cm = ev.confusion_matrix(pred, gt, 3)
    assert cm.tolist() == [[3, 1, 0], [0, 3, 0], [0, 0, 0]]
    iou = ev.class_iou(cm)
    assert iou[0] == pytest.approx(3 / 4) and iou[1] == pytest.approx(3 / 4) and math.isnan(iou[2])
    assert ev.mean_iou(cm) == pytest.approx(0.75)
    with pytest.raises(ev.EvaluationError, match="outside"):
        ev.confusion_matrix(np.full((2, 2), 7), np.zeros((2, 2)), 3)


def test_temporal_stability():
    a = np.zeros((4, 4), np.uint8)
    a[:, :2] = 1
    b = np.zeros((4, 4), np.uint8)
    b[:, :1] = 1
    assert ev.temporal_stability([a, a, a]) == 1.0
    # class 1: 4/8, class 0: 8/12
    assert ev.temporal_stability([a, b]) == pytest.approx((4 / 8 + 8 / 12) / 2)


def test_evaluate_vss_per_class_jf():
    gt = [np.array([[0, 0, 1, 1]] * 4, np.uint8)] * 3
    pred = [np.array([[0, 0, 1, 1]] * 4, np.uint8), np.array([[0, 0, 0, 0]] * 4, np.uint8), gt[2].copy()]
    summary = ev.evaluate_vss({"s": pred}, {"s": gt}, num_classes=3)
    assert summary["classes"]["1"]["J"] == pytest.approx(2 / 3)
    assert summary["classes"]["1"]["IoU"] == pytest.approx(16 / 24)
    assert summary["classes"]["2"] == {"IoU": None}
    assert summary["temporal_stability"] == pytest.approx(((8 / 16 + 0) / 2 + (8 / 16 + 0) / 2) / 2)
    subset = ev.evaluate_vss({"s": pred}, {"s": gt}, num_classes=3, frames={"s": [0, 2]})
    assert subset["classes"]["1"]["J"] == 1.0


def test_evaluate_vss_names_the_frame_with_a_class_outside_the_range():
    """A class id at or above num_classes is refused naming the sequence and frame where it occurs."""
    gt = [np.zeros((4, 4), np.uint8), np.full((4, 4), 3, np.uint8)]
    with pytest.raises(ev.EvaluationError, match=r"^s frame 1: ground-truth class id 3 outside 0\.\.1$"):
        ev.evaluate_vss({"s": [m.copy() for m in gt]}, {"s": gt}, num_classes=2)
    with pytest.raises(ev.EvaluationError, match=r"^s frame 1: predicted class id 5 outside 0\.\.3$"):
        ev.evaluate_vss({"s": [gt[0], np.full((4, 4), 5, np.uint8)]}, {"s": gt}, num_classes=4)


# ---------------------------------------------------------------------------- CLI


def _write_sequence(root: Path, name: str, masks: list[np.ndarray], style: str = "palette") -> None:
    for t, labels in enumerate(masks):
        write_mask(root / name / f"{t:05d}.png", labels, style=style)


def test_cli_vos_json_contract_and_davis_root(tmp_path):
    gt_masks = _palette_sequence(6)
    _write_sequence(DavisLayout(tmp_path / "davis").masks_dir, "toy", gt_masks)
    binary = [(m == 1).astype(np.uint8) for m in gt_masks]
    _write_sequence(DavisLayout(tmp_path / "davis").masks_dir, "bin", binary, style="binary")
    _write_sequence(tmp_path / "pred", "toy", gt_masks)
    _write_sequence(tmp_path / "pred", "bin", binary, style="binary")
    out = tmp_path / "scores.json"
    result = CliRunner().invoke(
        eval_command, ["vos", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "davis"), "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["J&F"] == 1.0
    assert set(summary["J"]) == {"mean", "recall", "decay"} and set(summary["F"]) == {"mean", "recall", "decay"}
    assert summary["sequences"] == {"bin": {"J&F": 1.0, "J": 1.0, "F": 1.0}, "toy": {"J&F": 1.0, "J": 1.0, "F": 1.0}}
    assert "toy" in result.output
    one = CliRunner().invoke(eval_command, ["vos", "--pred", str(tmp_path / "pred"), "--gt",
                                            str(DavisLayout(tmp_path / "davis").masks_dir), "--sequences", "bin",
                                            "--json", str(out)])
    assert one.exit_code == 0, one.output
    assert list(json.loads(out.read_text())["sequences"]) == ["bin"]
    both = CliRunner().invoke(eval_command, ["vos", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "davis"),
                                             "--json", str(out), "--sequences", "toy", "bin"])
    assert both.exit_code == 0, both.output
    assert list(json.loads(out.read_text())["sequences"]) == ["toy", "bin"]
    out.unlink()
    none = CliRunner().invoke(eval_command, ["vos", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "davis"),
                                             "--json", str(out), "--sequences", " , "])
    assert none.exit_code == 2 and "--sequences" in none.output and "at least one sequence name" in none.output
    assert not out.exists()  # before: ' , ' meant every sequence


def test_cli_vos_exclude_keyframes(tmp_path):
    gt_masks = _palette_sequence(6)
    pred = [m.copy() for m in gt_masks]
    pred[2][:] = 0  # frame 2 wrong; frame 2 is a keyframe below, so excluding keyframes gives 1.0
    _write_sequence(tmp_path / "gt", "toy", gt_masks)
    _write_sequence(tmp_path / "pred", "toy", pred)
    (tmp_path / "pred" / "toy" / "confidence.json").write_text(json.dumps({"keyframes": [0, 2]}))
    out = tmp_path / "s.json"
    args = ["vos", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--json", str(out)]
    assert CliRunner().invoke(eval_command, args).exit_code == 0
    assert json.loads(out.read_text())["J&F"] < 1.0
    assert CliRunner().invoke(eval_command, args + ["--exclude-keyframes"]).exit_code == 0
    assert json.loads(out.read_text())["J&F"] == 1.0
    # A record whose keyframes are not frame numbers was an OverflowError / TypeError traceback, or [1.5] / [true]
    # read as frames 1.
    for broken in ('{"keyframes": [1e400]}', '{"keyframes": [null]}', '{"keyframes": 5}', '[1, 2]',
                   '{"keyframes": [1.5]}', '{"keyframes": [true]}', '{"keyframes": [-1]}'):
        (tmp_path / "pred" / "toy" / "confidence.json").write_text(broken)
        result = CliRunner().invoke(eval_command, args + ["--exclude-keyframes"])
        assert result.exit_code == 1 and "no 'keyframes' list of frame numbers" in result.output, broken


@pytest.mark.parametrize("problem", ["missing_frame", "size", "missing_sequence", "unreadable"])
def test_cli_vos_errors_name_the_file(tmp_path, problem):
    gt_masks = _palette_sequence(4)
    _write_sequence(tmp_path / "gt", "toy", gt_masks)
    _write_sequence(tmp_path / "pred", "toy", gt_masks)
    expected = ""
    if problem == "missing_frame":
        (tmp_path / "pred" / "toy" / "00002.png").unlink()
        expected = "00002.png"
    elif problem == "size":
        write_mask(tmp_path / "pred" / "toy" / "00001.png", np.zeros((8, 8), np.uint8))
        expected = "00001.png"
    elif problem == "missing_sequence":
        _write_sequence(tmp_path / "gt", "other", gt_masks)
        expected = "other"
    else:
        (tmp_path / "pred" / "toy" / "00001.png").write_bytes(b"not a png")
        expected = "00001.png"
    result = CliRunner().invoke(eval_command, ["vos", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")])
    assert result.exit_code != 0
    assert expected in result.output
    if problem == "missing_sequence":  # refused before any frame is scored: the error alone, no blank bar line
        assert result.output.startswith("Error:"), repr(result.output)


def test_cli_vss(tmp_path):
    gt = [np.array([[0, 0, 1, 1]] * 4, np.uint8)] * 3
    _write_sequence(tmp_path / "gt", "s", gt)
    _write_sequence(tmp_path / "pred", "s", gt)
    out = tmp_path / "vss.json"
    result = CliRunner().invoke(eval_command, ["vss", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                                               "--num-classes", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["mIoU"] == 1.0 and summary["temporal_stability"] == 1.0
    args = ["vss", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes"]
    assert CliRunner().invoke(eval_command, [*args, "255"]).exit_code == 0  # ids 0..254 of 8-bit maps, 255 void
    for classes in ("256", str(10**6)):  # 10**6: a 7 TiB confusion matrix, a traceback
        result = CliRunner().invoke(eval_command, [*args, classes])
        assert result.exit_code == 2 and f"{classes} is not in the range 1<=x<=255" in result.output, result.output


def test_cli_vss_reads_grey_class_maps_as_stored(tmp_path):
    """Grey class maps holding only 0 and 255 (background and void) were read as one binary object: void became
    class 1 and a correct prediction scored mIoU 0.25; 255 is void and the prediction scores 1."""
    from PIL import Image

    for root, right in (("gt", 255), ("pred", 0)):
        for index in range(3):
            labels = np.zeros((8, 12), np.uint8)
            labels[:, 6:] = right
            (tmp_path / root / "s").mkdir(parents=True, exist_ok=True)
            Image.fromarray(labels, mode="L").save(tmp_path / root / "s" / f"{index:05d}.png")
    out = tmp_path / "vss.json"
    result = CliRunner().invoke(eval_command, ["vss", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                                               "--num-classes", "3", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["mIoU"] == 1.0


def test_output_files_are_checked_before_the_work_and_one_frame_has_no_stability(tmp_path):
    """--json under a file, in an unwritable folder or at a folder is refused when the command line is read (it
    failed after the work, naming a temporary file); a one-frame sequence's stability is n/a (it printed nan)."""
    gt = [np.array([[0, 0, 1, 1]] * 4, np.uint8)]
    _write_sequence(tmp_path / "gt", "s", gt)
    _write_sequence(tmp_path / "pred", "s", gt)
    args = ["vss", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", "2"]
    shown = CliRunner().invoke(eval_command, args)
    assert shown.exit_code == 0 and "temporal stability n/a" in shown.output and "nan" not in shown.output
    (tmp_path / "afile").write_text("x")
    for target, reason in ((tmp_path / "afile" / "x.json", "afile is a file, not a folder"),
                           (Path("/proc/x.json"), "cannot write in /proc"),
                           (tmp_path / "gt", "is a directory")):
        result = CliRunner().invoke(eval_command, [*args, "--json", str(target)])
        assert result.exit_code == 2 and reason in result.output and ".tmp-" not in result.output, result.output
    assert not list(tmp_path.glob(".segloop-probe-*"))


def test_real_sample_ground_truth_scores_perfect_against_itself(tmp_path):
    if not (DavisLayout(SAMPLE).masks_dir / "blackswan").is_dir():
        pytest.skip(f"shared DAVIS sample not found at {SAMPLE}")
    report = ev.evaluate_vos_folders(DavisLayout(SAMPLE).masks_dir, SAMPLE, ["blackswan"],
                                     frames={"blackswan": range(0, 50, 10)})
    summary = report.summary()
    assert summary["J&F"] == 1.0
    assert summary["objects"][0]["frames_scored"] == 4  # 0, 10, 20, 30, 40 minus the first frame
