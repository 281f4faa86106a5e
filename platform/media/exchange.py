"""Annotation export and import: DAVIS palette-PNG layout and COCO JSON with RLE masks."""
from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segloop.platform.core.davis import MASKS, RESOLUTION, DavisLayout, frame_name, masks_root
from segloop.platform.core.errors import ValidationError
from segloop.platform.core.masks import MaskError, decode_rle, encode_rle, read_mask, rle_shape, write_mask
from segloop.platform.core.names import LABEL_CLASS_NAME_MAX, check_name, shown, value_kind
from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.core.storage import (
    atomic_write_bytes,
    chmod_for_umask,
    remove_stale_staging,
    resolve_inside,
    staging_dir,
)
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.entities import VideoInfo
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, projects

FORMATS = ("davis", "coco")
COCO_MAX_BYTES = 512 * 1024 * 1024  # a COCO file is parsed in memory (about 10x its size)
DEFAULT_CLASS = "object"  # the class of an imported object whose file gives none


class ExchangeError(ValueError):
    """An export target or import file that cannot be used; the message names it and why."""


@dataclass
class ExchangeReport:
    """How many videos, frames and masks were exported or imported."""

    videos: int = 0
    frames: int = 0
    masks: int = 0
    unchanged: int = 0  # imported masks identical to the object's newest version, left as they are
    overlapping: int = 0  # exported DAVIS frames whose objects overlap (one id per pixel: the higher id is kept)


def export_project(project: str, fmt: str, out: Path | str, settings: Settings | None = None) -> ExchangeReport:
    """Write a project's newest annotations as DAVIS (a full DAVIS root) or COCO JSON."""
    settings = settings or load_settings()
    if fmt not in FORMATS:
        raise ExchangeError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if not str(out).strip():
        raise ExchangeError("OUT: must not be empty; give the folder (or .json file) to export to")
    out = Path(out)
    with session_scope(get_engine(settings), snapshot=True) as session:
        info = projects.get_project(session, project)
        classes = projects.list_label_classes(session, info.id)
        videos = footage.list_videos(session, info.id)
        content = [(v, footage.list_frames(session, v.id), annotation_store.latest_annotations_for_video(session, v.id))
                   for v in videos]
    created = not out.exists()
    try:
        if fmt == "davis":
            return _export_davis(content, _davis_target(out), settings)
        return _export_coco(info.name, classes, content, _coco_target(out))
    except OSError as exc:
        raise ExchangeError(f"{out}: cannot write the export ({_write_failure(out, exc)})") from None
    finally:
        if created and out.is_dir() and not any(out.iterdir()):  # a failed export leaves no empty folder behind
            out.rmdir()


def _write_failure(out: Path, exc: OSError) -> str:
    """Why the export could not be written to `out`: a file where a folder must be, else the system's reason."""
    blocking = next((parent for parent in out.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        return f"{blocking} is a file, not a folder"
    return (exc.strerror or "refused by the system").lower()


def _davis_target(out: Path) -> Path:
    """`out` as a DAVIS export folder: refused when it exists as something other than a folder."""
    if out.exists() and not out.is_dir():
        raise ExchangeError(f"{out}: exists and is not a folder; a DAVIS export needs a new or existing folder")
    return out


def _coco_target(out: Path) -> Path:
    """The COCO file to write: `out` itself when it ends in .json, else `out/annotations.json`."""
    if out.suffix.lower() == ".json":
        if out.is_dir():
            raise ExchangeError(f"{out}: is a folder; give a new .json file name or a folder without the .json ending")
        return out
    if out.exists() and not out.is_dir():
        raise ExchangeError(f"{out}: exists and is not a folder; give a .json file name or a folder for the export")
    return out / "annotations.json"


def _folder_name(video) -> str:
    """A video's folder name in a DAVIS export: its name, or video-<id> when the name is not a plain folder name."""
    name = video.name
    return name if name.strip(". ") and "/" not in name and "\\" not in name else f"video-{video.id}"


def _export_davis(content, out: Path, settings: Settings) -> ExchangeReport:
    """DAVIS root: JPEGImages/480p/<video>/%05d.jpg and Annotations/480p/<video>/%05d.png (palette)."""
    report = ExchangeReport()
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    with staging_dir(out) as staging:
        staged = DavisLayout(staging)
        for video, frames, video_annotations in content:
            by_frame: dict[int, list] = {}
            for annotation in video_annotations:
                by_frame.setdefault(annotation.frame_id, []).append(annotation)
            folder = _folder_name(video)
            (staged.images_dir / folder).mkdir(parents=True)
            (staged.masks_dir / folder).mkdir(parents=True)  # every video has its masks folder, empty or not
            for frame in frames:
                _copy_frame(settings, video, frame, staged.frame_path(folder, frame.index))
                if frame.id in by_frame:
                    labels = annotation_store.label_map(by_frame[frame.id], video.stored_height, video.stored_width)
                    write_mask(staged.mask_path(folder, frame.index), labels, style="palette")
                    report.masks += len(by_frame[frame.id])
                    report.overlapping += _overlaps(by_frame[frame.id], labels)
            report.videos += 1
            report.frames += len(frames)
        final = DavisLayout(out)
        for staged_dir, final_dir in ((staged.images_dir, final.images_dir), (staged.masks_dir, final.masks_dir)):
            for seq in sorted(staged_dir.glob("*")) if staged_dir.exists() else []:
                target = final_dir / seq.name
                _make_dirs(target.parent, out)
                if target.exists():
                    shutil.rmtree(target)
                seq.replace(target)
    return report


def _copy_frame(settings: Settings, video, frame, target: Path) -> None:
    """Copy a stored frame image into the export; ExchangeError naming the frame when the data dir lost it."""
    source = resolve_inside(settings.data_dir, frame.image_path)
    if not source.is_file():
        raise ExchangeError(f"video {video.name} frame {frame.index}: its stored image is missing from the data "
                            "folder; ingest the video again to restore it")
    shutil.copyfile(source, target)
    chmod_for_umask(target)


def _overlaps(annotations: list, labels: np.ndarray) -> int:
    """1 when the frame's objects overlap (the label map then keeps the higher id where they do), else 0."""
    return int(sum(a.area for a in annotations) > int(np.count_nonzero(labels)))


def overlap_note(report: ExchangeReport) -> str | None:
    """What a person should know about an export whose objects overlapped (None when none did)."""
    if not report.overlapping:
        return None
    return (f"on {report.overlapping} frame(s) objects overlap; a DAVIS mask holds one object per pixel, so the "
            "higher object id was kept there (the COCO export keeps every mask whole)")


def _export_coco(project: str, classes, content, out: Path) -> ExchangeReport:
    """COCO JSON: images = frames, annotations = object masks as compressed RLE, plus video/track ids."""
    report = ExchangeReport()
    categories = [{"id": c.id, "name": c.name, "color": c.color} for c in classes] or [{"id": 1, "name": "object"}]
    default_category = categories[0]["id"]
    images, items = [], []
    for video, frames, video_annotations in content:
        frame_by_id = {f.id: f for f in frames}
        for frame in frames:
            images.append({"id": frame.id, "file_name": f"{video.name}/{frame_name(frame.index)}",
                           "width": video.stored_width, "height": video.stored_height, "video": video.name,
                           "frame_index": frame.index})
        for annotation in video_annotations:
            mask = annotation_store.annotation_mask(annotation)
            ys, xs = np.nonzero(mask)
            bbox = ([int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
                    if xs.size else [0, 0, 0, 0])
            attributes = {"source": annotation.source, "status": annotation.status, "version": annotation.version,
                          "frame_index": frame_by_id[annotation.frame_id].index}
            items.append({"id": annotation.id, "image_id": annotation.frame_id,
                          "category_id": annotation.class_id or default_category,
                          "segmentation": encode_rle(mask), "area": annotation.area, "bbox": bbox, "iscrowd": 0,
                          "track_id": annotation.object_id, "attributes": attributes})
            report.masks += 1
        report.videos += 1
        report.frames += len(frames)
    payload = {"info": {"description": f"segloop export of project {project}"}, "images": images,
               "annotations": items, "categories": categories}
    atomic_write_bytes(out, json.dumps(payload).encode())
    return report


def import_annotations(project: str, fmt: str, source: Path, settings: Settings | None = None,
                       author: str = "import", max_bytes: int = COCO_MAX_BYTES) -> ExchangeReport:
    """Import DAVIS masks or COCO RLE annotations onto the project's frames as new versions, all-or-nothing;
    a mask identical to the object's newest version (same class) is left as it is, so re-importing is a no-op."""
    settings = settings or load_settings()
    if fmt not in FORMATS:
        raise ExchangeError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    source = Path(source)
    if not source.exists():
        raise ExchangeError(f"{source}: does not exist")
    engine = get_engine(settings)
    with session_scope(engine) as session:
        info = projects.get_project(session, project)
        videos = footage.list_videos(session, info.id)
    items = _davis_items(source, videos) if fmt == "davis" else _coco_items(source, videos, max_bytes)
    with session_scope(engine) as session:
        return _save_items(session, info.id, items, author)


@dataclass(frozen=True)
class ImportItem:
    """One object's mask read from an import: where it was read, its frame, object id and class."""

    where: str  # the file (and entry) it came from, for messages
    video: VideoInfo
    frame_index: int
    object_id: int
    class_name: str | None  # None: the format carries no class (an existing object keeps its own)
    mask: np.ndarray


def _save_items(session, project_id: int, items: list[ImportItem], author: str) -> ExchangeReport:
    """Store the items in the caller's transaction; raise on the first bad one (the caller's rollback then undoes
    the ones before it)."""
    report = ExchangeReport()
    class_ids: dict[str, int] = {}
    frames: dict[int, dict[int, int]] = {}
    newest: dict[int, dict[tuple[int, int], object]] = {}
    given: dict[tuple[int, int, int], str] = {}
    for item in items:
        video = item.video
        if video.id not in frames:
            frames[video.id] = {f.index: f.id for f in footage.list_frames(session, video.id)}
            newest[video.id] = {(a.frame_id, a.object_id): a
                                for a in annotation_store.latest_annotations_for_video(session, video.id)}
        frame_id = frames[video.id].get(item.frame_index)
        if frame_id is None:
            raise ExchangeError(f"{item.where}: video {video.name} has no frame {item.frame_index} "
                                f"(it has {len(frames[video.id])})")
        first = given.setdefault((video.id, item.frame_index, item.object_id), item.where)
        if first != item.where:
            raise ExchangeError(f"{item.where}: object {item.object_id} of {video.name} frame {item.frame_index} is "
                                f"also given by {first}; give each object of a frame once")
        current = newest[video.id].get((frame_id, item.object_id))
        if item.class_name is None and current is not None:
            class_id = current.class_id
        else:
            name = item.class_name or DEFAULT_CLASS
            if name not in class_ids:
                class_ids[name] = projects.get_or_create_label_class(session, project_id, name).id
            class_id = class_ids[name]
        if current is not None and annotation_store.same_mask(current, item.mask, class_id):
            report.unchanged += 1
            continue
        annotation_store.save_annotation(session, frame_id, item.object_id, item.mask, "imported", status="submitted",
                                         author=author, class_id=class_id)
        report.masks += 1
    report.frames = len({key[:2] for key in given})
    report.videos = len({key[0] for key in given})
    return report


def _check_shape(where: str, video: VideoInfo, frame_index: int, shape: tuple[int, ...]) -> None:
    """ExchangeError unless a mask of `shape` (h, w) fits the video's frames."""
    if tuple(shape) != (video.stored_height, video.stored_width):
        raise ExchangeError(f"{where}: mask for {video.name} frame {frame_index} is {shape[1]}x{shape[0]}, "
                            f"frames are {video.stored_width}x{video.stored_height}")


def _frame_number(name: str) -> int | None:
    """The frame index a file stem such as 00012 names (ASCII digits only), else None."""
    return int(name) if name.isascii() and name.isdigit() and len(name) <= 9 else None


def _davis_folders(videos: list[VideoInfo]) -> dict[str, VideoInfo]:
    """{folder name: video}: each video's name, and the `video-<id>` folder a DAVIS export gives a video whose name
    is not a plain folder name."""
    folders = {_folder_name(v): v for v in videos}
    return {**folders, **{v.name: v for v in videos}}


def _davis_items(root: Path, videos: list[VideoInfo]) -> list[ImportItem]:
    """The masks of a DAVIS root, its Annotations or Annotations/<res> folder (one item per object of a mask)."""
    annotations = masks_root(root)
    if not annotations.is_dir() or (annotations == root and (root / MASKS).is_dir()):
        raise ExchangeError(f"{root}: expected a DAVIS root with {MASKS}/{RESOLUTION}/<video>/ folders")
    folders = _davis_folders(videos)
    sequences = sorted(p for p in annotations.iterdir() if p.is_dir())
    if not sequences:
        raise ExchangeError(f"{root}: holds no <video>/ folder of masks; give a DAVIS root, its {MASKS} folder or "
                            f"{MASKS}/{RESOLUTION}")
    items = []
    for seq in sequences:
        if seq.name not in folders:
            raise ExchangeError(f"{seq}: no video named {seq.name!r} in the project")
        video, named = folders[seq.name], {}
        for png in sorted(p for p in seq.iterdir() if p.suffix.lower() == ".png"):
            index = _frame_number(png.stem)
            if index is None:
                raise ExchangeError(f"{png}: mask file names must be frame numbers like 00012.png")
            if index in named:
                raise ExchangeError(f"{png}: frame {index} is also given by {named[index].name}")
            named[index] = png
            try:
                labels = read_mask(png, (video.stored_height, video.stored_width))
            except MaskError as exc:
                raise ExchangeError(str(exc)) from None
            items += [ImportItem(str(png), video, index, int(object_id), None, labels == object_id)
                      for object_id in np.unique(labels) if object_id]
    return items


def _coco_items(path: Path, videos: list[VideoInfo], max_bytes: int = COCO_MAX_BYTES) -> list[ImportItem]:
    """The annotations of a COCO JSON with RLE segmentations (one item per annotation)."""
    file = path if path.is_file() else path / "annotations.json"
    try:
        size = file.stat().st_size
        if size > max_bytes:
            raise ExchangeError(f"{file}: {size} bytes is over the COCO import limit of {max_bytes} bytes; "
                                f"split it into several files")
        data = json.loads(file.read_text())
    except ExchangeError:
        raise
    except (OSError, ValueError, RecursionError) as exc:
        raise ExchangeError(f"{file}: not a readable COCO JSON ({_reason(exc)})") from None
    images, categories, annotations = _coco_document(data, file)
    by_name = {v.name: v for v in videos}
    items = []
    for n, ann in enumerate(annotations):
        where = f"{file}: annotations[{n}]"
        if not isinstance(ann, dict):
            raise ExchangeError(f"{where}: must be an object, got {value_kind(ann)}")
        image_id = ann.get("image_id")
        image = images.get(image_id) if _is_id(image_id) else None
        if image is None:
            raise ExchangeError(f"{where}: image_id {shown(image_id)} is not in images")
        name, index = _coco_frame(image, where)
        if name not in by_name:
            raise ExchangeError(f"{where}: no video named {name!r} in the project")
        video = by_name[name]
        if not isinstance(ann.get("segmentation"), dict):
            raise ExchangeError(f"{where}: segmentation must be RLE ({{'size', 'counts'}}), polygons are not supported")
        try:
            _check_shape(where, video, index, rle_shape(ann["segmentation"]))  # before decoding a mask of any size
            mask = decode_rle(ann["segmentation"])
        except MaskError as exc:
            raise ExchangeError(f"{where}: segmentation: {exc}") from None
        items.append(ImportItem(where, video, index, _coco_object_id(ann, where), _coco_class(ann, categories, where),
                                mask))
    return items


def _is_id(value: object) -> bool:
    """Whether a COCO id is an integer or a string (not a boolean, which JSON keeps apart from 1)."""
    return isinstance(value, int | str) and not isinstance(value, bool)


def _coco_list(data: dict, field: str, file: Path, required: bool = True) -> list:
    """The list under `field` of a COCO document (empty when optional and absent)."""
    if field not in data:
        if required:
            raise ExchangeError(f"{file}: not a COCO JSON: no {field!r} list")
        return []
    value = data[field]
    if not isinstance(value, list):
        raise ExchangeError(f"{file}: {field!r} must be a list, got {value_kind(value)}")
    return value


def _coco_entries(data: dict, field: str, keys: tuple[str, ...], file: Path, required: bool = True) -> dict:
    """{id: entry} of a COCO list whose entries are objects with `keys` (`id` first), each id once."""
    entries = {}
    for n, entry in enumerate(_coco_list(data, field, file, required)):
        if not isinstance(entry, dict):
            raise ExchangeError(f"{file}: {field}[{n}] must be an object, got {value_kind(entry)}")
        missing = [key for key in keys if key not in entry]
        if missing:
            raise ExchangeError(f"{file}: {field}[{n}] has no {missing[0]!r}")
        if not _is_id(entry["id"]):
            raise ExchangeError(f"{file}: {field}[{n}] id {shown(entry['id'])} must be an integer or a string")
        if entry["id"] in entries:
            raise ExchangeError(f"{file}: {field}[{n}] id {shown(entry['id'])} is given twice")
        entries[entry["id"]] = entry
    return entries


def _coco_document(data: object, file: Path) -> tuple[dict, dict, list]:
    """(images by id, category names by id, annotations) of a parsed COCO JSON, its structure checked."""
    if not isinstance(data, dict):
        raise ExchangeError(f"{file}: not a COCO JSON: the top level must be an object, got {value_kind(data)}")
    images = _coco_entries(data, "images", ("id",), file)
    categories = {}
    for n, (key, category) in enumerate(_coco_entries(data, "categories", ("id", "name"), file,
                                                      required=False).items()):
        try:
            categories[key] = check_name(f"categories[{n}].name", category["name"], LABEL_CLASS_NAME_MAX)
        except ValidationError as exc:
            raise ExchangeError(f"{file}: {exc}") from None
    return images, categories, _coco_list(data, "annotations", file)


def _coco_class(ann: dict, categories: dict, where: str) -> str | None:
    """The class name of an annotation's category_id; None when it gives none (or the file lists no categories)."""
    category = ann.get("category_id")
    if category is None or not categories:
        return None
    if not _is_id(category) or category not in categories:
        raise ExchangeError(f"{where}: category_id {shown(category)} is not in categories")
    return categories[category]


def _coco_object_id(ann: dict, where: str) -> int:
    """The object id of a COCO annotation: `track_id`, else `attributes.object_id`, else 1 (checked 1..255)."""
    attributes = ann.get("attributes") if isinstance(ann.get("attributes"), dict) else {}
    field = next((f for f, v in (("track_id", ann.get("track_id")), ("attributes.object_id",
                                                                       attributes.get("object_id")))
                  if v is not None), None)
    if field is None:
        return 1
    value = ann["track_id"] if field == "track_id" else attributes["object_id"]
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,20}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExchangeError(f"{where}: {field} {shown(value)} is not an integer")
    if not 1 <= value <= 255:
        raise ExchangeError(f"{where}: {field} {value} is out of range 1..255")
    return value


def _coco_frame(image: dict, where: str) -> tuple[str, int]:
    """(video name, frame index) of a COCO image entry: our fields, else `<video>/<index>.jpg`."""
    if "video" in image and "frame_index" in image:
        index = image["frame_index"]
        if isinstance(index, bool) or not isinstance(index, int):
            raise ExchangeError(f"{where}: image {shown(image.get('id'))} frame_index {shown(index)} "
                                "is not an integer")
        return str(image["video"]), index
    parts = Path(str(image.get("file_name", ""))).parts
    if len(parts) >= 2 and _frame_number(Path(parts[-1]).stem) is not None:
        return parts[-2], int(Path(parts[-1]).stem)
    raise ExchangeError(f"{where}: COCO image {shown(image.get('id'))}: cannot tell video and frame from file_name "
                        f"{shown(image.get('file_name'))}")


def _reason(exc: BaseException) -> str:
    """A short reason for a JSON that cannot be read."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if "int_max_str_digits" in str(exc):
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    return str(exc).splitlines()[0][:200] if str(exc) else "no reason given"


def _make_dirs(folder: Path, root: Path) -> None:
    """mkdir -p `folder` inside `root`."""
    resolve_inside(root, folder.relative_to(root)).mkdir(parents=True, exist_ok=True)
