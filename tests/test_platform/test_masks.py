"""Mask I/O: DAVIS-2016/2017 PNGs and COCO RLE (checked against pycocotools)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segloop.platform.core.masks import (
    MaskError,
    decode_rle,
    encode_rle,
    mask_from_bytes,
    mask_style,
    read_mask,
    write_mask,
)


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


def test_grey_masks_read_alike_whatever_their_pixel_format(tmp_path: Path) -> None:
    """Grey ids mean the same in an L, a 16-bit or a grey RGB PNG (an RGB 1/2 mask was read as all background); a
    0/255 or 0/65535 mask is one object; a JPEG named .png is refused (its compression noise read as objects)."""
    ids = np.array([[0, 1], [2, 2]], np.uint8)
    Image.fromarray(ids, mode="L").save(tmp_path / "l.png")
    Image.fromarray(np.dstack([ids] * 3), mode="RGB").save(tmp_path / "rgb.png")
    Image.fromarray(ids.astype(np.uint16)).save(tmp_path / "16.png")
    for name in ("l.png", "rgb.png", "16.png"):
        np.testing.assert_array_equal(read_mask(tmp_path / name), ids)
    Image.fromarray(np.array([[0, 65535]], np.uint16)).save(tmp_path / "b16.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "b16.png"), [[0, 1]])
    Image.fromarray(np.full((8, 8), 255, np.uint8), mode="L").save(tmp_path / "j.png", format="JPEG")
    with pytest.raises(MaskError, match="j.png: not a PNG image \\(JPEG data\\)"):
        read_mask(tmp_path / "j.png")


@pytest.mark.parametrize(("rle", "message"), [
    ({"size": [2, 2], "counts": None}, "counts must be a compressed string or a list of whole numbers"),
    ({"size": [2, 2], "counts": 5}, "counts must be"),
    ({"size": [2, 2], "counts": [None, 4]}, "counts must be"),
    ({"size": [2, 2], "counts": [1.5, 2.5]}, "counts must be"),
    ({"size": [2, 2], "counts": ["a", "b"]}, "counts must be"),
    ({"size": [2, 2], "counts": [10**30, 4]}, "cover 1000000000000000000000000000004 pixels"),
    ({"size": [2, 2], "counts": [5, -1]}, "negative run"),
    ({"size": [float("inf"), 2], "counts": [4]}, "size must be \\[height, width\\] in whole pixels"),
    ({"size": [2.9, 2.2], "counts": [4]}, "size must be"),
    ({"size": [-2, -2], "counts": [4]}, "size must be"),
    ({"size": [True, 4], "counts": [4]}, "size must be"),
    ({"size": [2, 2], "counts": "€€"}, "characters outside COCO's encoding"),
    ([1, 2], "must be an object with 'size'"),
])
def test_rle_payloads_that_cannot_be_a_mask_are_refused_saying_why(rle, message: str) -> None:
    """Every malformed RLE is a MaskError naming the part that is wrong (they were TypeError / OverflowError
    tracebacks, or truncated floats)."""
    with pytest.raises(MaskError, match=message):
        decode_rle(rle)


def _png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid 1x1 PNG whose header claims width x height (what a decompression bomb looks like)."""
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes of fields
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def test_an_upload_that_is_not_a_mask_is_refused_in_words(tmp_path: Path) -> None:
    """A 30000x30000 PNG header (Pillow's decompression-bomb error escaped the Label page's handler), garbage bytes
    (the message held '<_io.BytesIO object at 0x...>') and a mask of another size (refused before decoding)."""
    bomb = _png_claiming_size(30000, 30000)
    with pytest.raises(MaskError, match="^big.png: the image is too large to be a mask"):
        mask_from_bytes(bomb, "big.png", (48, 64))
    with pytest.raises(MaskError, match=r"^x.png: unreadable mask image \(not an image file\)$"):
        mask_from_bytes(b"garbage", "x.png")
    (tmp_path / "wide.png").write_bytes(_png_claiming_size(4000, 48))
    with pytest.raises(MaskError, match="wide.png: mask is 4000x48, frames are 64x48"):
        read_mask(tmp_path / "wide.png", (48, 64))
