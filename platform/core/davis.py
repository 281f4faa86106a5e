"""The DAVIS folder layout: `<root>/JPEGImages/<res>/<seq>/%05d.jpg` and `<root>/Annotations/<res>/<seq>/%05d.png`."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

IMAGES = "JPEGImages"
MASKS = "Annotations"
RESOLUTION = "480p"
FRAME_PATTERN = "{:05d}.jpg"
MASK_PATTERN = "{:05d}.png"


class DavisError(ValueError):
    """A folder that is not the DAVIS layout it should be; the message names the folder and what is missing."""


def frame_name(index: int) -> str:
    """File name of frame `index` of a sequence: 00012.jpg."""
    return FRAME_PATTERN.format(index)


def mask_name(index: int) -> str:
    """File name of the mask of frame `index`: 00012.png."""
    return MASK_PATTERN.format(index)


@dataclass(frozen=True)
class DavisLayout:
    """Where the frames and masks of a DAVIS root live, at one resolution."""

    root: Path
    resolution: str = RESOLUTION

    @property
    def images_dir(self) -> Path:
        """`<root>/JPEGImages/<res>`: one folder of frames per sequence."""
        return Path(self.root) / IMAGES / self.resolution

    @property
    def masks_dir(self) -> Path:
        """`<root>/Annotations/<res>`: one folder of masks per sequence."""
        return Path(self.root) / MASKS / self.resolution

    def frame_path(self, sequence: str, index: int) -> Path:
        """Path of one frame of a sequence."""
        return self.images_dir / sequence / frame_name(index)

    def mask_path(self, sequence: str, index: int) -> Path:
        """Path of the mask of one frame of a sequence."""
        return self.masks_dir / sequence / mask_name(index)

    def sequences(self) -> list[str]:
        """Names of the sequence folders that hold frames, sorted."""
        return list_sequences(self.images_dir, "*.jpg")

    def frames(self, sequence: str) -> list[Path]:
        """The frame files of a sequence, sorted."""
        return sorted((self.images_dir / sequence).glob("*.jpg"))

    def masks(self, sequence: str) -> list[Path]:
        """The mask files of a sequence, sorted."""
        return sorted((self.masks_dir / sequence).glob("*.png"))


def list_sequences(folder: str | os.PathLike, pattern: str = "*.png") -> list[str]:
    """Names of the sub-folders of `folder` that hold files matching `pattern`, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob(pattern)))


def is_davis_root(path: str | os.PathLike) -> bool:
    """Whether `path` holds a JPEGImages folder."""
    return (Path(path) / IMAGES).is_dir()


def resolutions(root: str | os.PathLike) -> list[str]:
    """The resolution folders of a DAVIS root's JPEGImages, sorted."""
    images = Path(root) / IMAGES
    return sorted(p.name for p in images.iterdir() if p.is_dir()) if images.is_dir() else []


def open_layout(root: str | os.PathLike, resolution: str | None = None) -> DavisLayout:
    """The layout of a DAVIS root at `resolution` (default 480p, else its first one); refuses a root without frames."""
    root = Path(root)
    if not is_davis_root(root):
        raise DavisError(f"{root / IMAGES}: missing (not a DAVIS-layout root)")
    found = resolutions(root)
    if not found:
        raise DavisError(f"{root / IMAGES}: DAVIS JPEGImages folder has no resolution folder (e.g. {RESOLUTION})")
    if resolution is None:
        resolution = RESOLUTION if RESOLUTION in found else found[0]
    layout = DavisLayout(root, resolution)
    if not layout.images_dir.is_dir():
        raise DavisError(f"{layout.images_dir}: missing (resolutions here: {', '.join(found)})")
    return layout


def masks_root(path: str | os.PathLike) -> Path:
    """A folder of `<seq>/%05d.png` mask folders: `<path>/Annotations/480p` for a DAVIS root, `<path>/480p` for a DAVIS
    root's Annotations folder, else `path` itself."""
    path = Path(path)
    davis = DavisLayout(path).masks_dir
    if davis.is_dir():
        return davis
    return path / RESOLUTION if list_sequences(path / RESOLUTION) and not list_sequences(path) else path
