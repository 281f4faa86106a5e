"""Mask I/O: DAVIS-2016 (0/255 grayscale), DAVIS-2017 (palette, value = object id) and COCO RLE."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from segloop.platform.core.names import shown
from segloop.platform.core.storage import atomic_write_bytes

VOID_LABEL = 255  # in a class map: pixels not scored; ids are 8-bit, so classes are 0..254

class MaskError(ValueError):
    """A mask file or mask payload that cannot be used; the message names it and why."""


def davis_palette() -> list[int]:
    """The DAVIS/PASCAL VOC colour palette as a flat list of 768 ints."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        c, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette[index] = (r, g, b)
    return palette.reshape(-1).tolist()


def read_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None, *, class_map: bool = False
              ) -> np.ndarray:
    """Label map (uint8, 0 = background, k = object k) of a DAVIS-2016 or DAVIS-2017 mask PNG; with `shape`
    (height, width), a mask of another size is refused before its pixels are decoded. With `class_map` a grey PNG's
    values are class ids as stored (255 stays void): a 0/255 map is not read as one binary object."""
    path = Path(path)
    if not path.exists():
        raise MaskError(f"{path}: mask file does not exist")
    return _decode_mask(path, str(path), shape, class_map)


def mask_from_bytes(data: bytes, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Label map of an uploaded mask PNG's bytes (as `read_mask`); errors name the upload as `name`."""
    return _decode_mask(io.BytesIO(data), name, shape)


def _decode_mask(source: Path | io.BytesIO, name: str, shape: tuple[int, int] | None,
                 class_map: bool = False) -> np.ndarray:
    """Label map of a mask PNG (a file or bytes), or MaskError naming it and the reason."""
    try:
        with Image.open(source) as image:
            if shape is not None and (image.height, image.width) != tuple(shape):
                raise MaskError(f"{name}: mask is {image.width}x{image.height}, frames are {shape[1]}x{shape[0]}")
            image.load()
            mode, kind = image.mode, image.format
            array = np.asarray(image)
    except Image.DecompressionBombError:
        raise MaskError(f"{name}: the image is too large to be a mask (over {Image.MAX_IMAGE_PIXELS} pixels)") from None
    except UnidentifiedImageError:
        raise MaskError(f"{name}: unreadable mask image (not an image file)") from None
    except OSError as exc:
        raise MaskError(f"{name}: unreadable mask image ({exc.strerror or exc})") from None
    if kind != "PNG":  # a lossy image's compression noise would read as objects
        raise MaskError(f"{name}: not a PNG image ({kind or 'unknown'} data); masks must be lossless PNG files")
    if mode == "P":
        return array.astype(np.uint8, copy=False)
    if mode in ("L", "1", "I", "I;16"):
        if array.ndim != 2:
            raise MaskError(f"{name}: expected a single-channel mask, got shape {array.shape}")
        return _grey_labels(array, name, binary=mode == "1", class_map=class_map)
    if mode in ("RGB", "RGBA"):
        rgb = array[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
            return _grey_labels(rgb[..., 0], name, class_map=class_map)
        raise MaskError(f"{name}: colour mask in mode {mode}; expected a palette (P) or grayscale (L) PNG")
    raise MaskError(f"{name}: unsupported mask image mode {mode}")


def _grey_labels(array: np.ndarray, name: str, binary: bool = False, class_map: bool = False) -> np.ndarray:
    """Object ids of a grey mask: a 0/255 (or 16-bit 0/65535) mask is one object, other values are the ids (with
    `class_map`, every value is an id as stored)."""
    values = set(np.unique(array).tolist())
    if binary or (not class_map and any(values <= {0, top} and top in values for top in (255, 65535))):
        return (array > 0).astype(np.uint8)
    if max(values, default=0) > 255:
        raise MaskError(f"{name}: object id {max(values)} out of range 0..255")
    return array.astype(np.uint8)


def write_mask(path: str | os.PathLike, labels: np.ndarray, style: str = "palette") -> None:
    """Atomically write a label map as a DAVIS-2017 palette PNG or (style='binary') a 0/255 PNG."""
    path = Path(path)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise MaskError(f"{path}: label map must be 2-D, got shape {labels.shape}")
    if style == "palette":
        image = Image.fromarray(labels.astype(np.uint8), mode="P")
        image.putpalette(davis_palette())
    elif style == "binary":
        image = Image.fromarray(np.where(labels > 0, 255, 0).astype(np.uint8), mode="L")
    else:
        raise MaskError(f"{path}: unknown mask style {style!r} (palette|binary)")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def mask_style(path: str | os.PathLike) -> str:
    """'palette' for a DAVIS-2017 PNG, 'binary' for a DAVIS-2016 0/255 one."""
    with Image.open(path) as image:
        return "palette" if image.mode == "P" else "binary"


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE ({'size': [h, w], 'counts': str}) of a binary mask, column-major."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise MaskError(f"RLE needs a 2-D mask, got shape {mask.shape}")
    height, width = mask.shape
    flat = mask.T.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds)
    if flat.size and flat[0]:
        runs = np.concatenate(([0], runs))
    return {"size": [int(height), int(width)], "counts": _counts_to_string(runs.tolist())}


def rle_shape(rle: object) -> tuple[int, int]:
    """(height, width) of a COCO RLE's `size`, or MaskError saying what is wrong with the RLE's form."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise MaskError("RLE must be an object with 'size' [height, width] and 'counts'")
    size = rle["size"]
    if (not isinstance(size, list | tuple) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)):
        raise MaskError(f"RLE size must be [height, width] in whole pixels, got {shown(size)}")
    return int(size[0]), int(size[1])


def decode_rle(rle: dict) -> np.ndarray:
    """Binary mask (bool, h×w) from COCO RLE, compressed string or list of counts."""
    height, width = rle_shape(rle)
    counts = rle["counts"]
    if isinstance(counts, str | bytes):
        runs = _string_to_counts(counts)
    elif isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        runs = counts
    else:
        raise MaskError("RLE counts must be a compressed string or a list of whole numbers")
    if any(run < 0 for run in runs):
        raise MaskError(f"RLE counts hold a negative run ({min(runs)})")
    if sum(runs) != height * width:
        raise MaskError(f"RLE counts cover {sum(runs)} pixels, expected {height}×{width}")
    values = np.arange(len(runs)) % 2 == 1
    flat = np.repeat(values, np.asarray(runs, dtype=np.int64))
    return flat.reshape(width, height).T.copy()


def _counts_to_string(runs: list[int]) -> str:
    """COCO's LEB128-like text encoding of run lengths (delta-coded after the second run)."""
    out = []
    for i, run in enumerate(runs):
        value = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            chunk = value & 0x1F
            value >>= 5
            more = not ((value == 0 and not chunk & 0x10) or (value == -1 and chunk & 0x10))
            if more:
                chunk |= 0x20
            out.append(chr(chunk + 48))
    return "".join(out)


def _string_to_counts(text: str | bytes) -> list[int]:
    """Inverse of `_counts_to_string`."""
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    if not all(48 <= ord(char) < 48 + 64 for char in text):
        raise MaskError("RLE counts string holds characters outside COCO's encoding")
    runs: list[int] = []
    pos = 0
    while pos < len(text):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(text):
                raise MaskError("RLE counts string ends in the middle of a number")
            chunk = ord(text[pos]) - 48
            value |= (chunk & 0x1F) << (5 * shift)
            more = bool(chunk & 0x20)
            pos += 1
            shift += 1
            if not more and chunk & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def object_ious(first: np.ndarray, second: np.ndarray, exclude: tuple[int, ...] = (0,)) -> dict[int, float]:
    """IoU per label present in either of two label maps (labels in `exclude` skipped), by label."""
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape:
        raise MaskError(f"label maps differ in size: {first.shape[::-1]} vs {second.shape[::-1]}")
    labels = (set(np.unique(first).tolist()) | set(np.unique(second).tolist())) - set(exclude)
    ious = {}
    for label in sorted(labels):
        a, b = first == label, second == label
        ious[int(label)] = float(np.count_nonzero(a & b) / np.count_nonzero(a | b))
    return ious
