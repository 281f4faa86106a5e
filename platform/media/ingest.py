"""Ingest footage: videos (decord, batched) or DAVIS-layout frame folders → stored frames + DB rows.

Every input is all-or-nothing: frames are written to a staging folder, rows are inserted in one
transaction, and the folder is renamed into place just before the commit. Re-ingesting the same
content into a project is a no-op (content sha256).
"""
from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy.exc import DBAPIError

from segloop.platform.core import davis
from segloop.platform.core.image import read_rgb
from segloop.platform.core.masks import MaskError, read_mask
from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.core.storage import (
    STAGING_PREFIX,
    new_storage_key,
    relative_to_data,
    staging_dir,
    stale_staging_dirs,
)
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.entities import NewFrame, NewVideo
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, projects

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
FRAME_FOLDER_FPS = 24.0  # DAVIS sequences are 24 fps; frame folders carry no rate of their own
HASH_CHUNK = 1 << 20
ENCODE_THREADS = 2  # OpenCV releases the GIL while resizing and encoding

ProgressCallback = Callable[[str, int, int], None]


class IngestError(ValueError):
    """An input that cannot be ingested; the message names the file and the reason."""


@dataclass(frozen=True)
class IngestOptions:
    """How to ingest: target project, sampling, resizing and storage settings."""

    project: str = projects.DEFAULT_PROJECT
    fps: float | None = None
    max_side: int | None = None
    masks: Path | None = None
    batch_size: int = 16
    jpeg_quality: int = 90
    thumb_side: int = 160
    dup_max_bits: int = 5
    max_pixels: int = 7680 * 4320  # refuse frames above 8K: decoding is bounded in memory per batch


@dataclass(frozen=True)
class Source:
    """One future video: a video file, or a folder of frame images (with optional masks)."""

    name: str
    kind: str  # video | frames
    path: Path
    frame_files: tuple[Path, ...] = ()
    mask_dir: Path | None = None


@dataclass
class Outcome:
    """What happened to one input."""

    source: str
    status: str  # ingested | skipped | failed
    message: str = ""
    video_id: int | None = None
    frames: int = 0
    annotations: int = 0


@dataclass
class IngestReport:
    """The result of one ingest call."""

    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[Outcome]:
        """Inputs that could not be ingested."""
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def frames(self) -> int:
        """Frames stored by this call."""
        return sum(o.frames for o in self.outcomes if o.status == "ingested")

    @property
    def annotations(self) -> int:
        """Masks imported by this call."""
        return sum(o.annotations for o in self.outcomes if o.status == "ingested")


def discover(paths: list[str | Path], masks: Path | None = None) -> tuple[list[Source], list[Outcome]]:
    """Sources found under the given paths, and failures for paths that hold nothing usable."""
    sources: list[Source] = []
    errors: list[Outcome] = []
    for raw in paths:
        if isinstance(raw, str) and not raw.strip():
            errors.append(Outcome(repr(raw), "failed", f"{raw!r}: empty path (give a video file or a folder)"))
            continue
        path = Path(raw)
        try:
            found = _discover_one(path)
        except (IngestError, OSError) as exc:
            errors.append(Outcome(str(path), "failed", str(exc)))
            continue
        sources.extend(found)
    if masks is not None:
        folder = davis.masks_root(masks) if Path(masks).is_dir() else Path(masks)  # a DAVIS root or its Annotations
        sources = [_with_masks(source, folder, single=len(sources) == 1) for source in sources]
        _check_masks_matched(folder, sources)
    return sources, errors


def _check_masks_matched(masks: Path, sources: list[Source]) -> None:
    """IngestError when a mask folder was given but is not a folder or matches none of the inputs."""
    if not masks.is_dir():
        raise IngestError(f"masks: {masks} is not a folder (expected {masks}/<video name>/*.png)")
    if sources and not any(source.mask_dir for source in sources):
        raise IngestError(f"masks: {masks} holds no folder named after an input (expected e.g. "
                          f"{masks / sources[0].name}/00000.png); nothing was ingested")


def _discover_one(path: Path) -> list[Source]:
    """Sources of one command-line path."""
    if not path.exists():
        raise IngestError(f"{path}: does not exist")
    if path.is_file():
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            raise IngestError(
                f"{path}: not a video file (extension {path.suffix or 'none'}; expected {', '.join(VIDEO_EXTENSIONS)})"
            )
        return [Source(video_name(path.stem), "video", path)]
    if not path.is_dir():
        raise IngestError(f"{path}: neither a file nor a folder")
    davis = _davis_frames_root(path)
    if davis is not None:
        return _davis_sources(*davis)
    images = _image_files(path)
    if images:
        return [Source(path.name, "frames", path, tuple(images))]
    videos = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos and any(_image_files(p) for p in path.iterdir() if p.is_dir()):
        return _davis_sources(path, None)
    if not videos:
        raise IngestError(f"{path}: folder holds no videos ({', '.join(VIDEO_EXTENSIONS)}) and no frame images")
    return [Source(video_name(p.stem), "video", p) for p in videos]


def video_name(stem: str) -> str:
    """The name a video gets from its file name; 'video' for a name of only dots or spaces (it is also a folder
    name in DAVIS exports, where '..' would leave the export)."""
    return stem if stem.strip(". ") else "video"


def _davis_frames_root(path: Path) -> tuple[Path, Path | None] | None:
    """(JPEGImages/<res>, Annotations/<res> or None) when `path` is a DAVIS root or its JPEGImages."""
    if not davis.is_davis_root(path) and path.name == davis.IMAGES:
        path = path.parent
    if not davis.is_davis_root(path):
        return None
    try:
        layout = davis.open_layout(path)
    except davis.DavisError as exc:
        raise IngestError(str(exc)) from None
    return layout.images_dir, layout.masks_dir if layout.masks_dir.is_dir() else None


def _davis_sources(frames_root: Path, annotations_root: Path | None) -> list[Source]:
    """One frames source per sequence folder of a DAVIS root."""
    sources = []
    for seq in sorted(p for p in frames_root.iterdir() if p.is_dir()):
        images = _image_files(seq)
        if not images:
            raise IngestError(f"{seq}: sequence folder has no frame images")
        mask_dir = annotations_root / seq.name if annotations_root and (annotations_root / seq.name).is_dir() else None
        sources.append(Source(seq.name, "frames", seq, tuple(images), mask_dir))
    return sources


def _image_files(folder: Path) -> list[Path]:
    """Frame images directly inside a folder, in name order."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _with_masks(source: Source, masks: Path, single: bool) -> Source:
    """Attach `--masks`: `masks/<name>/` per source, or `masks` itself for a single input."""
    candidate = masks / source.name
    if candidate.is_dir():
        return Source(source.name, source.kind, source.path, source.frame_files, candidate)
    if single and masks.is_dir() and any(p.suffix.lower() == ".png" for p in masks.iterdir()):
        return Source(source.name, source.kind, source.path, source.frame_files, masks)
    return source


def content_sha256(source: Source) -> str:
    """Hash of the input's content: the video bytes, or the frame files' names and bytes."""
    digest = hashlib.sha256()
    files = [source.path] if source.kind == "video" else list(source.frame_files)
    for file in files:
        if source.kind == "frames":
            digest.update(file.name.encode())
        with open(file, "rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


class _FrameReader:
    """Uniform batched access to a video file (decord) or a frame folder (OpenCV)."""

    def __init__(self, source: Source):
        self.source = source
        self.codec: str | None = None
        self.duration: float | None = None
        if source.kind == "video":
            self._open_video()
        else:
            self._open_frames()

    def _open_video(self) -> None:
        """Open with decord; probe codec and duration with PyAV."""
        path = self.source.path
        size = path.stat().st_size
        if size == 0:
            raise IngestError(f"{path}: empty file (0 bytes)")
        import decord

        try:
            self._reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=2)
        except Exception:  # decord raises DECORDError or RuntimeError for any unusable container
            raise IngestError(f"{path}: {diagnose_unreadable(path)}") from None
        self.count = len(self._reader)
        if self.count == 0:
            raise IngestError(f"{path}: video has no frames")
        self.codec, declared = _probe_stream(path)
        if declared and self.count < declared:
            raise IngestError(
                f"{path}: truncated video: the container declares {declared} frames but only {self.count} are present"
            )
        self.fps = float(self._reader.get_avg_fps())
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise IngestError(f"{path}: invalid frame rate {self.fps}")
        first = self._reader[0].shape
        self.height, self.width = int(first[0]), int(first[1])
        self.duration = self.count / self.fps

    def _open_frames(self) -> None:
        """Check the frame folder's first image for the size."""
        self.fps = FRAME_FOLDER_FPS
        self.count = len(self.source.frame_files)
        first = read_rgb(self.source.frame_files[0], error=IngestError)
        self.height, self.width = first.shape[:2]
        self.duration = self.count / self.fps

    def read(self, indices: list[int]) -> np.ndarray:
        """RGB frames (B, H, W, 3) for source frame indices."""
        if self.source.kind == "video":
            try:
                batch = self._reader.get_batch(indices).asnumpy()
            except Exception as exc:
                raise IngestError(
                    f"{self.source.path}: decoding failed at frames {indices[0]}..{indices[-1]} "
                    f"(truncated or corrupt: {_first_line(exc)})"
                ) from None
            return batch
        frames = [read_rgb(self.source.frame_files[i], error=IngestError) for i in indices]
        for i, frame in zip(indices, frames):
            if frame.shape[:2] != (self.height, self.width):
                raise IngestError(
                    f"{self.source.frame_files[i]}: frame is {frame.shape[1]}x{frame.shape[0]}, "
                    f"the sequence is {self.width}x{self.height}"
                )
        return np.stack(frames)


def _first_line(exc: BaseException) -> str:
    """The first meaningful line of an exception message (decord's are long C++ traces)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else "no reason given")[:300]


def _probe_stream(path: Path) -> tuple[str | None, int]:
    """(codec name, frame count the container declares or 0) via PyAV; (None, 0) if it cannot tell."""
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return stream.codec_context.name, int(stream.frames or 0)
    except Exception:  # probing is best-effort metadata; decoding is already proven by decord
        return None, 0


CONTAINER_SIGNATURES = (
    (4, (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot", b"uuid"), "MP4/MOV"),
    (0, (b"\x1a\x45\xdf\xa3",), "Matroska/WebM"),
    (0, (b"RIFF",), "AVI"),
)


def container_name(path: Path) -> str | None:
    """The video container a file's first bytes announce (MP4/MOV, Matroska/WebM, AVI), or None."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    for offset, magics, name in CONTAINER_SIGNATURES:
        if head[offset : offset + 4] in magics:
            return name
    return None


NOT_A_VIDEO = "not a video: the content is not a recognised video container"


def diagnose_unreadable(path: Path) -> str:
    """Why a file that the decoder refused is unusable: a damaged known container, or not a video at all."""
    name = container_name(path)
    if name is not None:
        return f"truncated or corrupt {name} file: the decoder cannot read its index or streams"
    return NOT_A_VIDEO


def sniff_source(source: Source) -> None:
    """IngestError for a video file that is empty or not a video container, read from its first bytes only
    (before hashing, so a huge non-video is refused at once)."""
    if source.kind != "video":
        return
    if source.path.stat().st_size == 0:
        raise IngestError(f"{source.path}: empty file (0 bytes)")
    if container_name(source.path) is None:
        raise IngestError(f"{source.path}: {NOT_A_VIDEO}")


def sample_indices(count: int, source_fps: float, target_fps: float | None) -> list[int]:
    """Source frame indices to keep: all, or evenly sampled at `target_fps`."""
    if target_fps is not None and (not np.isfinite(target_fps) or target_fps <= 0):
        raise IngestError(f"--fps must be a positive number, got {target_fps}")
    if target_fps is None or target_fps >= source_fps:
        return list(range(count))
    times = np.arange(0.0, count / source_fps, 1.0 / target_fps)
    indices = np.unique(np.minimum(np.round(times * source_fps).astype(int), count - 1))
    return indices.tolist()


def stored_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) after limiting the longer side to `max_side`."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def dhash64(rgb: np.ndarray) -> int:
    """64-bit difference hash of an image, as a signed int64 (for near-duplicate grouping)."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).reshape(-1)
    value = int(np.packbits(bits).view(">u8")[0])
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming64(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes."""
    return ((a ^ b) & 0xFFFFFFFFFFFFFFFF).bit_count()


def group_near_duplicates(hashes: list[int], max_bits: int) -> list[int]:
    """Group ids for consecutive frames whose hash stays within `max_bits` of the group's first."""
    groups: list[int] = []
    group, anchor = -1, None
    for value in hashes:
        if anchor is None or hamming64(value, anchor) > max_bits:
            group += 1
            anchor = value
        groups.append(group)
    return groups


def _load_masks(source: Source, indices: list[int], reader: _FrameReader, size: tuple[int, int]) -> list[np.ndarray]:
    """Label maps for the kept frames from the source's mask folder, checked against the frames."""
    assert source.mask_dir is not None
    files = sorted(p for p in source.mask_dir.iterdir() if p.suffix.lower() == ".png")
    if len(files) != reader.count:
        raise IngestError(
            f"{source.mask_dir}: {len(files)} mask files for {reader.count} frames of {source.path}; counts must match"
        )
    masks = []
    for i in indices:
        try:
            labels = read_mask(files[i])
        except MaskError as exc:
            raise IngestError(str(exc)) from None
        if labels.shape != (reader.height, reader.width):
            raise IngestError(
                f"{files[i]}: mask is {labels.shape[1]}x{labels.shape[0]}, frames are {reader.width}x{reader.height}"
            )
        if size != (reader.width, reader.height):
            labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
        masks.append(labels)
    return masks


def _write_frames(
    reader: _FrameReader,
    indices: list[int],
    out_dir: Path,
    options: IngestOptions,
    size: tuple[int, int],
    progress: ProgressCallback | None,
) -> list[int]:
    """Decode in batches, write frame and thumbnail JPEGs (encoded on a thread pool); returns the hashes."""
    (out_dir / "thumbs").mkdir(parents=True)
    thumb_size = stored_size(*size, options.thumb_side)
    params = [cv2.IMWRITE_JPEG_QUALITY, options.jpeg_quality]

    def store(position: int, rgb: np.ndarray) -> int:
        if size != (rgb.shape[1], rgb.shape[0]):
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        _write_jpeg(out_dir / f"{position:05d}.jpg", bgr, params)
        thumb = cv2.resize(bgr, thumb_size, interpolation=cv2.INTER_AREA)
        _write_jpeg(out_dir / "thumbs" / f"{position:05d}.jpg", thumb, params)
        return dhash64(rgb)

    hashes: list[int] = []
    with ThreadPoolExecutor(max_workers=ENCODE_THREADS) as pool:
        for start in range(0, len(indices), options.batch_size):
            batch = reader.read(indices[start : start + options.batch_size])
            hashes.extend(pool.map(store, range(start, start + len(batch)), batch))
            if progress:
                progress(reader.source.name, len(hashes), len(indices))
    return hashes


def _write_jpeg(path: Path, bgr: np.ndarray, params: list[int]) -> None:
    """Encode and write one JPEG, raising with the path on failure."""
    ok, encoded = cv2.imencode(".jpg", bgr, params)
    if not ok:
        raise IngestError(f"{path}: JPEG encoding failed")
    path.write_bytes(encoded.tobytes())


def ingest_source(
    source: Source, options: IngestOptions, settings: Settings, progress: ProgressCallback | None = None
) -> Outcome:
    """Ingest one source all-or-nothing; returns what happened (never raises IngestError)."""
    try:
        sniff_source(source)
        sha = content_sha256(source)
    except IngestError as exc:
        return Outcome(str(source.path), "failed", str(exc))
    except OSError as exc:
        return Outcome(str(source.path), "failed", f"{source.path}: unreadable ({exc.strerror or exc})")
    existing = _already_ingested(settings, options.project, sha)
    if existing is not None:
        return existing.as_outcome(source)
    try:
        return _ingest_new(source, sha, options, settings, progress)
    except IngestError as exc:
        return Outcome(str(source.path), "failed", str(exc))
    except DBAPIError as exc:  # e.g. another process stored the same content between the check and the commit
        existing = _already_ingested(settings, options.project, sha)
        if existing is not None:
            return existing.as_outcome(source)
        reason = next((line for line in str(exc.orig).splitlines() if line.strip()), "refused")
        return Outcome(str(source.path), "failed", f"{source.path}: the database refused it ({reason}); "
                       f"nothing was stored, run the ingest again")
    except OSError as exc:
        return Outcome(str(source.path), "failed", f"{exc.filename or source.path}: {exc.strerror or exc}")


@dataclass(frozen=True)
class _Existing:
    """A video of the project that already holds an input's content."""

    video_id: int
    name: str

    def as_outcome(self, source: Source) -> Outcome:
        """The 'skipped' outcome for `source`."""
        return Outcome(str(source.path), "skipped", f"already ingested as video {self.video_id} ({self.name})",
                       self.video_id)


def _already_ingested(settings: Settings, project: str, sha: str) -> _Existing | None:
    """The project's video with this content, if any (a missing project has none; nothing is created)."""
    with session_scope(get_engine(settings)) as session:
        info = projects.find_project(session, project)
        found = None if info is None else footage.find_video_by_hash(session, info.id, sha)
    return None if found is None else _Existing(found.id, found.name)


def _ingest_new(
    source: Source, sha: str, options: IngestOptions, settings: Settings, progress: ProgressCallback | None,
) -> Outcome:
    """Decode, store and record a source that is not in the project yet.

    Frames go to a staging folder `.tmp-<key>`; the project, video, frames and masks are committed in
    one transaction, and only then is the folder renamed to `<key>`. A process killed before the commit
    leaves a staging folder without a row (removed by the next ingest); killed between commit and rename,
    one whose row exists (renamed into place by the next ingest). See `clean_stale_staging`.
    """
    reader = _FrameReader(source)
    if reader.width * reader.height > options.max_pixels:
        raise IngestError(
            f"{source.path}: {reader.width}x{reader.height} frames exceed the limit of {options.max_pixels} pixels"
        )
    indices = sample_indices(reader.count, reader.fps, options.fps)
    size = stored_size(reader.width, reader.height, options.max_side)
    masks = _load_masks(source, indices, reader, size) if source.mask_dir else None
    frames_root = settings.frames_dir
    key = new_storage_key(source.name)
    with staging_dir(frames_root, key) as staging:
        hashes = _write_frames(reader, indices, staging, options, size, progress)
        groups = group_near_duplicates(hashes, options.dup_max_bits)
        sample_fps = None if options.fps is None or options.fps >= reader.fps else options.fps
        rel_dir = f"{relative_to_data(settings.data_dir, frames_root)}/{key}"
        new_video = NewVideo(
            name=source.name, source_path=str(source.path.resolve()), source_kind=source.kind, sha256=sha,
            fps=reader.fps, sample_fps=sample_fps, source_frame_count=reader.count, width=reader.width,
            height=reader.height, stored_width=size[0], stored_height=size[1], duration=reader.duration,
            codec=reader.codec if source.kind == "video" else "jpeg", storage_dir=rel_dir,
            frames=[
                NewFrame(index=pos, source_index=src, timestamp=src / reader.fps,
                         image_path=f"{rel_dir}/{pos:05d}.jpg", thumb_path=f"{rel_dir}/thumbs/{pos:05d}.jpg",
                         phash=hashes[pos], dup_group=groups[pos])
                for pos, src in enumerate(indices)
            ],
        )
        with session_scope(get_engine(settings)) as session:
            project = projects.get_or_create_project(session, options.project)
            new_video.name = footage.unique_video_name(session, project.id, source.name)
            video = footage.add_video(session, project.id, new_video)
            annotation_count = 0
            if masks is not None:
                annotation_count = _add_masks(session, project.id, video.id, masks)
        _move_into_place(staging, frames_root / key, settings, video.id)
    return Outcome(str(source.path), "ingested", f"{len(indices)} frames", video.id, len(indices), annotation_count)


def _move_into_place(staging: Path, final_dir: Path, settings: Settings, video_id: int) -> None:
    """Rename a committed video's staging folder to its final name; if that fails, remove the video's rows
    again so that no row points at a missing folder."""
    try:
        staging.rename(final_dir)
    except OSError:
        with session_scope(get_engine(settings)) as session:
            footage.delete_video(session, video_id)
        raise


def clean_stale_staging(settings: Settings) -> tuple[int, int]:
    """Finish or remove staging folders that killed ingests left under frames/: (renamed into place, removed).

    A folder whose video row was committed is renamed to its final name; any other is removed. Folders a
    live process is still filling are left alone (see `storage.stale_staging_dirs`).
    """
    stale = stale_staging_dirs(settings.frames_dir)
    if not stale:
        return 0, 0
    rel_root = relative_to_data(settings.data_dir, settings.frames_dir)
    with session_scope(get_engine(settings)) as session:
        committed = footage.existing_storage_dirs(session, [f"{rel_root}/{p.name[len(STAGING_PREFIX):]}"
                                                            for p in stale])
    renamed = removed = 0
    for path in stale:
        final = settings.frames_dir / path.name[len(STAGING_PREFIX):]
        if f"{rel_root}/{final.name}" in committed and not final.exists():
            path.rename(final)
            renamed += 1
        else:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return renamed, removed


def _add_masks(session, project_id: int, video_id: int, masks: list[np.ndarray]) -> int:
    """Import label maps as first-version annotations (one per object per frame)."""
    label_class = projects.get_or_create_label_class(session, project_id, "object")
    frames = footage.list_frames(session, video_id)
    items = []
    for frame, labels in zip(frames, masks):
        for object_id in np.unique(labels):
            if object_id == 0:
                continue
            items.append((frame.id, int(object_id), labels == object_id))
    return annotation_store.add_imported_masks(session, items, class_id=label_class.id)


def ingest_paths(
    paths: list[str | Path],
    options: IngestOptions = IngestOptions(),
    settings: Settings | None = None,
    progress: ProgressCallback | None = None,
) -> IngestReport:
    """Ingest every input under `paths`; failures are reported per input, the rest still ingested."""
    settings = settings or load_settings()
    started = time.perf_counter()
    clean_stale_staging(settings)
    sources, errors = discover(paths, options.masks)
    report = IngestReport(outcomes=list(errors))
    for source in sources:
        report.outcomes.append(ingest_source(source, options, settings, progress))
    report.seconds = time.perf_counter() - started
    return report
