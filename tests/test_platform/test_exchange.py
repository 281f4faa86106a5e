"""Annotation export (DAVIS, COCO) and import, round-trip on real ingested footage."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segloop.platform.core.masks import read_mask
from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, projects
from segloop.platform.media.exchange import ExchangeError, export_project, import_annotations
from segloop.platform.media.ingest import IngestOptions, ingest_paths


def _label_maps(engine, project: str) -> dict[tuple[str, int], np.ndarray]:
    """{(video, frame index): label map} of the newest annotations of a project."""
    maps = {}
    with session_scope(engine) as session:
        info = projects.get_project(session, project)
        for video in footage.list_videos(session, info.id):
            by_frame: dict[int, list] = {}
            for annotation in annotation_store.latest_annotations_for_video(session, video.id):
                by_frame.setdefault(annotation.frame_id, []).append(annotation)
            for frame in footage.list_frames(session, video.id):
                if frame.id in by_frame:
                    maps[(video.name, frame.index)] = annotation_store.label_map(
                        by_frame[frame.id], video.stored_height, video.stored_width)
    return maps


@pytest.fixture
def labelled(synth_root: Path, settings, engine) -> dict:
    """Project 'src' with imported masks and project 'dst' with the same videos unlabelled."""
    assert not ingest_paths([synth_root], IngestOptions(project="src"), settings).failed
    assert not ingest_paths([synth_root / "videos"], IngestOptions(project="dst"), settings).failed
    return _label_maps(engine, "src")


@pytest.mark.parametrize("fmt", ["davis", "coco"])
def test_export_import_round_trip(fmt: str, labelled: dict, settings, engine, tmp_path: Path) -> None:
    """Exporting 'src' and importing into 'dst' reproduces every mask exactly."""
    out = tmp_path / f"export-{fmt}"
    report = export_project("src", fmt, out, settings)
    assert report.videos == 2 and report.frames == 24 and report.masks > 24
    imported = import_annotations("dst", fmt, out, settings)
    assert imported.masks == report.masks and imported.frames == 24
    result = _label_maps(engine, "dst")
    assert result.keys() == labelled.keys()
    for key, labels in labelled.items():
        np.testing.assert_array_equal(result[key], labels)


def test_davis_export_is_a_davis_root(labelled: dict, settings, tmp_path: Path) -> None:
    """The DAVIS export has frames and palette masks in the standard layout."""
    export_project("src", "davis", tmp_path / "d", settings)
    assert len(list((tmp_path / "d/JPEGImages/480p/synth-007-000").glob("*.jpg"))) == 12
    mask = read_mask(tmp_path / "d/Annotations/480p/synth-007-000/00004.png")
    np.testing.assert_array_equal(mask, labelled[("synth-007-000", 4)])


@pytest.mark.parametrize("where", ["", "Annotations", "Annotations/480p"])
def test_davis_import_takes_the_root_its_annotations_or_one_resolution(where: str, labelled: dict, settings, engine,
                                                                       tmp_path: Path) -> None:
    """The DAVIS root, its Annotations folder (before: "no video named '480p' in the project") and
    Annotations/480p all import the same masks; an Annotations folder without 480p is refused by name."""
    export_project("src", "davis", tmp_path / "d", settings)
    imported = import_annotations("dst", "davis", tmp_path / "d" / where, settings)
    assert imported.frames == 24
    assert _label_maps(engine, "dst").keys() == labelled.keys()
    (tmp_path / "other/Annotations/Full-Resolution").mkdir(parents=True)
    with pytest.raises(ExchangeError, match="other: expected a DAVIS root with Annotations/480p"):
        import_annotations("dst", "davis", tmp_path / "other", settings)


def test_bad_import_changes_nothing(labelled: dict, settings, engine, tmp_path: Path) -> None:
    """A COCO file referring to an unknown video fails whole, naming the entry; no annotation added."""
    out = tmp_path / "c.json"
    export_project("src", "coco", out, settings)
    data = json.loads(out.read_text())
    data["images"][-1]["video"] = "nope"
    out.write_text(json.dumps(data))
    with pytest.raises(ExchangeError, match=r"c.json: annotations\[\d+\]: no video named 'nope'"):
        import_annotations("dst", "coco", out, settings)
    assert _label_maps(engine, "dst") == {}
    with pytest.raises(ExchangeError, match="not a readable COCO JSON"):
        (tmp_path / "x.json").write_text("{")
        import_annotations("dst", "coco", tmp_path / "x.json", settings)


def test_export_cli(labelled: dict, cli, tmp_path: Path) -> None:
    """`segloop export` and `segloop import` from the command line."""
    result = cli("export", "--project", "src", "--format", "coco", str(tmp_path / "a.json"))
    assert result.exit_code == 0 and "exported" in result.output
    result = cli("import", "--project", "nope", "--format", "coco", str(tmp_path / "a.json"))
    assert result.exit_code == 1 and "project 'nope' does not exist" in result.output


def _annotation_rows(engine) -> int:
    """Annotation rows of every project."""
    from sqlalchemy import func, select

    from segloop.platform.db.orm import Annotation

    with session_scope(engine) as session:
        return int(session.scalar(select(func.count()).select_from(Annotation)))


def test_davis_import_with_one_bad_mask_changes_nothing(labelled: dict, settings, engine, tmp_path: Path) -> None:
    """The issue's reproduction: export, overwrite the last mask with a 10x10 PNG, import → refused naming the
    mask, and the masks saved before it are rolled back (the row count stays)."""
    from segloop.platform.core.masks import write_mask

    out = tmp_path / "d"
    export_project("src", "davis", out, settings)
    last = sorted((out / "Annotations/480p").glob("*/*.png"))[-1]
    write_mask(last, np.ones((10, 10), np.uint8), style="palette")
    before = _annotation_rows(engine)
    with pytest.raises(ExchangeError, match="is 10x10, frames are"):
        import_annotations("src", "davis", out, settings)
    assert _annotation_rows(engine) == before


@pytest.mark.parametrize(("field", "value", "message"), [
    ("frame_index", 9999, "has no frame 9999"),
    ("track_id", 300, r"track_id 300 is out of range 1\.\.255"),
    ("segmentation", {"size": [10, 10], "counts": [0, 100]}, "is 10x10, frames are"),
    ("track_id", "x", "track_id 'x' is not an integer"),
])
def test_coco_import_with_one_bad_entry_changes_nothing(field: str, value, message: str, labelled: dict, settings,
                                                        engine, tmp_path: Path) -> None:
    """A COCO file whose last entry is bad (frame 9999, track 300, a 10x10 mask, a text track id) is refused
    whole: no row is added even though earlier entries were fine."""
    out = tmp_path / "c.json"
    export_project("src", "coco", out, settings)
    data = json.loads(out.read_text())
    last = data["annotations"][-1]
    entry = next(img for img in data["images"] if img["id"] == last["image_id"]) if field == "frame_index" else last
    entry[field] = value
    out.write_text(json.dumps(data))
    before = _annotation_rows(engine)
    with pytest.raises(ExchangeError, match=message):
        import_annotations("dst", "coco", out, settings)
    assert _annotation_rows(engine) == before


@pytest.mark.parametrize("fmt", ["davis", "coco"])
def test_reimporting_identical_masks_is_a_no_op(fmt: str, labelled: dict, settings, engine, tmp_path: Path) -> None:
    """Importing the same masks twice adds versions once; the second import changes nothing and says so."""
    out = tmp_path / f"e-{fmt}"
    exported = export_project("src", fmt, out, settings)
    first = import_annotations("dst", fmt, out, settings)
    rows = _annotation_rows(engine)
    second = import_annotations("dst", fmt, out, settings)
    assert (first.masks, first.unchanged) == (exported.masks, 0)
    assert (second.masks, second.unchanged) == (0, exported.masks)
    assert _annotation_rows(engine) == rows


def test_coco_attributes_as_a_list_and_size_limit(labelled: dict, settings, engine, tmp_path: Path) -> None:
    """`"attributes": []` imports (object id from track_id, else 1); a file over the size limit is refused unread."""
    out = tmp_path / "c.json"
    export_project("src", "coco", out, settings)
    data = json.loads(out.read_text())
    for ann in data["annotations"]:
        ann["attributes"] = []
    out.write_text(json.dumps(data))
    assert import_annotations("dst", "coco", out, settings).masks == len(data["annotations"])
    with pytest.raises(ExchangeError, match=r"c.json: \d+ bytes is over the COCO import limit of 1000 bytes"):
        import_annotations("dst", "coco", out, settings, max_bytes=1000)


def _break_coco(data: dict, case: str) -> object:
    """The exported COCO document with one structural defect."""
    if case == "top level":
        return [data]
    if case == "no images":
        return {key: value for key, value in data.items() if key != "images"}
    breaks = {
        "images not a list": ("images", {"0": data["images"][0]}),
        "image not an object": ("images", [*data["images"][:-1], 7]),
        "image without id": ("images", [*data["images"][:-1], {"file_name": "a/00000.jpg"}]),
        "categories not a list": ("categories", 3),
        "category without name": ("categories", [{"id": 1}]),
        "annotations not a list": ("annotations", {}),
        "annotation not an object": ("annotations", [*data["annotations"][:-1], "x"]),
    }
    field, value = breaks[case]
    return {**data, field: value}


COCO_STRUCTURE_ERRORS = {
    "top level": "not a COCO JSON: the top level must be an object, got a list",
    "no images": "not a COCO JSON: no 'images' list",
    "images not a list": "'images' must be a list, got an object",
    "image not an object": r"images\[\d+\] must be an object, got a number",
    "image without id": r"images\[\d+\] has no 'id'",
    "categories not a list": "'categories' must be a list, got a number",
    "category without name": r"categories\[0\] has no 'name'",
    "annotations not a list": "'annotations' must be a list, got an object",
    "annotation not an object": r"annotations\[\d+\]: must be an object, got a string",
}


def test_coco_import_names_the_field_whose_structure_is_wrong(labelled: dict, settings, engine,
                                                              tmp_path: Path) -> None:
    """A COCO file whose structure is wrong (not an object, a missing or non-list field, an entry that is not an
    object or lacks its id/name) is refused naming the file and field, in JSON words, and adds nothing."""
    out = tmp_path / "c.json"
    export_project("src", "coco", out, settings)
    data = json.loads(out.read_text())
    before = _annotation_rows(engine)
    for case, message in COCO_STRUCTURE_ERRORS.items():
        out.write_text(json.dumps(_break_coco(data, case)))
        with pytest.raises(ExchangeError, match=rf"^.*c\.json: {message}$"):
            import_annotations("dst", "coco", out, settings)
    assert _annotation_rows(engine) == before
