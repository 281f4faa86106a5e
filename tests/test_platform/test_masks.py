"""Mask I/O: DAVIS-2016/2017 PNGs and COCO RLE (checked against pycocotools)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segloop.platform.core.masks import MaskError, decode_rle, encode_rle, mask_style, read_mask, write_mask


def test_palette_round_trip_keeps_object_ids(tmp_path: Path) -> None:
    """A DAVIS-2017 palette PNG stores object ids as pixel values."""
    labels = np.zeros((5, 7), np.uint8)
    labels[1:3, 1:4] = 1
    labels[3:, 5:] = 7
    write_mask(tmp_path / "m.png", labels)
    assert mask_style(tmp_path / "m.png") == "palette"
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), labels)


def test_binary_0_255_mask_is_one_object(tmp_path: Path) -> None:
    """A DAVIS-2016 0/255 grayscale PNG reads as object 1."""
    Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8), mode="L").save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "b.png"), [[0, 1], [1, 0]])
    write_mask(tmp_path / "w.png", np.array([[0, 3]]), style="binary")
    assert np.asarray(Image.open(tmp_path / "w.png")).tolist() == [[0, 255]]


def test_unreadable_and_colour_masks_are_named(tmp_path: Path) -> None:
    """Errors name the file and the reason."""
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(MaskError, match="bad.png: unreadable mask image"):
        read_mask(tmp_path / "bad.png")
    Image.fromarray(np.dstack([np.zeros((2, 2)), np.ones((2, 2)) * 9, np.zeros((2, 2))]).astype(np.uint8)).save(
        tmp_path / "rgb.png")
    with pytest.raises(MaskError, match="rgb.png: colour mask"):
        read_mask(tmp_path / "rgb.png")
    with pytest.raises(MaskError, match="does not exist"):
        read_mask(tmp_path / "nope.png")


@pytest.mark.parametrize("shape", [(1, 1), (4, 6), (31, 17), (480, 854)])
def test_rle_round_trip_and_pycocotools_agreement(shape: tuple[int, int]) -> None:
    """Our compressed RLE decodes to the mask and equals pycocotools' encoding."""
    pycocotools_mask = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(shape[0])
    for mask in (rng.random(shape) > 0.7, np.ones(shape, bool), np.zeros(shape, bool)):
        rle = encode_rle(mask)
        np.testing.assert_array_equal(decode_rle(rle), mask)
        reference = pycocotools_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle["counts"] == reference["counts"].decode()
        np.testing.assert_array_equal(decode_rle({"size": rle["size"], "counts": reference["counts"]}), mask)


def test_rle_uncompressed_counts_and_bad_payloads() -> None:
    """List counts decode; counts that do not cover the image are refused."""
    assert decode_rle({"size": [2, 2], "counts": [1, 2, 1]}).T.reshape(-1).tolist() == [False, True, True, False]
    with pytest.raises(MaskError, match="cover 3 pixels"):
        decode_rle({"size": [2, 2], "counts": [1, 2]})
    with pytest.raises(MaskError, match="'size'"):
        decode_rle({"counts": "abc"})
