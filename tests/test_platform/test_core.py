"""The shared helpers in platform/core: image sizes and reading, device choice, the DAVIS layout, atomic writes,
per-object IoU, the cosine schedule and layer-wise LR decay."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from segloop.platform.core import davis
from segloop.platform.core.device import (
    DeviceError,
    MemoryBudgetError,
    available_memory_bytes,
    cuda_available,
    require_memory,
    resolve_device,
)
from segloop.platform.core.errors import user_message
from segloop.platform.core.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageError,
    imagenet_normalise,
    read_rgb,
    working_size,
)
from segloop.platform.core.masks import MaskError, object_ious
from segloop.platform.core.optim import biases_norms_and, layer_decay_groups, vit_layer_id
from segloop.platform.core.schedules import cosine
from segloop.platform.core.storage import atomic_path, atomic_write_bytes

# ---------------------------------------------------------------------------- image


def test_working_size_rounding_rules_differ_where_a_side_is_just_under_a_patch_multiple():
    """839 × 0.4 = 335.6: "round" makes 336 px then 336, "floor" floors to 320, "nearest" rounds 20.98 patches to 21."""
    assert working_size(480, 839, 192, 16, rounding="round") == (192, 336)
    assert working_size(480, 839, 192, 16, rounding="floor") == (192, 320)
    assert working_size(480, 839, 192, 16, rounding="nearest") == (192, 336)
    # 190 × 0.64 = 121.6: 122 px floored to 112 ("round"), 7.6 patches rounded to 8 ("nearest")
    assert working_size(100, 190, 64, 16, rounding="round") == (64, 112)
    assert working_size(100, 190, 64, 16, rounding="nearest") == (64, 128)


@pytest.mark.parametrize("rounding", ["round", "floor", "nearest"])
def test_working_size_caps_the_long_side_of_an_extreme_strip(rounding: str) -> None:
    """A 2000x16 strip at short side 480 was worked at 60000 px long (propagation ran effectively forever); the long
    side is capped at MAX_SIDE, the short side shrinking with it, in either orientation."""
    from segloop.platform.core.image import MAX_SIDE

    for height, width in ((16, 2000), (2000, 16)):
        h, w = working_size(height, width, 480, 8, rounding=rounding, long_multiple=64)
        assert max(h, w) <= MAX_SIDE and min(h, w) >= 8 and (h > w) == (height > width)


def test_working_size_keeps_height_width_order_and_the_long_side_multiple():
    assert working_size(854, 480, 480, 16, rounding="floor", long_multiple=64) == (832, 480)
    assert working_size(480, 854, 480, 14, rounding="floor", long_multiple=64) == (476, 826)
    assert working_size(854, 480, 192, 16) == (336, 192)


def test_working_size_small_frames_clamp_or_raise():
    """"round"/"nearest" never go below one patch; "floor" refuses a frame smaller than a patch."""
    assert working_size(10, 1000, 4, 16) == (16, 400)
    assert working_size(10, 1000, 4, 16, rounding="nearest") == (16, 400)
    with pytest.raises(ImageError, match="smaller than one 16px patch"):
        working_size(10, 10, 8, 16, rounding="floor", long_multiple=8)
    with pytest.raises(ValueError, match="rounding"):
        working_size(10, 10, 8, 16, rounding="ceil")


def test_read_rgb_returns_rgb_and_names_a_bad_file(tmp_path: Path):
    path = tmp_path / "red.png"
    image = np.zeros((4, 5, 3), dtype=np.uint8)
    image[..., 2] = 200  # BGR on disk: red
    cv2.imwrite(str(path), image)
    rgb = read_rgb(path)
    assert rgb.shape == (4, 5, 3) and rgb[0, 0].tolist() == [200, 0, 0]
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageError, match="broken.jpg: missing or unreadable image"):
        read_rgb(tmp_path / "broken.jpg")

    class OwnError(ValueError):
        pass

    with pytest.raises(OwnError, match="nothing.jpg"):
        read_rgb(tmp_path / "nothing.jpg", error=OwnError)


def test_imagenet_normalise_maps_white_and_black():
    batch = np.zeros((2, 3, 4, 3), dtype=np.uint8)
    batch[1] = 255
    out = imagenet_normalise(batch).numpy()
    assert out.shape == (2, 3, 3, 4)
    for channel in range(3):
        assert out[0, channel, 0, 0] == pytest.approx(-IMAGENET_MEAN[channel] / IMAGENET_STD[channel], rel=1e-6)
        assert out[1, channel, 0, 0] == pytest.approx((1 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel], rel=1e-6)


# ---------------------------------------------------------------------------- device


def test_resolve_device_auto_and_cpu():
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("CPU") == "cpu"
    assert cuda_available() == torch.cuda.is_available()


def test_resolve_device_refuses_unknown_and_missing_devices():
    import torch

    with pytest.raises(DeviceError, match="'tpu': expected 'auto', 'cpu', 'cuda' or 'cuda:<index>'"):
        resolve_device("tpu")
    with pytest.raises(DeviceError, match="cuda:x"):
        resolve_device("cuda:x")
    if torch.cuda.is_available():
        assert resolve_device("cuda") == "cuda"
        with pytest.raises(DeviceError, match="CUDA GPU"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(DeviceError, match="'cuda': no CUDA GPU is available"):
            resolve_device("cuda")
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda:0")


def test_work_that_cannot_fit_in_memory_is_refused_with_the_sizes_named():
    """`require_memory` passes what fits and refuses what cannot, naming the options; an allocation that fails
    anyway reads as a sentence, not MemoryError's empty text."""
    available = available_memory_bytes()
    assert available is None or available > 0
    require_memory(1 << 20, "one MiB")
    if available is not None:
        with pytest.raises(MemoryBudgetError, match=r"^--frames 9 x --dim 9 needs about 1024\.0 GiB of memory; "):
            require_memory(1 << 40, "--frames 9 x --dim 9")
    assert user_message(MemoryError()) == ("not enough memory for this operation: use smaller sizes or fewer items "
                                           "at once")
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError) as failed:  # torch reports a failed allocation as a RuntimeError
        torch.empty(1 << 62, dtype=torch.uint8)
    assert user_message(failed.value) == user_message(MemoryError())
    assert user_message(RuntimeError("some other failure")) is None  # a bug stays a bug
    from sqlalchemy.exc import IntegrityError

    collided = IntegrityError("INSERT ...", {}, Exception('duplicate key value violates unique constraint\n'))
    assert user_message(collided) == ("the database refused a change (duplicate key value violates unique constraint): "
                                      "another command may have made the same change at the same moment; run it again")


# ---------------------------------------------------------------------------- DAVIS layout


def _davis_root(root: Path, resolution: str = "480p") -> None:
    """Two sequences of 3 frames, masks for 2 of them in one; an empty folder that is no sequence."""
    for name in ("bear", "apple"):
        (root / "JPEGImages" / resolution / name).mkdir(parents=True)
        for t in range(3):
            (root / "JPEGImages" / resolution / name / f"{t:05d}.jpg").write_bytes(b"jpg")
    (root / "JPEGImages" / resolution / "empty").mkdir()
    (root / "Annotations" / resolution / "bear").mkdir(parents=True)
    for t in (0, 2):
        (root / "Annotations" / resolution / "bear" / f"{t:05d}.png").write_bytes(b"png")


def test_davis_layout_lists_sequences_frames_and_masks(tmp_path: Path):
    _davis_root(tmp_path)
    layout = davis.open_layout(tmp_path)
    assert layout.resolution == "480p" and layout.images_dir == tmp_path / "JPEGImages" / "480p"
    assert layout.sequences() == ["apple", "bear"]
    assert [p.name for p in layout.frames("bear")] == ["00000.jpg", "00001.jpg", "00002.jpg"]
    assert [p.name for p in layout.masks("bear")] == ["00000.png", "00002.png"]
    assert layout.masks("apple") == []
    assert layout.frame_path("bear", 12) == tmp_path / "JPEGImages" / "480p" / "bear" / "00012.jpg"
    assert layout.mask_path("bear", 12) == tmp_path / "Annotations" / "480p" / "bear" / "00012.png"
    assert davis.list_sequences(layout.masks_dir) == ["bear"]
    assert davis.masks_root(tmp_path) == layout.masks_dir
    assert davis.masks_root(layout.masks_dir) == layout.masks_dir


def test_davis_layout_falls_back_to_another_resolution_and_names_what_is_missing(tmp_path: Path):
    _davis_root(tmp_path / "full", "Full-Resolution")
    assert davis.open_layout(tmp_path / "full").resolution == "Full-Resolution"
    with pytest.raises(davis.DavisError, match="JPEGImages: missing"):
        davis.open_layout(tmp_path / "nowhere")
    (tmp_path / "bare" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(davis.DavisError, match="no resolution folder"):
        davis.open_layout(tmp_path / "bare")
    with pytest.raises(davis.DavisError, match="resolutions here: Full-Resolution"):
        davis.open_layout(tmp_path / "full", "480p")


# ---------------------------------------------------------------------------- atomic writes


def test_atomic_path_renames_on_success_with_the_target_suffix(tmp_path: Path):
    target = tmp_path / "sub" / "array.npy"
    with atomic_path(target) as temp:
        assert temp.parent == target.parent and temp.suffix == ".npy" and temp != target
        np.save(temp, np.arange(3))
    assert np.load(target).tolist() == [0, 1, 2]
    assert sorted(p.name for p in target.parent.iterdir()) == ["array.npy"]


def test_atomic_path_leaves_old_content_and_no_temp_file_on_failure(tmp_path: Path):
    target = tmp_path / "state.json"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_path(target) as temp:
            temp.write_text("half")
            raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


# ---------------------------------------------------------------------------- masks


def test_object_ious_by_hand():
    first = np.array([[1, 1, 1, 0],
                      [0, 2, 2, 0]])
    second = np.array([[1, 1, 0, 0],
                       [0, 0, 2, 3]])
    # object 1: 2 shared of 3; object 2: 1 of 2; object 3 only in `second`: 0 of 1
    assert object_ious(first, second) == {1: pytest.approx(2 / 3), 2: 0.5, 3: 0.0}
    # background counted when only 255 is excluded: 2 shared pixels of 5
    assert object_ious(first, second, exclude=(255,))[0] == pytest.approx(0.4)
    assert object_ious(np.zeros((2, 2)), np.zeros((2, 2))) == {}
    with pytest.raises(MaskError, match="differ in size"):
        object_ious(first, second[:, :3])


# ---------------------------------------------------------------------------- schedules and optimizer groups


def test_cosine_endpoints_midpoint_and_warmup():
    assert cosine(0, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert cosine(50, 100, 1.0, 0.1) == pytest.approx(0.55)
    assert cosine(100, 100, 1.0, 0.1) == pytest.approx(0.1)
    assert cosine(250, 100, 1.0, 0.1) == pytest.approx(0.1)
    assert cosine(0, 110, 1.0, 0.0, warmup=10) == 0.0
    assert cosine(5, 110, 1.0, 0.0, warmup=10, warmup_start=0.2) == pytest.approx(0.6)
    assert cosine(10, 110, 1.0, 0.0, warmup=10) == pytest.approx(1.0)
    assert cosine(60, 110, 1.0, 0.0, warmup=10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


def test_vit_layer_ids():
    assert [vit_layer_id(n, 12) for n in ("cls_token", "pos_embed", "patch_embed.proj.weight", "reg_token")] == [0] * 4
    assert vit_layer_id("blocks.0.attn.qkv.weight", 12) == 1
    assert vit_layer_id("blocks.11.mlp.fc2.bias", 12) == 12
    assert vit_layer_id("norm.weight", 12) == 13 and vit_layer_id("head.weight", 12) == 13


def test_layer_decay_groups_with_and_without_a_no_decay_rule():
    import timm

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, num_classes=0)
    model.pos_embed.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = layer_decay_groups(model.named_parameters(), 2, 1.0, 0.5, 0.05)
    assert [g["lr"] for g in groups] == [0.125, 0.25, 0.5, 1.0]
    assert {g["weight_decay"] for g in groups} == {0.05}
    assert sum(len(g["params"]) for g in groups) == len(trainable)
    assert id(model.pos_embed) not in {id(p) for g in groups for p in g["params"]}

    split = layer_decay_groups(model.named_parameters(), 2, 1.0, 0.5, 0.05, biases_norms_and(["cls_token"]))
    assert [(g["lr"], g["weight_decay"]) for g in split] == [
        (0.125, 0.05), (0.125, 0.0), (0.25, 0.05), (0.25, 0.0), (0.5, 0.05), (0.5, 0.0), (1.0, 0.0)]
    exempt = {id(p) for g in split if g["weight_decay"] == 0.0 for p in g["params"]}
    assert id(model.cls_token) in exempt and id(model.blocks[0].attn.qkv.bias) in exempt
    assert id(model.blocks[0].attn.qkv.weight) not in exempt and id(model.patch_embed.proj.weight) not in exempt


def test_the_shared_sample_is_found_from_any_working_folder(tmp_path) -> None:
    """Commands run outside the repository root looked for `../shared/data/davis-sample` there and quietly fell
    back to synthetic footage (demo) or failed (bench embed)."""
    import subprocess
    import sys

    from segloop.platform.core.settings import SHARED_SAMPLE

    if not SHARED_SAMPLE.is_dir():
        pytest.skip("shared DAVIS sample absent")
    code = "from segloop.platform.core.settings import SHARED_SAMPLE as s; print(s.resolve(), s.is_dir())"
    found = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert found.stdout.split() == [str(SHARED_SAMPLE.resolve()), "True"]
