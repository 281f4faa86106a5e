"""Annotation export (DAVIS, COCO) and import, round-trip on real ingested footage."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segloop.platform.core.masks import read_mask
from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, projects
from segloop.platform.media.exchange import ExchangeError, export_project, import_annotations
from segloop.platform.media.ingest import IngestOptions, ingest_paths
from segloop.platform.services import library


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
    ("track_id", "x", "track_id \"x\" is not an integer"),
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


def _coco_export(settings, tmp_path: Path, project: str = "src") -> tuple[Path, dict]:
    """A COCO export of a project: (its file, its parsed document)."""
    out = tmp_path / "c.json"
    export_project(project, "coco", out, settings)
    return out, json.loads(out.read_text())


COCO_VALUE_ERRORS = [
    ("counts", None, r"segmentation: RLE counts must be a compressed string or a list of whole numbers"),
    ("counts", [None, 6144], r"segmentation: RLE counts must be"),
    ("counts", 5, r"segmentation: RLE counts must be"),
    ("counts", [1000.5, 5143.5], r"segmentation: RLE counts must be"),
    ("counts", [10**30, 6144], r"segmentation: RLE counts cover 10{26}\d+ pixels"),
    ("size", [float("inf"), 96], r"segmentation: RLE size must be \[height, width\] in whole pixels"),
    ("size", [64.9, 96.2], r"segmentation: RLE size must be"),
    ("size", [20000, 20000], r"mask for synth-007-001 frame \d+ is 20000x20000, frames are 96x64"),
    ("category_id", [1], r"category_id \[1\] is not in categories"),
    ("category_id", 999, r"category_id 999 is not in categories"),
    ("track_id", 0, r"track_id 0 is out of range 1\.\.255"),
    ("track_id", False, r"track_id false is not an integer"),
    ("track_id", 2.7, r"track_id 2\.7 is not an integer"),
    ("image_id", True, r"image_id true is not in images"),
]


@pytest.mark.parametrize(("field", "value", "message"), COCO_VALUE_ERRORS)
def test_coco_values_a_field_cannot_hold_are_refused_naming_the_entry(field: str, value, message: str,
                                                                     labelled: dict, settings, engine,
                                                                     tmp_path: Path) -> None:
    """A value of the wrong kind is refused naming the annotation and field (counts of null were a TypeError
    traceback, 10**30 an OverflowError, a 20000x20000 size took 865 MB before its size was compared; track_id 0
    became object 1, 2.7 object 2, image_id true image 1, an unknown category_id the class 'object')."""
    out, data = _coco_export(settings, tmp_path)
    last = data["annotations"][-1]
    if field in ("counts", "size"):
        last["segmentation"] = {**last["segmentation"], field: value}
        if field == "size" and value == [20000, 20000]:
            last["segmentation"]["counts"] = [0, 400000000]
    else:
        last[field] = value
    out.write_text(json.dumps(data))
    before = _annotation_rows(engine)
    with pytest.raises(ExchangeError, match=rf"c\.json: annotations\[{len(data['annotations']) - 1}\]: .*{message}"):
        import_annotations("dst", "coco", out, settings)
    assert _annotation_rows(engine) == before


@pytest.mark.parametrize(("name", "message"), [
    ("", r"categories\[0\]\.name: must not be empty"),
    (None, r"categories\[0\]\.name: expected text, got null"),
    ("x" * 500, r"categories\[0\]\.name: 500 characters, at most 120 allowed"),
])
def test_a_category_name_that_cannot_be_a_class_is_refused_naming_it(name, message: str, labelled: dict, settings,
                                                                     engine, tmp_path: Path) -> None:
    """Category names become label classes: an empty, null or 500-character one is refused naming the category
    (null made a class called 'None'; the others named no file or field)."""
    out, data = _coco_export(settings, tmp_path)
    data["categories"] = [{"id": 1, "name": name}]
    for ann in data["annotations"]:
        ann["category_id"] = 1
    out.write_text(json.dumps(data))
    with pytest.raises(ExchangeError, match=rf"c\.json: {message}"):
        import_annotations("dst", "coco", out, settings)
    with session_scope(engine) as session:
        assert projects.list_label_classes(session, projects.get_project(session, "dst").id) == []


def test_an_object_given_twice_is_refused_naming_both(labelled: dict, settings, engine, tmp_path: Path) -> None:
    """Two entries for one object of one frame were both stored (two versions, the last one winning): refused,
    naming both entries (COCO) or both files (DAVIS: 1.png and 00001.png)."""
    out, data = _coco_export(settings, tmp_path)
    data["annotations"].append(dict(data["annotations"][0]))
    out.write_text(json.dumps(data))
    before = _annotation_rows(engine)
    with pytest.raises(ExchangeError, match=rf"annotations\[{len(data['annotations']) - 1}\]: object \d+ of "
                                            r"synth-007-000 frame \d+ is also given by .*annotations\[0\]"):
        import_annotations("dst", "coco", out, settings)
    davis = tmp_path / "d"
    export_project("src", "davis", davis, settings)
    seq = davis / "Annotations/480p/synth-007-000"
    (seq / "1.png").write_bytes((seq / "00001.png").read_bytes())
    with pytest.raises(ExchangeError, match=r"/1\.png: frame 1 is also given by 00001\.png"):
        import_annotations("dst", "davis", davis, settings)
    assert _annotation_rows(engine) == before


def test_davis_masks_are_read_whatever_their_name_case_and_odd_files_refused(labelled: dict, settings, engine,
                                                                            tmp_path: Path) -> None:
    """00000.PNG is a mask like 00000.png (it was skipped); '².png' is not a frame number (it was int()'s error);
    a JPEG named .png is refused (its noise became objects); a sequence folder given as the root is refused (it
    imported 0 masks and said so as a success)."""
    davis = tmp_path / "d"
    export_project("src", "davis", davis, settings)
    seq = davis / "Annotations/480p/synth-007-000"
    (seq / "00000.png").rename(seq / "00000.PNG")
    import_annotations("dst", "davis", davis, settings)
    assert _label_maps(engine, "dst").keys() == labelled.keys()
    before = _annotation_rows(engine)
    with pytest.raises(ExchangeError, match=r"holds no <video>/ folder of masks"):
        import_annotations("dst", "davis", seq, settings)
    (seq / "².png").write_bytes((seq / "00001.png").read_bytes())
    with pytest.raises(ExchangeError, match=r"²\.png: mask file names must be frame numbers"):
        import_annotations("dst", "davis", davis, settings)
    (seq / "².png").unlink()
    Image.open(seq / "00001.png").convert("L").save(seq / "00001.png", format="JPEG")
    with pytest.raises(ExchangeError, match=r"00001\.png: not a PNG image \(JPEG data\)"):
        import_annotations("dst", "davis", davis, settings)
    assert _annotation_rows(engine) == before


def test_a_davis_round_trip_keeps_classes_and_odd_video_names(synth_root: Path, labelled: dict, settings, engine,
                                                             tmp_path: Path) -> None:
    """DAVIS masks carry no class: re-importing an export keeps each object's class (it re-versioned every mask as
    'object'). A video whose name is not a folder name is exported as video-<id> and imported back by that
    name (it was 'no video named'); a project without masks exports a root that imports (0 masks)."""
    out, data = _coco_export(settings, tmp_path)
    data["categories"] = [{"id": 1, "name": "car"}]
    for ann in data["annotations"]:
        ann["category_id"] = 1
    out.write_text(json.dumps(data))
    import_annotations("src", "coco", out, settings)
    export_project("src", "davis", tmp_path / "d", settings)
    again = import_annotations("src", "davis", tmp_path / "d", settings)
    assert (again.masks, again.unchanged) == (0, len(data["annotations"]))
    odd = tmp_path / "odd"
    for part in ("JPEGImages", "Annotations"):
        shutil.copytree(synth_root / part / "480p/synth-007-000", odd / part / "480p" / "cam\\1")
    assert not ingest_paths([odd], IngestOptions(project="odd"), settings).failed
    exported = export_project("odd", "davis", tmp_path / "o", settings)
    (folder,) = [p.name for p in (tmp_path / "o/Annotations/480p").iterdir()]
    assert folder.startswith("video-")
    assert import_annotations("odd", "davis", tmp_path / "o", settings).unchanged == exported.masks
    assert not ingest_paths([synth_root / "videos"], IngestOptions(project="bare"), settings).failed
    export_project("bare", "davis", tmp_path / "b", settings)
    assert import_annotations("bare", "davis", tmp_path / "b", settings).masks == 0


def test_export_failures_name_the_cause_and_leave_nothing(labelled: dict, settings, engine, tmp_path: Path) -> None:
    """A stored frame gone from the data folder is named (the export blamed its target) and no empty target folder
    is left; an empty OUT is refused (it wrote ./annotations.json); OUT.JSON is a file like OUT.json."""
    export_project("src", "coco", tmp_path / "X.JSON", settings)
    assert (tmp_path / "X.JSON").is_file()
    with pytest.raises(ExchangeError, match="OUT: must not be empty"):
        export_project("src", "coco", "", settings)
    with session_scope(engine) as session:
        video = footage.list_videos(session, projects.get_project(session, "src").id)[0]
        frame = footage.list_frames(session, video.id)[3]
    (settings.data_dir / frame.image_path).rename(tmp_path / "moved.jpg")
    with pytest.raises(ExchangeError, match=rf"video {video.name} frame 3: its stored image is missing from the data "
                                            "folder"):
        export_project("src", "davis", tmp_path / "gone", settings)
    assert not (tmp_path / "gone").exists()


def test_overlapping_objects_are_counted_in_a_davis_export(labelled: dict, settings, engine, tmp_path: Path) -> None:
    """COCO masks may overlap; a DAVIS label map holds one id per pixel, so the export (and the Results page's
    download) says on how many frames the higher id was kept (it lost those pixels without a word)."""
    out, data = _coco_export(settings, tmp_path)
    first = data["annotations"][0]
    whole = {"size": first["segmentation"]["size"], "counts": [0, 64 * 96]}
    data["annotations"] = [{**first, "track_id": 1, "segmentation": whole}, {**first, "id": -1, "track_id": 2}]
    out.write_text(json.dumps(data))
    import_annotations("dst", "coco", out, settings)
    assert export_project("dst", "davis", tmp_path / "d", settings).overlapping == 1
    assert export_project("src", "davis", tmp_path / "s", settings).overlapping == 0
    assert "on 1 frame(s) objects overlap" in library.export_annotations(engine, "dst", "davis", settings)[3]
    assert library.export_annotations(engine, "src", "davis", settings)[3] is None


def test_a_number_too_long_to_read_is_named_in_words(labelled: dict, settings, tmp_path: Path) -> None:
    """A 5000-digit integer was refused with Python's advice to call sys.set_int_max_str_digits()."""
    (tmp_path / "big.json").write_text('{"images": [], "annotations": [' + "9" * 5000 + "]}")
    with pytest.raises(ExchangeError, match=r"not a readable COCO JSON \(a number has more than 4300 digits\)$"):
        import_annotations("dst", "coco", tmp_path / "big.json", settings)


def test_an_export_is_one_snapshot_while_others_write(labelled: dict, settings, engine, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL an import committing while an export read its videos one by one gave a torn export (the first
    video before the import, the second after); the export now reads one snapshot."""
    if engine.dialect.name != "postgresql":
        pytest.skip("a SQLite export's transaction holds the write lock: writers wait for it to end")
    real, calls = annotation_store.latest_annotations_for_video, []

    def read_while_another_process_writes(session, video_id: int):
        calls.append(video_id)
        if len(calls) == 2:  # the export has read the first video; another process clears the second one's masks
            with session_scope(engine) as other:
                for annotation in real(other, video_id):
                    annotation_store.save_annotation(other, annotation.frame_id, annotation.object_id,
                                                     np.zeros((annotation.mask_height, annotation.mask_width), bool),
                                                     "manual")
        return real(session, video_id)

    monkeypatch.setattr(annotation_store, "latest_annotations_for_video", read_while_another_process_writes)
    export_project("src", "davis", tmp_path / "export", settings)
    monkeypatch.undo()
    assert import_annotations("dst", "davis", tmp_path / "export", settings).masks > 0
    exported = _label_maps(engine, "dst")
    assert exported.keys() == labelled.keys()
    for key, labels in labelled.items():
        np.testing.assert_array_equal(exported[key], labels)
