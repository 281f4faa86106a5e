"""Synthetic footage with exact ground truth: textured objects moving over a panning background.

Writes a DAVIS-layout root (`JPEGImages/480p/<seq>/%05d.jpg`, `Annotations/480p/<seq>/%05d.png`
as palette PNGs whose value is the object id) plus `videos/<seq>.mp4` (H.264). Objects move,
rotate, scale and occlude each other (depth order = object id), so masks are the visible parts.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segloop.platform.core.davis import DavisLayout
from segloop.platform.core.image import MAX_SIDE
from segloop.platform.core.masks import write_mask
from segloop.platform.core.storage import staging_dir

SIZE_RANGE = (32, MAX_SIDE)  # pixels per side: objects need room; a frame must fit in memory


@dataclass(frozen=True)
class SynthOptions:
    """What to generate."""

    videos: int = 3
    frames: int = 40
    width: int = 320
    height: int = 240
    objects: tuple[int, int] = (2, 3)
    fps: int = 24
    seed: int = 0


@dataclass(frozen=True)
class _Object:
    """One moving textured shape."""

    outline: np.ndarray  # polygon around (0, 0), in pixels
    texture: np.ndarray  # RGB, square
    start: np.ndarray
    velocity: np.ndarray
    wobble: np.ndarray
    spin: float
    scale_rate: float


def _texture(rng: np.random.Generator, size: int, base: np.ndarray) -> np.ndarray:
    """A smooth random colour texture with stripes, around a base colour."""
    noise = rng.normal(0, 1, (size // 8 + 1, size // 8 + 1, 3)).astype(np.float32)
    smooth = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 20)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)[..., None]
    image = base[None, None, :] + 35 * smooth + 25 * stripes
    return np.clip(image, 0, 255).astype(np.uint8)


def _outline(rng: np.random.Generator, radius: float) -> np.ndarray:
    """A random ellipse, rectangle or star-ish polygon centred on (0, 0)."""
    kind = rng.integers(0, 3)
    if kind == 0:
        axes = (int(radius), int(radius * rng.uniform(0.5, 0.9)))
        return cv2.ellipse2Poly((0, 0), axes, 0, 0, 360, 10).astype(np.float32)
    if kind == 1:
        w, h = radius, radius * rng.uniform(0.5, 1.0)
        return np.array([[-w, -h], [w, -h], [w, h], [-w, h]], dtype=np.float32)
    angles = np.linspace(0, 2 * np.pi, 11)[:-1]
    radii = radius * np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.45, 0.7))
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1).astype(np.float32)


def _make_objects(rng: np.random.Generator, options: SynthOptions) -> list[_Object]:
    """Random objects that stay mostly inside the frame."""
    count = int(rng.integers(options.objects[0], options.objects[1] + 1))
    size = min(options.width, options.height)
    objects = []
    for _ in range(count):
        radius = size * rng.uniform(0.12, 0.22)
        objects.append(
            _Object(
                outline=_outline(rng, radius),
                texture=_texture(rng, int(radius * 2.5), rng.uniform(40, 220, 3)),
                start=np.array([rng.uniform(0.25, 0.75) * options.width, rng.uniform(0.25, 0.75) * options.height]),
                velocity=rng.uniform(-1.0, 1.0, 2) * size / options.frames * 0.4,
                wobble=rng.uniform(2, 8, 2),
                spin=float(rng.uniform(-0.06, 0.06)),
                scale_rate=float(rng.uniform(-0.006, 0.006)),
            )
        )
    return objects


def _render_frame(
    t: int, background: np.ndarray, pan: np.ndarray, margin: np.ndarray, objects: list[_Object],
    options: SynthOptions,
) -> tuple[np.ndarray, np.ndarray]:
    """RGB frame and label map at time t (the view into the background pans by `pan` px/frame)."""
    x0, y0 = (margin + pan * t).astype(int)
    frame = background[y0 : y0 + options.height, x0 : x0 + options.width].copy()
    labels = np.zeros((options.height, options.width), dtype=np.uint8)
    for object_id, obj in enumerate(objects, start=1):
        centre = obj.start + obj.velocity * t + obj.wobble * np.sin(t / 5.0 + object_id)
        angle = obj.spin * t
        scale = max(0.4, 1.0 + obj.scale_rate * t)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
        polygon = obj.outline @ rotation.T + centre
        shape = np.zeros_like(labels)
        cv2.fillPoly(shape, [np.round(polygon).astype(np.int32)], 1)
        half = obj.texture.shape[0] / 2
        affine = np.hstack([rotation, (centre - rotation @ np.array([half, half]))[:, None]]).astype(np.float32)
        warped = cv2.warpAffine(obj.texture, affine, (options.width, options.height), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT)
        inside = shape.astype(bool)
        frame[inside] = warped[inside]
        labels[inside] = object_id
    return frame, labels


def render_video(options: SynthOptions, index: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames and label maps of synthetic video number `index`."""
    rng = np.random.default_rng([options.seed, index])
    pan = rng.uniform(-1.5, 1.5, 2)
    margin = (np.abs(pan) * options.frames).astype(int) + 2
    big = (options.height + 2 * margin[1], options.width + 2 * margin[0])
    background = cv2.resize(_texture(rng, max(big), rng.uniform(60, 190, 3)), (max(big), max(big)))
    background = background[: big[0], : big[1]]
    objects = _make_objects(rng, options)
    frames, label_maps = [], []
    for t in range(options.frames):
        frame, labels = _render_frame(t, background, pan, margin, objects, options)
        frames.append(frame)
        label_maps.append(labels)
    return frames, label_maps


def write_mp4(path: Path, frames: list[np.ndarray], fps: int) -> None:
    """Encode RGB frames as H.264 (yuv420p) with PyAV."""
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def synthesize(out_dir: Path, options: SynthOptions = SynthOptions()) -> list[str]:
    """Write `options.videos` synthetic sequences under `out_dir`; returns their names."""
    if not (SIZE_RANGE[0] <= options.width <= SIZE_RANGE[1] and SIZE_RANGE[0] <= options.height <= SIZE_RANGE[1]):
        raise ValueError(f"synth size {options.width}x{options.height}: width and height must be "
                         f"{SIZE_RANGE[0]}..{SIZE_RANGE[1]} pixels")
    if options.width % 2 or options.height % 2:
        raise ValueError(f"synth size {options.width}x{options.height}: width and height must be even (yuv420p)")
    if options.videos < 1 or options.frames < 2:
        raise ValueError("synth needs at least 1 video of at least 2 frames")
    out_dir = Path(out_dir)
    names = []
    for index in range(options.videos):
        name = f"synth-{options.seed:03d}-{index:03d}"
        frames, label_maps = render_video(options, index)
        with staging_dir(out_dir) as staging:
            staged = DavisLayout(staging)
            (staged.images_dir / name).mkdir(parents=True, exist_ok=True)
            for t, (frame, labels) in enumerate(zip(frames, label_maps)):
                cv2.imwrite(str(staged.frame_path(name, t)), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
                write_mask(staged.mask_path(name, t), labels, style="palette")
            (staging / "videos").mkdir()
            write_mp4(staging / "videos" / f"{name}.mp4", frames, options.fps)
            inside = DavisLayout(Path())
            for relative in (inside.images_dir / name, inside.masks_dir / name, Path("videos") / f"{name}.mp4"):
                target = out_dir / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_dir():
                    shutil.rmtree(target)
                (staging / relative).replace(target)
        names.append(name)
    return names
