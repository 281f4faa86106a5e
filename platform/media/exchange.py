"""Annotation export and import: DAVIS palette-PNG layout and COCO JSON with RLE masks."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segloop.platform.core.davis import MASKS, RESOLUTION, DavisLayout, frame_name
from segloop.platform.core.masks import MaskError, decode_rle, encode_rle, read_mask, write_mask
from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.core.storage import atomic_write_bytes, resolve_inside, staging_dir
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, projects

FORMATS = ("davis", "coco")


class ExchangeError(ValueError):
    """An export target or import file that cannot be used; the message names it and why."""


@dataclass
class ExchangeReport:
    """How many videos, frames and masks were exported or imported."""

    videos: int = 0
    frames: int = 0
    masks: int = 0


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
    if fmt == "davis":
        return _export_davis(content, out, settings)
    return _export_coco(info.name, classes, content, out)


def _export_davis(content, out: Path, settings: Settings) -> ExchangeReport:
    """DAVIS root: JPEGImages/480p/<video>/%05d.jpg and Annotations/480p/<video>/%05d.png (palette)."""
    report = ExchangeReport()
    out.mkdir(parents=True, exist_ok=True)
    with staging_dir(out) as staging:
        staged = DavisLayout(staging)
        for video, frames, video_annotations in content:
            by_frame: dict[int, list] = {}
            for annotation in video_annotations:
                by_frame.setdefault(annotation.frame_id, []).append(annotation)
            (staged.images_dir / video.name).mkdir(parents=True)
            for frame in frames:
                shutil.copyfile(resolve_inside(settings.data_dir, frame.image_path),
                                staged.frame_path(video.name, frame.index))
                if frame.id in by_frame:
                    labels = annotation_store.label_map(by_frame[frame.id], video.stored_height, video.stored_width)
                    write_mask(staged.mask_path(video.name, frame.index), labels, style="palette")
                    report.masks += len(by_frame[frame.id])
            report.videos += 1
            report.frames += len(frames)
        final = DavisLayout(out)
        for staged_dir, final_dir in ((staged.images_dir, final.images_dir), (staged.masks_dir, final.masks_dir)):
            for seq in sorted(staged_dir.glob("*")) if staged_dir.exists() else []:
                target = final_dir / seq.name
                target.parent.mkdir(parents=True, exist_ok=True)
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
                       author: str = "import") -> ExchangeReport:
    """Import DAVIS masks or COCO RLE annotations onto the project's frames (new versions), all-or-nothing."""
    settings = settings or load_settings()
    if fmt not in FORMATS:
        raise ExchangeError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    source = Path(source)
    if not source.exists():
        raise ExchangeError(f"{source}: does not exist")
    with session_scope(get_engine(settings)) as session:
        info = projects.get_project(session, project)
        videos = {v.name: v for v in footage.list_videos(session, info.id)}
        items = _davis_items(source, videos) if fmt == "davis" else _coco_items(source, videos)
        report = ExchangeReport()
        class_ids = {}
        frames_seen = set()
        for video, frame_index, object_id, class_name, mask in items:
            frames = footage.list_frames(session, video.id, offset=frame_index, limit=1)
            if not frames or frames[0].index != frame_index:
                raise ExchangeError(f"{source}: video {video.name} has no frame {frame_index}")
            if mask.shape != (video.stored_height, video.stored_width):
                raise ExchangeError(
                    f"{source}: mask for {video.name} frame {frame_index} is {mask.shape[1]}x{mask.shape[0]}, "
                    f"frames are {video.stored_width}x{video.stored_height}"
                )
            if class_name not in class_ids:
                class_ids[class_name] = projects.get_or_create_label_class(session, info.id, class_name).id
            annotation_store.save_annotation(session, frames[0].id, object_id, mask, "imported", status="submitted",
                                             author=author, class_id=class_ids[class_name])
            frames_seen.add(frames[0].id)
            report.masks += 1
        report.frames = len(frames_seen)
        report.videos = len({item[0].id for item in items})
    return report


def _davis_items(root: Path, videos: dict) -> list[tuple]:
    """(video, frame index, object id, class, mask) from a DAVIS root or an Annotations/<res> folder."""
    annotations = DavisLayout(root).masks_dir if (root / MASKS).is_dir() else root
    if not annotations.is_dir():
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


def _coco_items(path: Path, videos: dict) -> list[tuple]:
    """(video, frame index, object id, class, mask) from a COCO JSON with RLE segmentations."""
    file = path if path.is_file() else path / "annotations.json"
    try:
        data = json.loads(file.read_text())
        images = {img["id"]: img for img in data["images"]}
        categories = {c["id"]: c["name"] for c in data.get("categories", [])}
        annotations = data["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExchangeError(f"{file}: not a readable COCO JSON ({exc})") from None
    items = []
    for n, ann in enumerate(annotations):
        where = f"{file}: annotations[{n}]"
        image = images.get(ann.get("image_id"))
        if image is None:
            raise ExchangeError(f"{where}: image_id {ann.get('image_id')!r} is not in images")
        name, index = _coco_frame(image)
        if name not in videos:
            raise ExchangeError(f"{where}: no video named {name!r} in the project")
        segmentation = ann.get("segmentation")
        if not isinstance(segmentation, dict):
            raise ExchangeError(f"{where}: segmentation must be RLE ({{'size', 'counts'}}), polygons are not supported")
        try:
            mask = decode_rle(segmentation)
        except MaskError as exc:
            raise ExchangeError(f"{where}: {exc}") from None
        object_id = int(ann.get("track_id") or ann.get("attributes", {}).get("object_id") or 1)
        items.append((videos[name], index, object_id, categories.get(ann.get("category_id"), "object"), mask))
    return items


def _coco_frame(image: dict) -> tuple[str, int]:
    """(video name, frame index) of a COCO image entry: our fields, else `<video>/<index>.jpg`."""
    if "video" in image and "frame_index" in image:
        return str(image["video"]), int(image["frame_index"])
    parts = Path(str(image.get("file_name", ""))).parts
    if len(parts) >= 2 and Path(parts[-1]).stem.isdigit():
        return parts[-2], int(Path(parts[-1]).stem)
    raise ExchangeError(f"COCO image {image.get('id')}: cannot tell video and frame from file_name "
                        f"{image.get('file_name')!r}")
