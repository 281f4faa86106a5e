"""Find the user's frames on disk as per-video ordered lists of JPEG paths (annotations are ignored).

Accepted layouts: a DAVIS root (`JPEGImages/480p/<seq>/*.jpg`), a folder of sequence folders of
JPEGs, a single folder of JPEGs, or a folder of videos (`*.mp4`, also under `videos/`) which are
decoded once with decord into JPEG folders under a cache directory.
"""
from __future__ import annotations

from pathlib import Path

from segloop.platform.core.davis import IMAGES, RESOLUTION, DavisLayout, frame_name, resolutions
from segloop.platform.core.storage import atomic_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")


class FramesError(ValueError):
    """A frames folder that holds no usable frames or videos; the message names the folder."""


def _images_in(folder: Path) -> list[Path]:
    """Image files directly inside a folder, in name order."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _sequence_folders(root: Path) -> list[list[Path]]:
    """Non-empty sequence folders of images directly under root, in name order."""
    videos = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        frames = _images_in(folder)
        if frames:
            videos.append(frames)
    return videos


def _davis_images_root(root: Path) -> Path | None:
    """The resolution folder of a DAVIS layout (480p preferred), if root is one; the bare JPEGImages folder
    when it holds the sequence folders itself."""
    images = root / IMAGES
    if not images.is_dir():
        return None
    found = resolutions(root)
    if RESOLUTION in found:
        return DavisLayout(root, RESOLUTION).images_dir
    if found and not _images_in(DavisLayout(root, found[0]).images_dir):
        return DavisLayout(root, found[0]).images_dir
    return images


def extract_video_frames(video: Path, dest: Path, max_side: int = 480) -> list[Path]:
    """Decode a video with decord into JPEGs under dest (once; reused when complete)."""
    import decord
    from PIL import Image

    done = dest / ".complete"
    if done.is_file():
        return _images_in(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        reader = decord.VideoReader(str(video), ctx=decord.cpu(0))
    except Exception as exc:  # decord raises its own error type for unreadable files
        raise FramesError(f"{video}: cannot decode video: {exc}") from None
    paths = []
    for index in range(len(reader)):
        image = Image.fromarray(reader[index].asnumpy())
        scale = max_side / max(image.size)
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
        path = dest / frame_name(index)
        # unique per process (torchrun ranks decode alike); ".tmp", not ".jpg", so no listing takes it for a frame
        with atomic_path(path, suffix=".tmp") as tmp:
            image.save(tmp, format="JPEG", quality=92)
        paths.append(path)
    done.write_text(str(len(paths)))
    return paths


def _video_files(root: Path) -> list[Path]:
    """Video files under root or root/videos, in name order."""
    found = []
    for folder in (root, root / "videos"):
        if folder.is_dir():
            found += [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
    return sorted(found)


def discover_videos(root: str | Path, cache_dir: str | Path | None = None) -> list[list[Path]]:
    """Per-video ordered frame paths found under root (JPEG layouts first, else decoded videos)."""
    root = Path(root)
    if not root.is_dir():
        raise FramesError(f"{root}: frames folder does not exist")
    davis = _davis_images_root(root)
    if davis is not None:
        videos = _sequence_folders(davis)
    else:
        videos = _sequence_folders(root)
        if not videos and _images_in(root):
            videos = [_images_in(root)]
    if not videos:
        cache = Path(cache_dir) if cache_dir is not None else root / ".segloop-frames"
        videos = [extract_video_frames(v, cache / v.stem) for v in _video_files(root)]
        videos = [frames for frames in videos if frames]
    if not videos:
        raise FramesError(f"{root}: no JPEG/PNG frames or videos found (expected JPEGImages/480p/<seq>/*.jpg, "
                          "sequence folders of images, or *.mp4 files)")
    return videos


def frame_key(path: Path, root: Path) -> str:
    """A stable key for a frame: its path relative to root (POSIX separators)."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()
