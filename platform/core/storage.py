"""Files under the data dir: safe names, paths that cannot escape, atomic writes and renames."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import unicodedata
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MAX_NAME_LENGTH = 120


class StorageError(ValueError):
    """A path or file name that cannot be stored safely; the message names it and why."""


def safe_name(name: str) -> str:
    """A file-system-safe slug of a user-supplied name (no separators, no dot-only names)."""
    base = unicodedata.normalize("NFKC", name).replace("\\", "/").split("/")[-1]
    slug = re.sub(r"[^\w.\-]+", "_", base, flags=re.UNICODE).strip("._")
    if not slug:
        raise StorageError(f"{name!r}: file name has no usable characters")
    if len(slug) > MAX_NAME_LENGTH:
        stem, dot, ext = slug.rpartition(".")
        keep = MAX_NAME_LENGTH - len(ext) - 1 if dot and len(ext) < 10 else MAX_NAME_LENGTH
        slug = (stem[:keep] + "." + ext) if dot and len(ext) < 10 else slug[:keep]
    return slug


def check_upload_name(name: str) -> str:
    """Refuse an uploaded file name that tries to leave its folder; returns the safe name."""
    parts = re.split(r"[\\/]", name)
    if any(part == ".." for part in parts) or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise StorageError(f"{name!r}: file name tries to escape the upload folder")
    if "\x00" in name:
        raise StorageError(f"{name!r}: file name contains a NUL byte")
    return safe_name(name)


def resolve_inside(root: Path, relative: str | os.PathLike) -> Path:
    """`root / relative`, refusing anything that resolves outside `root`."""
    root_resolved = Path(root).resolve()
    target = (root_resolved / relative).resolve()
    if target != root_resolved and root_resolved not in target.parents:
        raise StorageError(f"{relative}: path escapes the data dir {root_resolved}")
    return target


def relative_to_data(data_dir: Path, path: Path) -> str:
    """Path of a stored file relative to the data dir, with forward slashes."""
    return Path(path).resolve().relative_to(Path(data_dir).resolve()).as_posix()


@contextmanager
def staging_dir(parent: Path) -> Iterator[Path]:
    """A temporary folder next to its final place; removed unless it was renamed away."""
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=".tmp-", dir=parent))
    try:
        yield path
    finally:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)


def new_storage_key(name: str) -> str:
    """A unique folder name for a stored video: its safe name (or 'video') plus a short random id."""
    try:
        base = safe_name(name)[:60]
    except StorageError:
        base = "video"
    return f"{base}-{uuid.uuid4().hex[:10]}"


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path next to `path` for a writer to fill; renamed over `path` when the block ends
    normally, removed when it raises. The temporary name ends like `path` (writers that pick a format
    by extension, e.g. np.save or cv2.imwrite, keep working) unless `suffix` says otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix if suffix is None else suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see either the old or the complete new content."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def save_upload(uploads_dir: Path, name: str, data: bytes, max_bytes: int) -> Path:
    """Store an uploaded file under a safe, unique name inside the uploads folder."""
    safe = check_upload_name(name)
    if len(data) > max_bytes:
        raise StorageError(f"{name!r}: {len(data)} bytes is over the upload limit of {max_bytes} bytes")
    target = resolve_inside(uploads_dir, f"{uuid.uuid4().hex[:8]}-{safe}")
    atomic_write_bytes(target, data)
    return target


def write_json(path: Path, payload: Any) -> Path:
    """Write JSON atomically (parents created); returns the path."""
    import json

    path = Path(path)
    atomic_write_bytes(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())
    return path
