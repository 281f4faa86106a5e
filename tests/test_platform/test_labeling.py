"""Labeling services: edits rasterised with hand-checkable pixels, versioned saves, conflicts, imports, the queue."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from segloop.platform.core.errors import ValidationError
from segloop.platform.core.masks import write_mask
from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, selections
from segloop.platform.db.stores.annotations import ConflictError
from segloop.platform.services import labeling


def test_label_runs_round_trip_and_count_runs() -> None:
    """A 3x4 map with runs 0×5, 2×3, 0×4 encodes as [0, 5, 2, 3, 0, 4] and decodes back exactly."""
    labels = np.zeros((3, 4), np.uint8)
    labels.flat[5:8] = 2
    runs = labeling.label_runs(labels)
    assert runs == [0, 5, 2, 3, 0, 4]
    np.testing.assert_array_equal(labeling.labels_from_runs(runs, 3, 4), labels)


@pytest.mark.parametrize("runs, message", [
    ([0, 5, 2, 3], "cover 8 pixels"),
    ([0, 12, 1], "pairs"),
    ([300, 12], "0..255"),
    ([0, 0, 1, 12], "cover"),
    ([0, 6.5, 1, 5.5], "integers"),
    ("0,12", "pairs"),
    ([1, 10**30], r"larger than any frame \(this one has 12 pixels\)"),
])
def test_bad_label_runs_are_refused_with_the_reason(runs, message) -> None:
    """Malformed label maps from the canvas raise LabelingError saying what is wrong."""
    with pytest.raises(labeling.LabelingError, match=message):
        labeling.labels_from_runs(runs, 3, 4)


def test_object_classes_are_checked_against_the_project() -> None:
    """Classes sent by the canvas: known ids and None pass; an unknown class id or object id is refused."""
    assert labeling.object_classes_from({"1": 7, "2": None}, {7}) == {1: 7, 2: None}
    with pytest.raises(labeling.LabelingError, match="does not have"):
        labeling.object_classes_from({"1": 8}, {7})
    with pytest.raises(labeling.LabelingError, match="1..255"):
        labeling.object_classes_from({"0": 7}, {7})


def first_frame(engine, video_id: int):
    """The first frame of a video."""
    with session_scope(engine) as session:
        return footage.list_frames(session, video_id, limit=1)[0]


def test_save_creates_versions_only_for_changed_objects(engine, footage_project) -> None:
    """Saving twice: the first save makes version 1 of two objects, the second only version 2 of the changed one."""
    frame = first_frame(engine, footage_project.video_ids[0])
    loaded = labeling.load_frame_labels(engine, frame.id)
    assert loaded.versions == {} and not loaded.labels.any()
    labels = loaded.labels.copy()
    labels[0:10, 0:10] = 1
    labels[20:30, 20:30] = 2
    first = labeling.save_frame_labels(engine, frame.id, labels, loaded.versions, author="ann")
    assert first.saved == {1: 1, 2: 1}
    again = labeling.load_frame_labels(engine, frame.id)
    assert again.versions == {1: 1, 2: 1} and again.statuses == {1: "draft", 2: "draft"}
    np.testing.assert_array_equal(again.labels, labels)
    labels[0:10, 0:10] = 0
    second = labeling.save_frame_labels(engine, frame.id, labels, again.versions, status="submitted")
    assert second.saved == {1: 2} and second.restatused == (2,)
    with session_scope(engine) as session:
        latest = {a.object_id: a for a in annotation_store.latest_annotations(session, frame.id)}
    assert latest[1].area == 0 and latest[1].status == "submitted" and latest[2].version == 1
    assert latest[2].status == "submitted" and latest[2].author == "ann"


def test_stale_save_is_refused_and_writes_nothing(engine, footage_project) -> None:
    """Two editors load version 0; the second save raises ConflictError and stores nothing."""
    frame = first_frame(engine, footage_project.video_ids[0])
    alice = labeling.load_frame_labels(engine, frame.id)
    bob = labeling.load_frame_labels(engine, frame.id)
    alice_labels = alice.labels.copy()
    alice_labels[:5, :5] = 1
    labeling.save_frame_labels(engine, frame.id, alice_labels, alice.versions)
    bob_labels = bob.labels.copy()
    bob_labels[-5:, -5:] = 2
    with pytest.raises(ConflictError, match="object 1: you edited version 0, but version 1"):
        labeling.save_frame_labels(engine, frame.id, bob_labels, bob.versions)
    after = labeling.load_frame_labels(engine, frame.id)
    assert after.versions == {1: 1}


def test_unchanged_save_writes_nothing(engine, footage_project) -> None:
    """Saving the loaded labels again as the same status changes nothing."""
    frame = first_frame(engine, footage_project.video_ids[0])
    loaded = labeling.load_frame_labels(engine, frame.id)
    labels = loaded.labels.copy()
    labels[3:6, 3:6] = 4
    labeling.save_frame_labels(engine, frame.id, labels, loaded.versions)
    reloaded = labeling.load_frame_labels(engine, frame.id)
    outcome = labeling.save_frame_labels(engine, frame.id, reloaded.labels, reloaded.versions)
    assert not outcome.changed
    submitted = labeling.save_frame_labels(engine, frame.id, reloaded.labels, reloaded.versions, status="submitted")
    assert submitted.saved == {} and submitted.restatused == (4,)
    # Saving a draft of an unchanged submitted frame does not demote it.
    assert not labeling.save_frame_labels(engine, frame.id, reloaded.labels, reloaded.versions).changed
    assert labeling.load_frame_labels(engine, frame.id).statuses == {4: "submitted"}


@pytest.mark.parametrize(("labels", "message"), [
    (np.full((64, 96), 1.5), "label map: object ids must be whole numbers"),
    (np.zeros(96, np.uint8), r"label map: expected a 2-D map of object ids \(height x width\), got 1 dimension"),
    (None, "label map: expected a 2-D map"),
    (np.zeros((64, 96, 3), np.uint8), "got 3 dimension"),
    (np.full((64, 96), 300), r"label map: object ids must be in 0\.\.255"),
])
def test_a_label_map_that_is_not_object_ids_is_refused(labels, message: str, engine, footage_project) -> None:
    """A float map saved nothing without a word; a 1-D map raised IndexError; a 64x96x3 map was 'label map is 96x64,
    frame is 96x64'."""
    frame = first_frame(engine, footage_project.video_ids[0])
    with pytest.raises(labeling.LabelingError, match=message):
        labeling.save_frame_labels(engine, frame.id, labels, {})


def test_a_class_of_another_project_or_none_is_refused(engine, footage_project, settings, synth_root) -> None:
    """A class id of another project was stored on the frame; an unknown one failed on the foreign key and was
    reported as 'another save of version 2 won' (a conflict no reload could solve)."""
    from segloop.platform.media.ingest import IngestOptions, ingest_paths

    assert not ingest_paths([synth_root / "videos"], IngestOptions(project="other"), settings).failed
    with session_scope(engine) as session:
        from segloop.platform.db.stores import projects

        other = projects.get_project(session, "other").id
    foreign = labeling.add_label_class(engine, other, "car").id
    with pytest.raises(ValueError, match="label class name: expected text, got null"):  # an AttributeError before
        labeling.add_label_class(engine, other, None)
    frame = first_frame(engine, footage_project.video_ids[0])
    labels = np.zeros((64, 96), np.uint8)
    labels[:5, :5] = 1
    for class_id in (foreign, 9999):
        with pytest.raises(labeling.LabelingError, match=f"classes: class id {class_id} is not a label class of"):
            labeling.save_frame_labels(engine, frame.id, labels, {}, {1: class_id})
    assert labeling.load_frame_labels(engine, frame.id).versions == {}


def png_bytes(array: np.ndarray, mode: str) -> bytes:
    """A PNG of `array` in PIL mode `mode`."""
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_import_mask_png_binary_and_palette(tmp_path) -> None:
    """A 0/255 PNG becomes object 1; a palette PNG keeps its ids; wrong sizes and non-PNGs are refused."""
    binary = np.zeros((4, 6), np.uint8)
    binary[1:3, 2:5] = 255
    labels = labeling.import_mask_png(png_bytes(binary, "L"), "m.png", 4, 6)
    np.testing.assert_array_equal(labels, (binary > 0).astype(np.uint8))
    ids = np.zeros((4, 6), np.uint8)
    ids[0, 0], ids[3, 5] = 1, 2
    write_mask(tmp_path / "p.png", ids, style="palette")
    np.testing.assert_array_equal(labeling.import_mask_png((tmp_path / "p.png").read_bytes(), "p.png", 4, 6), ids)
    with pytest.raises(labeling.LabelingError, match="m.png: mask is 6x4, frames are 8x4"):
        labeling.import_mask_png(png_bytes(binary, "L"), "m.png", 4, 8)
    with pytest.raises(labeling.LabelingError, match="x.png: unreadable mask image \\(not an image file\\)"):
        labeling.import_mask_png(b"not an image", "x.png", 4, 6)


def test_queue_skips_done_frames_and_follows_selection_rank(engine, footage_project) -> None:
    """The video queue leaves out submitted frames; a selection run's queue is its picks in rank order."""
    video_id = footage_project.video_ids[0]
    with session_scope(engine) as session:
        frames = footage.list_frames(session, video_id)
    page = labeling.label_queue(engine, footage_project.project_id, video_id=video_id, limit=5)
    assert page.total == 12 and [i.frame.index for i in page.items] == [0, 1, 2, 3, 4]
    loaded = labeling.load_frame_labels(engine, frames[0].id)
    labels = loaded.labels.copy()
    labels[:4, :4] = 1
    labeling.save_frame_labels(engine, frames[0].id, labels, {}, status="submitted")
    labeling.save_frame_labels(engine, frames[1].id, labels, {}, status="draft")
    page = labeling.label_queue(engine, footage_project.project_id, video_id=video_id, limit=2)
    assert page.total == 11 and [(i.frame.index, i.status) for i in page.items] == [(1, "draft"), (2, "unlabeled")]
    everything = labeling.label_queue(engine, footage_project.project_id, video_id=video_id, include_done=True, limit=1)
    assert everything.total == 12 and everything.items[0].status == "submitted"
    for offset, limit in ((-1, 5), (0, 0), (0, -1)):
        with pytest.raises(ValidationError, match="queue page"):
            labeling.label_queue(engine, footage_project.project_id, video_id=video_id, offset=offset, limit=limit)
    with session_scope(engine) as session:
        run = selections.add_selection(session, footage_project.project_id, "test", 3,
                                       [(frames[7].id, 0.9, "a"), (frames[0].id, 0.8, "b"), (frames[3].id, 0.7, "c")])
    picks = labeling.label_queue(engine, footage_project.project_id, selection_id=run.id)
    assert [(i.frame.index, i.rank) for i in picks.items] == [(7, 1), (3, 3)]
    nxt = labeling.queue_neighbour(engine, footage_project.project_id, frames[7].id, 1, selection_id=run.id)
    assert nxt.index == 3
    assert labeling.queue_neighbour(engine, footage_project.project_id, frames[3].id, 1, selection_id=run.id) is None
    prev = labeling.queue_neighbour(engine, footage_project.project_id, frames[2].id, -1, video_id=video_id)
    assert prev.index == 1


def test_overlay_blends_only_labeled_pixels() -> None:
    """Background pixels keep the frame colour; object pixels move halfway to the palette colour."""
    image = np.full((2, 2, 3), 100, np.uint8)
    labels = np.array([[0, 1], [0, 0]], np.uint8)
    out = labeling.overlay(image, labels, 0.5)
    assert (out[0, 0] == 100).all()
    red = labeling.palette_rgb()[1]
    np.testing.assert_array_equal(out[0, 1], ((100 + red.astype(int)) / 2).astype(np.uint8))


def test_timeline_worst_draft_and_the_span_a_correction_affects() -> None:
    """Keyframes at 0 and 9 with drafts between: correcting draft 4 re-propagates 0..9; a draft run ending at an
    unlabelled frame stops there; the worst draft is the one with the highest disagreement."""
    from segloop.platform.services.timeline import Timeline

    kinds = "hdddddddds" + "dd.."
    scores = tuple(None if k != "d" else 0.1 * (i % 5) for i, k in enumerate(kinds))
    line = Timeline(1, tuple(range(len(kinds))), kinds, scores)
    assert line.worst_draft() == 4
    assert line.affected_span(4) == (0, 9)
    assert line.affected_span(10) == (9, 11)
    assert line.affected_span(13) is None


def test_a_frame_whose_image_is_gone_is_named_without_the_servers_path(engine, footage_project, settings) -> None:
    """The Label page showed '<data dir>/frames/<video>-<key>/00001.jpg: missing or unreadable image'."""
    frame = first_frame(engine, footage_project.video_ids[0])
    (settings.data_dir / frame.image_path).unlink()
    with pytest.raises(labeling.LabelingError) as refused:
        labeling.frame_image(settings.data_dir, frame)
    assert str(refused.value).startswith(f"frame #0 (id {frame.id}): its stored image is missing or unreadable")
    assert str(settings.data_dir) not in str(refused.value)
