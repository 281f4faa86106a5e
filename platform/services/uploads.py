"""Uploads from the web UI: store each file safely, unpack zip archives safely, queue one ingest job per file."""
from __future__ import annotations

import os
import re
import shutil
import stat
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from segloop.platform.core import davis
from segloop.platform.core.errors import user_message
from segloop.platform.core.settings import SHARED_SAMPLE, Settings, load_settings
from segloop.platform.core.storage import StorageError, check_upload_name, resolve_inside, save_upload, staging_dir
from segloop.platform.db.entities import JobInfo
from segloop.platform.db.stores import projects
from segloop.platform.media.ingest import VIDEO_EXTENSIONS, IngestError, discover
from segloop.platform.services import access
from segloop.platform.services.access import Actor
from segloop.platform.services.jobs import submit_job

ARCHIVE_EXTENSIONS = (".zip",)
UPLOAD_EXTENSIONS = VIDEO_EXTENSIONS + ARCHIVE_EXTENSIONS
IGNORED_ARCHIVE_PREFIXES = ("__MACOSX/",)


class UploadError(ValueError):
    """An uploaded file that cannot be ingested; the message names the file and the reason."""


@dataclass(frozen=True)
class UploadLimits:
    """Size limits for uploads (defaults fit a laptop; the UI passes the same upload limit to Streamlit)."""

    max_bytes: int = 1024**3
    max_archive_members: int = 20_000
    max_unpacked_bytes: int = 8 * 1024**3


@dataclass(frozen=True)
class IngestRequest:
    """What to ingest and how (the fields of an ingest job)."""

    project: str = projects.DEFAULT_PROJECT
    fps: float | None = None
    max_side: int | None = None


@dataclass(frozen=True)
class UploadOutcome:
    """One uploaded file: the queued job, or the reason it was refused."""

    name: str
    job_id: int | None = None
    path: str | None = None
    error: str | None = None


def upload_suffix(name: str) -> str:
    """The lower-case extension of an upload, or UploadError when it is not a video or a zip archive."""
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_EXTENSIONS:
        raise UploadError(f"{name}: unsupported file type {suffix or '(no extension)'}; "
                          f"upload videos ({', '.join(VIDEO_EXTENSIONS)}) or .zip archives of DAVIS-layout folders")
    return suffix


def store_upload(settings: Settings, name: str, data: bytes, limits: UploadLimits = UploadLimits()) -> Path:
    """Save an upload under the uploads dir; a zip is unpacked safely and the folder to ingest is returned."""
    suffix = upload_suffix(name)
    folder = settings.uploads_dir / uuid.uuid4().hex[:12]
    try:
        saved = save_upload(folder, name, data, limits.max_bytes)
        # One folder per upload keeps the file's own name, which becomes the video's name on ingest.
        named = folder / check_upload_name(name)
        os.replace(saved, named)
        if suffix not in ARCHIVE_EXTENSIONS:
            return named
        try:
            return unpack_archive(named, named.with_suffix(""), limits, display_name=name)
        finally:
            named.unlink(missing_ok=True)
    except UploadError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    except StorageError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise UploadError(str(exc)) from None
    except OSError as exc:  # a full disk, an uploads folder that cannot be written: the reason, not the path
        shutil.rmtree(folder, ignore_errors=True)
        raise UploadError(f"{name}: {user_message(exc)}") from None


def without_upload_folders(text: str, settings: Settings | None = None) -> str:
    """`text` with each upload's server folder (`<data dir>/uploads/<id>/`) left out, so messages about uploaded
    files name them as the person uploaded them."""
    uploads = (settings or load_settings()).uploads_dir
    for folder in {str(uploads), str(uploads.resolve())}:
        text = re.sub(re.escape(folder) + r"/[0-9a-f]{12}/", "", text)
    return text


def unpack_archive(archive: Path, target: Path, limits: UploadLimits = UploadLimits(), display_name: str = "") -> Path:
    """Extract a zip into `target` (all-or-nothing), refusing unsafe members; returns the folder to ingest."""
    name = display_name or archive.name
    try:
        bundle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise UploadError(f"{name}: not a readable zip archive ({exc})") from None
    except OSError as exc:
        raise UploadError(f"{name}: not a readable zip archive ({user_message(exc)})") from None
    with bundle:
        members = [m for m in bundle.infolist() if not m.filename.startswith(IGNORED_ARCHIVE_PREFIXES)]
        _check_members(name, members, limits)
        with staging_dir(target.parent) as staging:
            for member in members:
                _extract_member(bundle, member, staging, name)
            if target.exists():
                raise UploadError(f"{name}: its unpack folder already exists")
            os.replace(staging, target)
    root = _content_root(target)
    sources, errors = discover([root])
    if errors or not sources:
        shutil.rmtree(target, ignore_errors=True)
        reason = errors[0].message.replace(str(target.parent) + "/", "") if errors else "nothing to ingest"
        raise UploadError(f"{name}: archive holds no videos or DAVIS-layout frame folders ({reason})")
    return root


def _check_members(name: str, members: list[zipfile.ZipInfo], limits: UploadLimits) -> None:
    """UploadError for archives with escaping, linked or oversized members."""
    if not members:
        raise UploadError(f"{name}: the zip archive is empty")
    if len(members) > limits.max_archive_members:
        raise UploadError(f"{name}: {len(members)} archive members, at most {limits.max_archive_members} allowed")
    total = 0
    for member in members:
        path = member.filename
        parts = path.replace("\\", "/").split("/")
        if path.startswith(("/", "\\")) or ".." in parts or (len(path) > 1 and path[1] == ":") or "\x00" in path:
            raise UploadError(f"{name}: member {path!r} tries to escape the unpack folder (path traversal)")
        if stat.S_ISLNK(member.external_attr >> 16):
            raise UploadError(f"{name}: member {path!r} is a symbolic link; links are not accepted")
        total += member.file_size
    if total > limits.max_unpacked_bytes:
        raise UploadError(f"{name}: unpacks to {total} bytes, over the limit of {limits.max_unpacked_bytes} bytes")


def _extract_member(bundle: zipfile.ZipFile, member: zipfile.ZipInfo, root: Path, name: str) -> None:
    """Write one member below `root` (directories created, paths re-checked against escaping)."""
    parts = [p for p in member.filename.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts:
        return
    try:
        destination = resolve_inside(root, "/".join(parts))
    except StorageError as exc:
        raise UploadError(f"{name}: {exc}") from None
    if member.is_dir():
        destination.mkdir(parents=True, exist_ok=True)
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with bundle.open(member) as source, open(destination, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise UploadError(f"{name}: member {member.filename!r} is damaged ({exc})") from None
    except OSError as exc:
        raise UploadError(f"{name}: member {member.filename!r} could not be unpacked ({user_message(exc)})") from None


def _content_root(folder: Path) -> Path:
    """The folder itself, or its only subfolder when the archive wrapped everything in one folder."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and entries[0].name != davis.IMAGES:
        return entries[0]
    return folder


def submit_ingest(engine: Engine, paths: list[str], request: IngestRequest = IngestRequest(), *,
                  actor: Actor | None = None) -> JobInfo:
    """Queue an ingest job for the given paths into the request's project (created if new)."""
    if not paths:
        raise UploadError("ingest paths: enter at least one video file or folder")
    params: dict[str, Any] = {"paths": [str(p) for p in paths], "fps": request.fps, "max_side": request.max_side,
                              "project": projects.validate_project_name(request.project)}
    return submit_job(engine, "ingest", params, actor=actor)


def upload_and_queue(
    engine: Engine,
    settings: Settings,
    files: Iterable[tuple[str, bytes]],
    request: IngestRequest = IngestRequest(),
    limits: UploadLimits = UploadLimits(),
    *,
    actor: Actor | None = None,
) -> list[UploadOutcome]:
    """Store each uploaded (name, bytes) and queue one ingest job per file; bad files get an error each.

    `files` may be a generator, so only one upload's bytes need to be in memory at a time. Uploading is an
    admin's action.
    """
    access.require(engine, actor, "upload")
    projects.validate_project_name(request.project)
    outcomes = []
    for name, data in files:
        try:
            path = store_upload(settings, name, data, limits)
            job = submit_ingest(engine, [str(path.resolve())], request, actor=actor)
        except (UploadError, IngestError, ValueError) as exc:
            outcomes.append(UploadOutcome(name, error=str(exc)))
            continue
        outcomes.append(UploadOutcome(name, job.id, str(path)))
    return outcomes


def check_ingest_paths(paths: list[str]) -> list[str]:
    """The non-empty, stripped paths, or UploadError naming the first one that does not exist."""
    cleaned = [p.strip() for p in paths if p.strip()]
    if not cleaned:
        raise UploadError("ingest paths: enter at least one video file or folder")
    for path in cleaned:
        if not Path(path).expanduser().exists():
            raise UploadError(f"ingest paths: {path} does not exist")
    return [str(Path(p).expanduser()) for p in cleaned]


def default_ingest_paths(settings: Settings) -> list[str]:
    """Footage that exists here to prefill the ingest form: the shared sample's videos, synthetic demo
    footage, or the uploads folder."""
    candidates = [SHARED_SAMPLE / "videos", settings.data_dir / "synth" / "videos", settings.uploads_dir]
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.iterdir()):
            return [str(candidate.resolve())]
    return []
