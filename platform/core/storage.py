"""Files under the data dir: safe names, paths that cannot escape, atomic writes and renames."""
from __future__ import annotations

import fcntl
import hashlib
import math
import os
import re
import shutil
import tempfile
import threading
import unicodedata
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MAX_NAME_LENGTH = 120


class StorageError(ValueError):
    """A path or file name that cannot be stored safely; the message names it and why."""


_TERMINATED = threading.Event()  # set by `interrupt_on_sigterm`


def safe_name(name: str) -> str:
    """A file-system-safe slug of a user-supplied name (no separators, no dot-only names)."""
    base = unicodedata.normalize("NFKC", name).replace("\\", "/").split("/")[-1]
    slug = re.sub(r"[^\w.\-]+", "_", base, flags=re.UNICODE)
    stem, dot, ext = slug.rpartition(".")
    if dot and stem and not stem.strip("._") and re.fullmatch(r"[^\W_]{1,9}", ext):
        slug = f"file.{ext}"  # a stem of symbols only (`🎬.mp4`) keeps its extension
    slug = slug.strip("._")
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


STAGING_PREFIX = ".tmp-"


def current_umask() -> int:
    """This process's umask (read from /proc where possible, so no other thread sees it change)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def chmod_for_umask(path: Path, directory: bool = False) -> None:
    """Give a file (0666) or folder (0777) made private by mkstemp/mkdtemp the permissions the umask allows."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def _locked(folder: Path, blocking: bool = True):
    """A context holding an exclusive flock on a folder; it yields False when non-blocking and already held."""
    return _flocked(os.open(folder, os.O_RDONLY), blocking)


@contextmanager
def _flocked(fd: int, blocking: bool) -> Iterator[bool]:
    """Hold an exclusive flock on an open file for the block, closing it after; yields False when non-blocking and
    already held."""
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@contextmanager
def exclusive_use(path: str | os.PathLike) -> Iterator[bool]:
    """Hold this machine's exclusive claim on `path` (a folder a run writes) for the block; yields False when another
    process holds it. The lock file lives in the system's temporary folder, so nothing is created at `path`."""
    key = hashlib.sha256(str(Path(path).resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    folder = Path(tempfile.gettempdir()) / "segloop-locks"
    folder.mkdir(mode=0o1777, exist_ok=True)
    with _flocked(os.open(folder / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o666), blocking=False) as mine:
        yield mine


@contextmanager
def staging_dir(parent: Path, name: str | None = None) -> Iterator[Path]:
    """A temporary folder `.tmp-<name or random>` next to its final place; removed unless it was renamed away.

    Its owner holds a lock on it while the block runs (the lock follows it through a rename), so
    `stale_staging_dirs` can tell a folder left by a killed process from one another process is filling.
    """
    parent.mkdir(parents=True, exist_ok=True)
    with _locked(parent):  # a cleaner scanning `parent` never sees this folder created but not yet locked
        if name is None:
            path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent))
        else:
            path = parent / f"{STAGING_PREFIX}{name}"
            path.mkdir()
        chmod_for_umask(path, directory=True)
        fd = os.open(path, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield path
    finally:
        try:
            if path.exists():
                shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def stale_staging_dirs(parent: Path) -> list[Path]:
    """`.tmp-*` folders under `parent` whose owner is gone (killed, crashed): no process holds their lock."""
    if not parent.is_dir():
        return []
    stale = []
    with _locked(parent):
        for path in sorted(parent.glob(f"{STAGING_PREFIX}*")):
            if not path.is_dir():
                continue
            with _locked(path, blocking=False) as free:
                if free:
                    stale.append(path)
    return stale


def remove_stale_staging(parent: Path) -> list[Path]:
    """Remove the `.tmp-*` folders under `parent` that no live process owns; returns them."""
    stale = stale_staging_dirs(parent)
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def interrupt_on_sigterm() -> None:
    """Handle SIGTERM like Ctrl-C (KeyboardInterrupt in the main thread), so staging folders and temporary
    files are removed on the way out instead of being left behind."""
    import signal
    import threading

    def on_sigterm(signum: int, _frame) -> None:
        _TERMINATED.set()
        raise KeyboardInterrupt(f"terminated (signal {signum})")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)


def terminated() -> bool:
    """Whether this process received SIGTERM (under `interrupt_on_sigterm`): what fails after it is the stop's doing."""
    return _TERMINATED.is_set()


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix if suffix is None else suffix, dir=path.parent)
    except OSError as exc:  # named after the file asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    os.close(fd)
    try:
        yield Path(tmp)
        chmod_for_umask(Path(tmp))
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


def read_torch_file(path: Path, what: str, error: type[Exception] = StorageError, *, weights_only: bool = True,
                    map_location: Any = "cpu") -> Any:
    """The object saved in a torch file; `error` naming the file and `what` it should hold when it cannot be read."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception:  # truncated or foreign files raise many kinds (zip, pickle, EOF, runtime errors)
        raise error(f"{path}: cannot read {what}: the file is truncated or not a PyTorch file") from None


def read_torch_dict(path: Path, map_location: Any = "cpu") -> dict:
    """A dict saved with torch.save (a training state to resume from, a head's losses); {} when it cannot be read."""
    try:
        state = read_torch_file(path, "saved state", weights_only=False, map_location=map_location)
    except StorageError:
        return {}
    return state if isinstance(state, dict) else {}


def write_json(path: Path, payload: Any) -> Path:
    """Write JSON atomically (parents created); returns the path."""
    import json

    path = Path(path)
    text = json.dumps(_finite(payload), indent=2, default=str, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())
    return path


def _finite(value: Any) -> Any:
    """`value` with every NaN or infinite float made null (JSON has no such numbers: readers reject the file)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
