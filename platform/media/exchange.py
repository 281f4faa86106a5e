"""Annotation export and import: DAVIS palette-PNG layout and COCO JSON with RLE masks."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segloop.platform.core.davis import MASKS, RESOLUTION, DavisLayout, frame_name, masks_root
from segloop.platform.core.masks import MaskError, decode_rle, encode_rle, read_mask, write_mask
from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.core.storage import (
    atomic_write_bytes,
    chmod_for_umask,
    remove_stale_staging,
    resolve_inside,
    staging_dir,
)
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, projects

FORMATS = ("davis", "coco")
COCO_MAX_BYTES = 512 * 1024 * 1024  # a COCO file is parsed in memory (about 10x its size)


class ExchangeError(ValueError):
    """An export target or import file that cannot be used; the message names it and why."""


@dataclass
class ExchangeReport:
    """How many videos, frames and masks were exported or imported."""

    videos: int = 0
    frames: int = 0
    masks: int = 0
    unchanged: int = 0  # imported masks identical to the object's newest version, left as they are


def export_project(project: str, fmt: str, out: Path, settings: Settings | None = None) -> ExchangeReport:
    """Write a project's newest annotations as DAVIS (a full DAVIS root) or COCO JSON."""
    settings = settings or load_settings()
    if fmt not in FORMATS:
        raise ExchangeError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    out = Path(out)
    with session_scope(get_engine(settings)) as session:
        info = projects.get_project(session, project)
        classes = projects.list_label_classes(session, info.id)
        videos = footage.list_videos(session, info.id)
        content = [(v, footage.list_frames(session, v.id), annotation_store.latest_annotations_for_video(session, v.id))
                   for v in videos]
    try:
        if fmt == "davis":
            return _export_davis(content, _davis_target(out), settings)
        return _export_coco(info.name, classes, content, _coco_target(out))
    except OSError as exc:
        raise ExchangeError(f"{out}: cannot write the export ({_write_failure(out, exc)})") from None


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
    if out.suffix == ".json":
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
            for frame in frames:
                target = staged.frame_path(folder, frame.index)
                shutil.copyfile(resolve_inside(settings.data_dir, frame.image_path), target)
                chmod_for_umask(target)
                if frame.id in by_frame:
                    labels = annotation_store.label_map(by_frame[frame.id], video.stored_height, video.stored_width)
                    write_mask(staged.mask_path(folder, frame.index), labels, style="palette")
                    report.masks += len(by_frame[frame.id])
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
    target = out if out.suffix == ".json" else out / "annotations.json"
    atomic_write_bytes(target, json.dumps(payload).encode())
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
        videos = {v.name: v for v in footage.list_videos(session, info.id)}
    items = _davis_items(source, videos) if fmt == "davis" else _coco_items(source, videos, max_bytes)
    with session_scope(engine) as session:
        return _save_items(session, info.id, source, items, author)


def _save_items(session, project_id: int, source: Path, items: list[tuple], author: str) -> ExchangeReport:
    """Store (video, frame index, object id, class, mask) items in the caller's transaction; raise on the first
    bad one (the caller's rollback then undoes the ones before it)."""
    report = ExchangeReport()
    class_ids: dict[str, int] = {}
    frames: dict[int, dict[int, int]] = {}
    newest: dict[int, dict[tuple[int, int], object]] = {}
    frames_seen = set()
    for video, frame_index, object_id, class_name, mask in items:
        if video.id not in frames:
            frames[video.id] = {f.index: f.id for f in footage.list_frames(session, video.id)}
            newest[video.id] = {(a.frame_id, a.object_id): a
                                for a in annotation_store.latest_annotations_for_video(session, video.id)}
        frame_id = frames[video.id].get(frame_index)
        if frame_id is None:
            raise ExchangeError(f"{source}: video {video.name} has no frame {frame_index}")
        if mask.shape != (video.stored_height, video.stored_width):
            raise ExchangeError(
                f"{source}: mask for {video.name} frame {frame_index} is {mask.shape[1]}x{mask.shape[0]}, "
                f"frames are {video.stored_width}x{video.stored_height}"
            )
        if class_name not in class_ids:
            class_ids[class_name] = projects.get_or_create_label_class(session, project_id, class_name).id
        frames_seen.add(frame_id)
        current = newest[video.id].get((frame_id, object_id))
        if current is not None and annotation_store.same_mask(current, mask, class_ids[class_name]):
            report.unchanged += 1
            continue
        annotation_store.save_annotation(session, frame_id, object_id, mask, "imported", status="submitted",
                                         author=author, class_id=class_ids[class_name])
        report.masks += 1
    report.frames = len(frames_seen)
    report.videos = len({item[0].id for item in items})
    return report


def _davis_items(root: Path, videos: dict) -> list[tuple]:
    """(video, frame index, object id, class, mask) from a DAVIS root, its Annotations or Annotations/<res> folder."""
    annotations = masks_root(root)
    if not annotations.is_dir() or (annotations == root and (root / MASKS).is_dir()):
        raise ExchangeError(f"{root}: expected a DAVIS root with {MASKS}/{RESOLUTION}/<video>/ folders")
    items = []
    for seq in sorted(p for p in annotations.iterdir() if p.is_dir()):
        if seq.name not in videos:
            raise ExchangeError(f"{seq}: no video named {seq.name!r} in the project")
        for png in sorted(seq.glob("*.png")):
            if not png.stem.isdigit():
                raise ExchangeError(f"{png}: mask file names must be frame numbers like 00012.png")
            try:
                labels = read_mask(png)
            except MaskError as exc:
                raise ExchangeError(str(exc)) from None
            for object_id in np.unique(labels):
                if object_id:
                    items.append((videos[seq.name], int(png.stem), int(object_id), "object", labels == object_id))
    return items


def _coco_items(path: Path, videos: dict, max_bytes: int = COCO_MAX_BYTES) -> list[tuple]:
    """(video, frame index, object id, class, mask) from a COCO JSON with RLE segmentations."""
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
    items = []
    for n, ann in enumerate(annotations):
        where = f"{file}: annotations[{n}]"
        if not isinstance(ann, dict):
            raise ExchangeError(f"{where}: must be an object, got {_json_type(ann)}")
        image = images.get(ann.get("image_id")) if isinstance(ann.get("image_id"), (int, str)) else None
        if image is None:
            raise ExchangeError(f"{where}: image_id {ann.get('image_id')!r} is not in images")
        name, index = _coco_frame(image, where)
        if name not in videos:
            raise ExchangeError(f"{where}: no video named {name!r} in the project")
        segmentation = ann.get("segmentation")
        if not isinstance(segmentation, dict):
            raise ExchangeError(f"{where}: segmentation must be RLE ({{'size', 'counts'}}), polygons are not supported")
        try:
            mask = decode_rle(segmentation)
        except MaskError as exc:
            raise ExchangeError(f"{where}: {exc}") from None
        object_id = _coco_object_id(ann, where)
        items.append((videos[name], index, object_id, categories.get(ann.get("category_id"), "object"), mask))
    return items


def _coco_list(data: dict, field: str, file: Path, required: bool = True) -> list:
    """The list under `field` of a COCO document (empty when optional and absent)."""
    if field not in data:
        if required:
            raise ExchangeError(f"{file}: not a COCO JSON: no {field!r} list")
        return []
    value = data[field]
    if not isinstance(value, list):
        raise ExchangeError(f"{file}: {field!r} must be a list, got {_json_type(value)}")
    return value


def _coco_entries(data: dict, field: str, keys: tuple[str, ...], file: Path, required: bool = True) -> dict:
    """{id: entry} of a COCO list whose entries are objects with `keys` (`id` first)."""
    entries = {}
    for n, entry in enumerate(_coco_list(data, field, file, required)):
        if not isinstance(entry, dict):
            raise ExchangeError(f"{file}: {field}[{n}] must be an object, got {_json_type(entry)}")
        missing = [key for key in keys if key not in entry]
        if missing:
            raise ExchangeError(f"{file}: {field}[{n}] has no {missing[0]!r}")
        if not isinstance(entry["id"], (int, str)) or isinstance(entry["id"], bool):
            raise ExchangeError(f"{file}: {field}[{n}] id {entry['id']!r} must be an integer or a string")
        entries[entry["id"]] = entry
    return entries


def _coco_document(data: object, file: Path) -> tuple[dict, dict, list]:
    """(images by id, category names by id, annotations) of a parsed COCO JSON, its structure checked."""
    if not isinstance(data, dict):
        raise ExchangeError(f"{file}: not a COCO JSON: the top level must be an object, got {_json_type(data)}")
    images = _coco_entries(data, "images", ("id",), file)
    categories = {key: str(c["name"]) for key, c in
                  _coco_entries(data, "categories", ("id", "name"), file, required=False).items()}
    return images, categories, _coco_list(data, "annotations", file)


def _json_type(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _coco_object_id(ann: dict, where: str) -> int:
    """The object id of a COCO annotation: `track_id`, else `attributes.object_id`, else 1 (checked 1..255)."""
    attributes = ann.get("attributes")
    value = ann.get("track_id") or (attributes.get("object_id") if isinstance(attributes, dict) else None) or 1
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ExchangeError(f"{where}: track_id {value!r} is not an integer")
    try:
        object_id = int(value)
    except (ValueError, OverflowError):
        raise ExchangeError(f"{where}: track_id {value!r} is not an integer") from None
    if not 1 <= object_id <= 255:
        raise ExchangeError(f"{where}: track_id {object_id} is out of range 1..255")
    return object_id


def _coco_frame(image: dict, where: str) -> tuple[str, int]:
    """(video name, frame index) of a COCO image entry: our fields, else `<video>/<index>.jpg`."""
    if "video" in image and "frame_index" in image:
        index = image["frame_index"]
        if isinstance(index, bool) or not isinstance(index, int):
            raise ExchangeError(f"{where}: image {image.get('id')!r} frame_index {index!r} is not an integer")
        return str(image["video"]), index
    parts = Path(str(image.get("file_name", ""))).parts
    if len(parts) >= 2 and Path(parts[-1]).stem.isdigit():
        return parts[-2], int(Path(parts[-1]).stem)
    raise ExchangeError(f"{where}: COCO image {image.get('id')!r}: cannot tell video and frame from file_name "
                        f"{image.get('file_name')!r}")


def _reason(exc: BaseException) -> str:
    """A short reason for a JSON that cannot be read."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _make_dirs(folder: Path, root: Path) -> None:
    """mkdir -p `folder` inside `root`."""
    resolve_inside(root, folder.relative_to(root)).mkdir(parents=True, exist_ok=True)
