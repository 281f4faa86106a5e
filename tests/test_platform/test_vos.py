"""Label propagation: protocol pieces, baselines on synthetic videos, keyframe merging and the CLI."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from segloop.platform.cli.commands.eval import command as eval_command
from segloop.platform.cli.commands.vos import command as vos_command
from segloop.platform.core.davis import DavisLayout
from segloop.platform.core.masks import read_mask, write_mask
from segloop.platform.evaluation.metrics import region_similarity
from segloop.platform.vos import propagation as vos

SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "davis-sample"
SMALL = vos.PropagationConfig(short_side=64, size_multiple=16, radius=3, batch_size=4)


def moving_square(num_frames: int = 8, size: int = 64, start=(16, 12), step=(2, 3), side: int = 20, seed: int = 0):
    """Frames (T, H, W, 3) of a red square moving over green noise, and its masks (T, H, W)."""
    rng = np.random.default_rng(seed)
    background = np.clip(rng.normal((40, 130, 50), 6, (size, size, 3)), 0, 255).astype(np.uint8)
    frames = np.repeat(background[None], num_frames, axis=0)
    masks = np.zeros((num_frames, size, size), np.uint8)
    for t in range(num_frames):
        r, c = start[0] + step[0] * t, start[1] + step[1] * t
        frames[t, r : r + side, c : c + side] = (220, 40, 40)
        masks[t, r : r + side, c : c + side] = 1
    return frames, masks


def mean_j(pred: np.ndarray, gt: np.ndarray, frames) -> float:
    return float(np.mean([region_similarity(pred[t], gt[t]) for t in frames]))


# ---------------------------------------------------------------------------- protocol pieces


def test_patch_grid_follows_dino():
    """Short side 480, long side floored to 64, both to the patch; a frame below one patch is refused."""
    assert vos.PixelFeaturizer(vos.PropagationConfig()).grid(480, 854) == (30, 52)
    assert vos.PixelFeaturizer(vos.PropagationConfig()).grid(854, 480) == (52, 30)
    assert vos.PixelFeaturizer(vos.PropagationConfig(), patch=14).grid(480, 854) == (476 // 14, 826 // 14)
    with pytest.raises(vos.PropagationError, match="smaller than one 16px patch"):
        vos.PixelFeaturizer(vos.PropagationConfig(short_side=16, size_multiple=32)).grid(10, 10)


def test_parse_keyframes():
    assert vos.parse_keyframes("first", 50) == [0]
    assert vos.parse_keyframes("uniform:3", 50) == [0, 16, 33]
    assert vos.parse_keyframes("uniform:9", 4) == [0, 1, 2, 3]
    assert vos.parse_keyframes("7, 2", 10) == [2, 7]
    for bad in ("uniform:x", "uniform:0", "12", "a,b", ""):
        with pytest.raises(vos.PropagationError):
            vos.parse_keyframes(bad, 10)


def test_window_mask_is_a_chebyshev_neighbourhood():
    window = vos.window_mask(3, 4, 1)
    assert window.shape == (12, 12)
    assert int(window[0].sum()) == 4  # corner: 2 x 2
    assert int(window[5].sum()) == 9  # interior (1, 1): 3 x 3
    assert vos.window_mask(3, 4, 0) is None


def test_propagate_labels_topk_softmax():
    config = vos.PropagationConfig(topk=2, temperature=0.5)
    keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])  # one context frame, 3 patches
    labels = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    out = vos.propagate_labels(query, keys, labels, config)
    # query 0: sims (1, 0, -1) -> top-2 (1, 0): weights softmax(2, 0)
    w = torch.softmax(torch.tensor([2.0, 0.0]), 0)
    assert torch.allclose(out[0], torch.tensor([w[0], w[1]]))
    # query 2: sims (0.6, 0.8, -0.6) -> patches 1 and 0 with softmax(1.6, 1.2)
    w2 = torch.softmax(torch.tensor([1.6, 1.2]), 0)
    assert torch.allclose(out[2], torch.tensor([w2[1], w2[0]]))
    # a window that only allows each query's own position makes top-k return that patch's label
    own = torch.eye(3, dtype=torch.bool)
    assert torch.allclose(vos.propagate_labels(query, keys, labels, config, own), labels[0])
    chunked = vos.propagate_labels(query, keys, labels, vos.PropagationConfig(topk=2, temperature=0.5, query_chunk=1))
    assert torch.allclose(chunked, out)


def test_keyframe_soft_labels_nearest_and_area():
    mask = np.zeros((4, 4), np.uint8)
    mask[:2, :2] = 3
    mask[0, 3] = 1
    nearest = vos.keyframe_soft_labels(mask, [0, 1, 3], (2, 2), "nearest")
    assert nearest.argmax(1).tolist() == [2, 0, 0, 0]  # centre samples (1,1), (1,3), (3,1), (3,3)
    area = vos.keyframe_soft_labels(mask, [0, 1, 3], (2, 2), "area")
    assert np.allclose(area[1], [0.75, 0.25, 0.0]) and np.allclose(area[0], [0, 0, 1])


def test_config_rejects_bad_values():
    with pytest.raises(vos.PropagationError, match="topk"):
        vos.PropagationConfig(topk=0)
    with pytest.raises(vos.PropagationError, match="label_downsample"):
        vos.PropagationConfig(label_downsample="bicubic")


@pytest.mark.parametrize("temperature", [1e-300, 1e300])
def test_a_temperature_that_overflows_the_logits_is_refused(temperature: float):
    """--temperature 1e-300 made every logit infinite and every mask empty, silently (J&F 0.000); the accepted
    range keeps the vote finite down to its lowest temperature."""
    with pytest.raises(vos.PropagationError, match="temperature"):
        vos.PropagationConfig(temperature=temperature)
    coldest = dataclasses.replace(SMALL, temperature=vos.TEMPERATURE_RANGE[0])
    frames, masks = moving_square(num_frames=8)
    result = vos.propagate(frames, {0: masks[0]}, vos.PixelFeaturizer(coldest, patch=4), coldest)
    assert mean_j(result.masks, masks, range(1, 8)) > 0.7


# ---------------------------------------------------------------------------- baselines


def test_copy_baseline_exact_on_static_scene_and_nearest_keyframe():
    frames, masks = moving_square(step=(0, 0))
    result = vos.propagate(frames, {0: masks[0]}, vos.COPY)
    assert np.array_equal(result.masks, masks)
    assert all(c["mean_max_prob"] == 1.0 and c["disagreement"] == 0.0 for c in result.confidences)
    moving_frames, moving = moving_square(num_frames=7)
    two = vos.propagate(moving_frames, {1: moving[1], 5: moving[5]}, vos.COPY)
    # tie at 3 -> earlier
    assert [int(np.argwhere(two.masks[t])[0, 1]) for t in range(7)] == [15, 15, 15, 15, 27, 27, 27]
    # squares at keyframes 1 and 5 overlap on 12 x 8 pixels: IoU 96 / 704
    assert two.confidences[3]["disagreement"] == pytest.approx(1 - 96 / 704)
    assert two.confidences[0]["passes"] == 1
    assert two.confidences[1]["keyframe"] and not two.confidences[2]["keyframe"]


def test_pixel_baseline_exact_when_motion_is_patch_aligned():
    frames, masks = moving_square(num_frames=6, start=(8, 8), step=(4, 4), side=16)
    featurizer = vos.PixelFeaturizer(SMALL, patch=4)
    result = vos.propagate(frames, {0: masks[0]}, featurizer, SMALL)
    # soft labels stay exactly one-hot; bilinear upsampling (align_corners=False) then keeps every pixel
    # except the square's 4 corner pixels, whose object weight is 0.625² < 0.5
    expected = masks.copy()
    for t in range(1, 6):
        r, c = 8 + 4 * t, 8 + 4 * t
        expected[t, [r, r, r + 15, r + 15], [c, c + 15, c, c + 15]] = 0
    assert np.array_equal(result.masks, expected)


def test_pixel_baseline_tracks_a_moving_square_far_better_than_copy():
    frames, masks = moving_square(num_frames=8)
    pixels = vos.propagate(frames, {0: masks[0]}, vos.PixelFeaturizer(SMALL, patch=4), SMALL)
    copy = vos.propagate(frames, {0: masks[0]}, vos.COPY)
    assert mean_j(pixels.masks, masks, range(1, 8)) > 0.7
    assert region_similarity(pixels.masks[7], masks[7]) > 0.65
    assert region_similarity(copy.masks[7], masks[7]) < 0.05
    assert all(0.5 <= c["mean_max_prob"] <= 1.0 for c in pixels.confidences)


def test_vit_featurizer_and_checkpoint_loading(tmp_path):
    frames, masks = moving_square(num_frames=4)
    torch.manual_seed(0)
    featurizer = vos.make_featurizer("backbone", "vit_tiny_patch16_224", config=SMALL, device="cpu")
    features = featurizer(frames[:2])
    assert features.shape == (2, 16, 192)
    assert torch.allclose(features.norm(dim=-1), torch.ones(2, 16), atol=1e-5)
    weights = tmp_path / "teacher_backbone.pth"
    torch.save(featurizer.model.state_dict(), weights)
    loaded = vos.make_featurizer("backbone", "vit_tiny_patch16_224", checkpoint=weights, config=SMALL, device="cpu")
    assert torch.allclose(loaded(frames[:2]), features, atol=1e-5)
    result = vos.propagate(frames, {0: masks[0]}, featurizer, SMALL)
    assert result.masks.shape == masks.shape and result.masks.dtype == np.uint8
    assert np.array_equal(result.masks[0], masks[0])
    with pytest.raises(ValueError, match="missing.pth"):
        vos.make_featurizer("backbone", "vit_tiny_patch16_224", checkpoint=tmp_path / "missing.pth", config=SMALL)


# ---------------------------------------------------------------------------- keyframes anywhere


NINE_COLOURS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
                         (255, 255, 255), (0, 0, 0), (128, 128, 128)], dtype=np.uint8)


def textured_static_video(num_frames: int, size: int = 24) -> np.ndarray:
    """Identical frames where every pixel's colour differs from its 8 neighbours' ((3r + c) mod 9)."""
    rows, cols = np.mgrid[:size, :size]
    image = NINE_COLOURS[(3 * rows + cols) % 9]
    return np.repeat(image[None], num_frames, axis=0)


def test_forward_backward_merge_weights_by_temporal_distance():
    frames = textured_static_video(9)
    left, right = np.zeros((24, 24), np.uint8), np.zeros((24, 24), np.uint8)
    left[2:8, 2:8] = 1
    right[14:22, 12:20] = 1
    # one-pixel patches, top-1 at the same position: each pass copies its source keyframe exactly
    config = vos.PropagationConfig(short_side=24, size_multiple=1, radius=1, topk=1, max_keyframes_in_context=1,
                                   normalize_channels=False)
    result = vos.propagate(frames, {0: left, 8: right}, vos.PixelFeaturizer(config, patch=1), config)
    for t in range(1, 4):
        assert np.array_equal(result.masks[t], left)
    for t in range(5, 8):
        assert np.array_equal(result.masks[t], right)
    assert not result.masks[4].any()  # equal weights: the two objects tie with background
    union = (left | right).mean()
    for t in range(1, 8):
        conf = result.confidences[t]
        assert conf["passes"] == 2 and conf["disagreement"] == 1.0
        assert conf["mean_max_prob"] == pytest.approx(1 - union * (1 - max(8 - t, t) / 8), abs=1e-5)
    # frames before the first keyframe get a backward pass only
    before = vos.propagate(frames, {3: left, 8: right}, vos.PixelFeaturizer(config, patch=1), config)
    assert all(np.array_equal(before.masks[t], left) for t in range(3))
    assert [c["passes"] for c in before.confidences[:4]] == [1, 1, 1, 0]


def test_feature_cache_budget_does_not_change_results():
    frames, masks = moving_square(num_frames=7)
    keyframes = {0: masks[0], 6: masks[6]}
    cached = vos.propagate(frames, keyframes, vos.PixelFeaturizer(SMALL, patch=4), SMALL)
    tight = vos.PropagationConfig(short_side=64, size_multiple=16, radius=3, batch_size=2, feature_cache_mb=0)
    uncached = vos.propagate(frames, keyframes, vos.PixelFeaturizer(tight, patch=4), tight)
    assert np.array_equal(cached.masks, uncached.masks)
    assert mean_j(cached.masks, masks, range(1, 6)) > 0.7


def test_a_window_or_recent_queue_larger_than_the_video_is_the_whole_of_it(tmp_path):
    """`--radius 1000000` tried to allocate hundreds of terabytes and `--n-last 1000000` tens of gigabytes (each a
    traceback, or the kernel's OOM killer); a radius past the frame is the whole frame (as 0 is), a recent queue
    past the video holds the whole video, with the same masks."""
    frames, masks = moving_square(num_frames=6)
    keyframes = {0: masks[0], 5: masks[5]}

    def run(**changes):
        config = dataclasses.replace(SMALL, **changes)
        return vos.propagate(frames, keyframes, vos.PixelFeaturizer(config, patch=4), config).masks

    assert np.array_equal(run(radius=10**6), run(radius=0))
    assert np.array_equal(run(n_last=10**6), run(n_last=6))
    write_davis_root(tmp_path / "root", "sq", frames, masks)
    result = CliRunner().invoke(vos_command, ["propagate", str(tmp_path / "root"), "--out", str(tmp_path / "pred"),
                                              "--method", "pixels", "--short-side", "64", "--radius", str(10**6),
                                              "--n-last", str(10**6), "--keyframes", "0"])
    assert result.exit_code == 0, result.output


def test_bad_keyframes_are_rejected():
    frames, masks = moving_square(num_frames=3)
    with pytest.raises(vos.PropagationError, match="outside"):
        vos.propagate(frames, {5: masks[0]}, vos.COPY)
    with pytest.raises(vos.PropagationError, match="mask size"):
        vos.propagate(frames, {0: masks[0][:10]}, vos.COPY)
    with pytest.raises(vos.PropagationError, match="at least one"):
        vos.propagate(frames, {}, vos.COPY)


# ---------------------------------------------------------------------------- CLI


def write_davis_root(root: Path, name: str, frames: np.ndarray, masks: np.ndarray, style: str = "binary") -> None:
    """A DAVIS-layout root with one sequence."""
    layout = DavisLayout(root)
    (layout.images_dir / name).mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        cv2.imwrite(str(layout.frame_path(name, t)), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        write_mask(layout.mask_path(name, t), masks[t], style=style)


PIXEL_ARGS = ["--method", "pixels", "--pixel-patch", "4", "--short-side", "64", "--size-multiple", "16",
              "--radius", "3"]


def test_cli_reads_only_keyframe_annotations(tmp_path):
    frames, masks = moving_square(num_frames=7)
    palette_masks = masks * 2  # object id 2 in a palette PNG
    write_davis_root(tmp_path / "full", "sq", frames, palette_masks, style="palette")
    shutil.copytree(tmp_path / "full", tmp_path / "sparse")
    for t in range(7):
        if t not in (0, 3):
            DavisLayout(tmp_path / "sparse").mask_path("sq", t).unlink()
    runner = CliRunner()
    for variant in ("full", "sparse"):
        result = runner.invoke(vos_command, ["propagate", str(tmp_path / variant), "--out",
                                             str(tmp_path / f"pred_{variant}"), "--keyframes", "0,3", *PIXEL_ARGS])
        assert result.exit_code == 0, result.output
    for t in range(7):
        a = tmp_path / "pred_full" / "sq" / f"{t:05d}.png"
        b = tmp_path / "pred_sparse" / "sq" / f"{t:05d}.png"
        assert np.array_equal(read_mask(a), read_mask(b))
    assert set(np.unique(read_mask(tmp_path / "pred_full" / "sq" / "00005.png"))) == {0, 2}
    record = json.loads((tmp_path / "pred_sparse" / "sq" / "confidence.json").read_text())
    assert record["keyframes"] == [0, 3] and record["mask_style"] == "palette" and len(record["frames"]) == 7
    assert [f["passes"] for f in record["frames"]] == [0, 2, 2, 0, 1, 1, 1]
    # the J&F of the propagated masks: keyframes excluded, pixel baseline well above 0.5
    out = tmp_path / "scores.json"
    score = runner.invoke(eval_command, ["vos", "--pred", str(tmp_path / "pred_full"), "--gt", str(tmp_path / "full"),
                                         "--exclude-keyframes", "--json", str(out)])
    assert score.exit_code == 0, score.output
    assert json.loads(out.read_text())["J&F"] > 0.5


def test_cli_says_when_every_frame_is_a_keyframe(tmp_path):
    """`--keyframes uniform:K` with K over a sequence's length makes every frame a keyframe; the command says so
    (before: silently, and the sequence then scored as perfect propagation)."""
    frames, masks = moving_square(num_frames=4)
    write_davis_root(tmp_path / "root", "sq", frames, masks)
    args = ["propagate", str(tmp_path / "root"), "--out", str(tmp_path / "pred"), "--method", "copy"]
    every = CliRunner().invoke(vos_command, [*args, "--keyframes", "uniform:9"])
    assert every.exit_code == 0 and "every frame of sq is a keyframe" in " ".join(every.output.split())
    some = CliRunner().invoke(vos_command, [*args, "--keyframes", "uniform:2", "--overwrite"])
    assert some.exit_code == 0 and "is a keyframe" not in some.output


def test_cli_resumes_and_binary_style(tmp_path):
    frames, masks = moving_square(num_frames=4)
    write_davis_root(tmp_path / "root", "sq", frames, masks)
    args = ["propagate", str(tmp_path / "root"), "--out", str(tmp_path / "pred"), "--method", "copy"]
    assert CliRunner().invoke(vos_command, args).exit_code == 0
    out_mask = tmp_path / "pred" / "sq" / "00002.png"
    from PIL import Image

    with Image.open(out_mask) as image:
        assert image.mode == "L" and set(np.unique(np.asarray(image))) <= {0, 255}
    again = CliRunner().invoke(vos_command, args)
    assert again.exit_code == 0 and "already done" in again.output
    (tmp_path / "pred" / "sq" / "confidence.json").write_text("[1, 2]")  # not ours: an AttributeError traceback
    redone = CliRunner().invoke(vos_command, args)
    assert redone.exit_code != 0 or "already done" not in redone.output
    assert "Traceback" not in redone.output and not isinstance(redone.exception, AttributeError)


def test_a_sequence_rewritten_only_in_part_is_not_taken_for_done(tmp_path, monkeypatch):
    """A finished run, then an --overwrite run with other settings stopped mid-sequence: the first run's record
    stayed beside a mix of both runs' masks, and rerunning the first settings skipped the sequence as done."""
    from segloop.platform.vos import propagation as vos

    frames, masks = moving_square(num_frames=6)
    write_davis_root(tmp_path / "root", "sq", frames, masks)
    args = ["propagate", str(tmp_path / "root"), "--out", str(tmp_path / "pred"), "--method", "copy"]
    assert CliRunner().invoke(vos_command, args).exit_code == 0
    real = vos.iter_propagate

    def stopped_after_two(*call, **kwargs):
        for count, result in enumerate(real(*call, **kwargs)):
            if count == 2:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(vos, "iter_propagate", stopped_after_two)
    CliRunner().invoke(vos_command, [*args[:-1], "pixels", "--overwrite"])
    monkeypatch.setattr(vos, "iter_propagate", real)
    again = CliRunner().invoke(vos_command, args)
    assert again.exit_code == 0 and "already done" not in again.output, again.output


@pytest.mark.parametrize("problem", ["layout", "annotation", "frame", "keyframes", "checkpoint"])
def test_cli_errors(tmp_path, problem):
    frames, masks = moving_square(num_frames=4)
    write_davis_root(tmp_path / "root", "sq", frames, masks)
    args = ["propagate", str(tmp_path / "root"), "--out", str(tmp_path / "pred"), "--method", "copy"]
    expected = ""
    if problem == "layout":
        args[1] = str(tmp_path)
        expected = "JPEGImages"
    elif problem == "annotation":
        DavisLayout(tmp_path / "root").mask_path("sq", 0).unlink()
        expected = "00000.png"
    elif problem == "frame":
        DavisLayout(tmp_path / "root").frame_path("sq", 0).write_bytes(b"broken")
        expected = "00000.jpg"
    elif problem == "keyframes":
        args += ["--keyframes", "uniform:q"]
        expected = "uniform:q"
    else:
        args = args[:4] + ["--checkpoint", str(tmp_path / "nope.pth"), "--backbone", "vit_tiny_patch16_224"]
        expected = "nope.pth"
    result = CliRunner().invoke(vos_command, args)
    assert result.exit_code != 0
    assert expected in result.output


def test_cli_never_writes_into_roots_frames_or_ground_truth_nor_outside_out(tmp_path):
    """`--out ROOT/Annotations/480p` replaced the ground truth with predictions; `--sequences ../evil` read and wrote
    outside ROOT and OUT. Both are refused, and the ground truth is untouched."""
    frames, masks = moving_square(num_frames=4)
    write_davis_root(tmp_path / "root", "sq", frames, masks)
    truth = DavisLayout(tmp_path / "root").mask_path("sq", 2)
    before = truth.read_bytes()
    base = ["propagate", str(tmp_path / "root"), "--method", "copy"]
    for out in ("root/Annotations/480p", "root/Annotations", "root/JPEGImages/480p/x", "root"):
        result = CliRunner().invoke(vos_command, [*base, "--out", str(tmp_path / out)])
        assert result.exit_code == 2 and "inside ROOT's frames or ground-truth masks" in result.output, out
    result = CliRunner().invoke(vos_command, [*base, "--out", str(tmp_path / "pred"), "--sequences", "../evil"])
    assert result.exit_code == 2 and "'../evil' is not a sequence name" in result.output
    assert truth.read_bytes() == before and not (tmp_path / "pred").exists()
    assert CliRunner().invoke(vos_command, [*base, "--out", str(tmp_path / "root" / "predictions")]).exit_code == 0


@pytest.mark.parametrize("problem", ["keyframe outside the short sequence", "second sequence's annotation missing"])
def test_cli_checks_every_sequence_before_writing_any(tmp_path, problem):
    long_frames, long_masks = moving_square(num_frames=8)
    short_frames, short_masks = moving_square(num_frames=4)
    write_davis_root(tmp_path / "root", "a_long", long_frames, long_masks)
    write_davis_root(tmp_path / "root", "b_short", short_frames, short_masks)
    args = ["propagate", str(tmp_path / "root"), "--out", str(tmp_path / "pred"), "--method", "copy"]
    if problem.startswith("keyframe"):
        args += ["--keyframes", "0,6"]
        expected = "b_short (4 frames): keyframes '0,6': frame(s) [6] outside 0..3"
    else:
        DavisLayout(tmp_path / "root").mask_path("b_short", 0).unlink()
        expected = "keyframe annotation not found"
    result = CliRunner().invoke(vos_command, args)
    assert result.exit_code != 0
    assert expected in " ".join(result.output.split())
    assert "frames" not in result.output.split("Error")[0]  # no progress bar before the refusal
    assert not (tmp_path / "pred" / "a_long").exists()


def test_real_sample_short_sequence(tmp_path):
    sample = DavisLayout(SAMPLE)
    if not (sample.images_dir / "blackswan").is_dir():
        pytest.skip(f"shared DAVIS sample not found at {SAMPLE}")
    root = tmp_path / "davis"
    copy = DavisLayout(root)
    for folder in (copy.images_dir, copy.masks_dir):
        (folder / "blackswan").mkdir(parents=True)
    for t in range(5):
        shutil.copy(sample.frame_path("blackswan", t), copy.frame_path("blackswan", t))
        shutil.copy(sample.mask_path("blackswan", t), copy.mask_path("blackswan", t))
    result = CliRunner().invoke(vos_command, ["propagate", str(root), "--out", str(tmp_path / "pred"),
                                              "--method", "pixels", "--short-side", "160", "--pixel-patch", "8",
                                              "--radius", "8"])
    assert result.exit_code == 0, result.output
    assert read_mask(tmp_path / "pred" / "blackswan" / "00004.png").shape == (480, 854)
    out = tmp_path / "scores.json"
    score = CliRunner().invoke(eval_command, ["vos", "--pred", str(tmp_path / "pred"), "--gt", str(root),
                                              "--json", str(out)])
    assert score.exit_code == 0, score.output
    assert json.loads(out.read_text())["J&F"] > 0.65  # measured 0.797 (copy-first-mask: 0.864 on these 5 easy frames)


def _dense_reference(query, groups, grid, topk, temperature):
    """The dense masked affinity: every query against every context cell, outside-window cells masked."""
    import torch

    logits, labels = [], []
    for keys, key_labels, radius in groups:
        window = vos.window_mask(*grid, radius)
        group_logits = torch.einsum("qc,mkc->qmk", query, keys) / temperature
        if window is not None:
            group_logits = group_logits.masked_fill(~window[:, None, :], float("-inf"))
        logits.append(group_logits.reshape(query.shape[0], -1))
        labels.append(key_labels.reshape(-1, key_labels.shape[-1]))
    logits, labels = torch.cat(logits, 1), torch.cat(labels, 0)
    values, index = logits.topk(topk, dim=1)
    return torch.einsum("qk,qkl->ql", torch.softmax(values, 1), labels[index])


@pytest.mark.parametrize(("grid", "radii", "tile"), [((5, 7), (1, 1), 16), ((9, 6), (2, 1), 3), ((12, 13), (3, 0), 4),
                                                     ((4, 4), (0, 2), 8), ((7, 11), (5, 2), 1)])
@pytest.mark.parametrize("chunk_bytes", [vos.LOGIT_CHUNK_BYTES, 1])
def test_local_propagation_equals_the_dense_masked_affinity(grid, radii, tile, chunk_bytes, monkeypatch) -> None:
    """Tile-by-tile windowed top-k gives the same soft labels as the dense (h·w)² masked version, whether all
    tiles are scored at once or one at a time."""
    import torch

    monkeypatch.setattr(vos, "LOGIT_CHUNK_BYTES", chunk_bytes)
    torch.manual_seed(0)
    cells = grid[0] * grid[1]
    query = torch.nn.functional.normalize(torch.randn(cells, 8), dim=1)
    normalize = torch.nn.functional.normalize
    groups = [(normalize(torch.randn(m, cells, 8), dim=2), torch.softmax(torch.randn(m, cells, 3), -1), r)
              for m, r in zip((2, 3), radii)]
    local = vos.local_topk_labels(query, groups, grid, topk=5, temperature=0.1, tile=tile)
    assert torch.allclose(local, _dense_reference(query, groups, grid, 5, 0.1), atol=1e-5)
    single = vos.local_topk_labels(query, groups[:1], grid, topk=3, temperature=0.2, tile=tile)
    config = vos.PropagationConfig(topk=3, temperature=0.2, radius=radii[0])
    assert torch.allclose(single, vos.propagate_labels(query, groups[0][0], groups[0][1], config,
                                                       vos.window_mask(*grid, radii[0])), atol=1e-5)


@pytest.mark.parametrize("norm", [1.0, 1e3])
def test_local_propagation_sees_only_its_window(norm: float) -> None:
    """A key outside every query's window never votes, however similar it is (also for features far from unit
    norm: the window penalty grows with them)."""
    import torch

    grid = (6, 6)
    query = torch.zeros(36, 2)
    query[:, 0] = norm
    keys = torch.zeros(1, 36, 2)
    keys[0, :, 1] = norm  # orthogonal everywhere...
    keys[0, 35, 0], keys[0, 35, 1] = norm, 0.0  # ...except the bottom-right cell, identical to every query
    labels = torch.zeros(1, 36, 2)
    labels[0, :, 0] = 1.0
    labels[0, 35] = torch.tensor([0.0, 1.0])
    out = vos.local_topk_labels(query, [(keys, labels, 1)], grid, topk=1, temperature=0.1)
    near = {(r, c) for r in range(4, 6) for c in range(4, 6)}
    for index in range(36):
        assert out[index, 1].item() == (1.0 if divmod(index, 6) in near else 0.0)


def test_a_pretrain_run_folder_gives_its_dense_encoder(tmp_path) -> None:
    """`--checkpoint RUN` uses the run's dense encoder at its stride; a folder without weights is named."""
    pytest.importorskip("segloop.pretrain.dense")
    from segloop.pretrain.dense import DenseEncoder, EncoderConfig, save_dense_encoder

    save_dense_encoder(DenseEncoder(EncoderConfig(stride=8)), tmp_path)
    config = vos.PropagationConfig(short_side=64, size_multiple=8)
    featurizer = vos.make_featurizer("backbone", None, tmp_path, config, "cpu")
    assert isinstance(featurizer, vos.DenseFeaturizer) and featurizer.patch == 8
    frames = np.random.default_rng(0).integers(0, 255, (2, 64, 96, 3), dtype=np.uint8)
    features = featurizer(frames)
    assert features.shape[:2] == (2, 8 * 12)
    assert np.allclose(features.norm(dim=-1).numpy(), 1.0, atol=1e-4)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(vos.PropagationError, match="empty: neither dense_encoder.pth nor teacher_backbone.pth"):
        vos.make_featurizer("backbone", None, empty, config, "cpu")


@pytest.mark.parametrize(("radius", "recent", "expected"),
                         [(12, 4, 4), (1, 4, 1), (12, None, 12), (0, 4, 4), (12, 0, 12)])
def test_recent_window_is_never_wider_than_the_keyframe_window(radius, recent, expected):
    assert vos.PropagationConfig(radius=radius, recent_radius=recent).recent_window() == expected


@pytest.mark.parametrize("pushed", [3, 9])
def test_recent_frames_in_one_buffer_vote_like_separate_blocks(pushed: int) -> None:
    """The last n_last frames kept in one ring buffer give the labels of the same frames as separate blocks,
    before the buffer is full and after it wrapped around (oldest frames dropped)."""
    from segloop.platform.vos.propagation import RecentBlocks, topk_from_blocks, window_blocks

    torch.manual_seed(0)
    grid, channels, depth, kept = (13, 21), 8, 3, 7
    cells = grid[0] * grid[1]
    keyframe = window_blocks(torch.randn(1, cells, channels), torch.rand(1, cells, depth), grid, 5)
    frames = [window_blocks(torch.randn(1, cells, channels), torch.rand(1, cells, depth), grid, 2)
              for _ in range(pushed)]
    ring = RecentBlocks(kept)
    for block in frames:
        ring.push(block)
    query = torch.randn(cells, channels)
    separate = topk_from_blocks(query, [keyframe, *frames[-kept:]], grid, 5, 0.1)
    together = topk_from_blocks(query, [keyframe, *ring.blocks()], grid, 5, 0.1)
    torch.testing.assert_close(together, separate)
    assert len(ring.blocks()) == 1 and ring.count == min(pushed, kept)
