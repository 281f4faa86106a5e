"""Read services of the Explore, Select and Results pages: sampling, maps, similar frames, review, tables, curves."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, jobs, metrics, selections
from segloop.platform.services import explore, labeling


def test_sample_rows_is_seeded_sorted_and_bounded() -> None:
    """Small sets are kept whole; large ones give max_points distinct sorted rows, the same for the same seed."""
    np.testing.assert_array_equal(explore.sample_rows(5, 10), np.arange(5))
    first, again, other = (explore.sample_rows(1000, 50, seed) for seed in (1, 1, 2))
    assert first.size == 50 and np.unique(first).size == 50 and (np.diff(first) > 0).all() and first.max() < 1000
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    with pytest.raises(explore.ExploreError, match="max_points"):
        explore.sample_rows(10, 0)


def test_pca_puts_points_on_a_line_in_order() -> None:
    """Points along one direction keep their order (up to sign) on the first axis; the second axis is flat."""
    t = np.arange(6, dtype=np.float32)
    vectors = np.outer(t, np.array([3.0, 4.0, 0.0], dtype=np.float32))
    coords = explore.pca_2d(vectors)
    steps = np.diff(coords[:, 0])
    assert np.allclose(np.abs(steps), 5.0, atol=1e-4) and (np.all(steps > 0) or np.all(steps < 0))
    assert np.allclose(coords[:, 1], 0.0, atol=1e-4)
    assert (explore.pca_2d(np.ones((4, 3), np.float32)) == 0).all()


def test_mask_iou_by_hand() -> None:
    """Object 1: 4 px predicted, 6 px true, 3 shared -> 3 / (4 + 6 - 3) = 3/7; object 2 only predicted -> 0."""
    predicted = np.zeros((4, 4), np.uint8)
    truth = np.zeros((4, 4), np.uint8)
    predicted[0, :4] = 1
    truth[0, 1:4] = 1
    truth[1, 0:3] = 1
    predicted[3, 3] = 2
    assert explore.mask_iou(predicted, truth) == {1: pytest.approx(3 / 7), 2: 0.0}


def test_metric_table_keeps_the_newest_value_and_a_mean_row() -> None:
    """Two models, two sequences; a later value of the same cell replaces the earlier one."""
    rows = [explore.MetricRow("dog", "A", "J&F", 0.2, 1), explore.MetricRow("dog", "A", "J&F", 0.4, 2),
            explore.MetricRow("car", "A", "J&F", 0.6, 2), explore.MetricRow("car", "B", "J&F", 0.9, 3),
            explore.MetricRow("car", "B", "J", 0.1, 3)]
    models, table = explore.metric_table(rows, "J&F")
    assert models == ["A", "B"]
    assert table == [{"sequence": "car", "A": 0.6, "B": 0.9}, {"sequence": "dog", "A": 0.4, "B": None},
                     {"sequence": "mean", "A": pytest.approx(0.5), "B": 0.9}]


def test_overall_table_has_one_row_per_model() -> None:
    """Whole-project metrics pivot to model rows; the newest value wins and missing cells are None."""
    rows = [explore.MetricRow("", "vss", "mIoU", 0.3, 1), explore.MetricRow("", "vss", "mIoU", 0.35, 2),
            explore.MetricRow("", "vos", "J&F", 0.6, 3)]
    assert explore.overall_table(rows) == (["J&F", "mIoU"], [{"model": "vos", "J&F": 0.6, "mIoU": None},
                                                            {"model": "vss", "J&F": None, "mIoU": 0.35}])


def test_parse_bench_reads_both_formats_and_skips_others(tmp_path: Path) -> None:
    """Active-learning results average over seeds with min/max; keyframe results use J&F; other files are None."""
    al = tmp_path / "al.json"
    al.write_text(json.dumps({"task": "vos", "metric": "J&F", "ceiling": 0.8, "results": [
        {"strategy": "random", "budget": 2, "seed": 0, "labeled_frames": 2, "value": 0.3},
        {"strategy": "random", "budget": 2, "seed": 1, "labeled_frames": 2, "value": 0.5},
        {"strategy": "kcenter", "budget": 2, "seed": 0, "labeled_frames": 2, "value": 0.6}]}))
    curve = explore.parse_bench(al)
    assert curve.kind == "active_learning" and curve.ceiling == 0.8 and curve.y_label == "J&F"
    by_series = {p["series"]: p for p in curve.points}
    assert by_series["random"] == {"series": "random", "x": 2.0, "y": pytest.approx(0.4), "low": 0.3, "high": 0.5,
                                   "runs": 2}
    keyframes = tmp_path / "kf.json"
    keyframes.write_text(json.dumps({"results": [{"strategy": "uniform", "budget": 3, "J&F": 0.7, "sequences": 4}]}))
    assert explore.parse_bench(keyframes).points == [{"series": "uniform", "x": 3.0, "y": 0.7, "low": 0.7,
                                                       "high": 0.7, "runs": 1}]
    other = tmp_path / "ingest.json"
    other.write_text(json.dumps({"frames_per_second": 200}))
    assert explore.parse_bench(other) is None
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(explore.ExploreError, match="broken.json"):
        explore.parse_bench(broken)



def test_map_points_and_similar_frames(engine, settings, footage_project, embedded) -> None:
    """PCA places every frame with its video and status; a cached t-SNE map is read back; the nearest frame of a
    frame under cosine similarity is found by FAISS and the index file is reused."""
    with session_scope(engine) as session:
        frame = footage.list_frames(session, footage_project.video_ids[0], limit=1)[0]
    labels = labeling.load_frame_labels(engine, frame.id).labels
    labels[:4, :4] = 1
    labeling.save_frame_labels(engine, frame.id, labels, {}, status="submitted")
    points = explore.map_points(engine, settings, embedded, "pca", max_points=10)
    assert len(points) == 10 and all(np.isfinite([p.x, p.y]).all() for p in points)
    full = {p.frame_id: p for p in explore.map_points(engine, settings, embedded, "pca")}
    assert len(full) == 24 and full[frame.id].status == "submitted" and full[frame.id].index == 0
    assert explore.map_points(engine, settings, embedded, "tsne", max_points=24) is None
    explore.compute_map(embedded, settings, "tsne", max_points=24, perplexity=5.0)
    tsne = explore.map_points(engine, settings, embedded, "tsne", max_points=24)
    assert {p.frame_id for p in tsne} == set(full)
    index = explore.similarity_index(embedded, settings)
    found = explore.similar_frames(index, frame.id, k=5)
    vectors, ids = explore.sample_vectors(embedded, settings, 100)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = unit @ unit[list(ids).index(frame.id)]
    cosine[list(ids).index(frame.id)] = -np.inf
    assert found[0][0] == int(ids[int(np.argmax(cosine))]) and len(found) == 5 and frame.id not in [f for f, _ in found]
    assert found[0][1] == pytest.approx(float(cosine.max()), abs=1e-4)
    index_file = Path(settings.data_dir / embedded.vectors_path).with_name(
        Path(embedded.vectors_path).stem + "-cosine.faiss")
    stamp = index_file.stat().st_mtime_ns
    explore.similarity_index(embedded, settings)
    assert index_file.stat().st_mtime_ns == stamp


def test_review_accepts_some_and_rejects_the_rest(engine, footage_project) -> None:
    """Accepting two and rejecting one changes three items; a frame in both lists is refused."""
    with session_scope(engine) as session:
        frames = footage.list_frames(session, footage_project.video_ids[0])
        run = selections.add_selection(session, footage_project.project_id, "kcenter", 3,
                                       [(frames[i].id, 1.0 - i / 10, "far") for i in (2, 5, 8)])
    page = explore.review_page(engine, run.id, limit=2)
    assert page.total == 3 and page.by_status == {"proposed": 3} and [i.rank for i in page.items] == [1, 2]
    assert page.items[0].frame.index == 2 and page.items[0].reason == "far"
    assert explore.review_picks(engine, run.id, [frames[2].id, frames[5].id], [frames[8].id]) == 3
    assert explore.review_page(engine, run.id).by_status == {"accepted": 2, "rejected": 1}
    with pytest.raises(explore.ExploreError, match="both accepted and rejected"):
        explore.review_picks(engine, run.id, [frames[2].id], [frames[2].id])
    assert explore.accept_all(engine, run.id) == 1


def test_metric_rows_name_the_model_and_compare_masks(engine, footage_project) -> None:
    """Metric rows carry the propagate job's backbone; a frame with a propagated then a manual mask compares both."""
    with session_scope(engine) as session:
        job = jobs.submit_job(session, "propagate", {"video_ids": [1], "method": "backbone", "backbone": "vit_tiny"})
        metrics.add_metrics(session, [("video", "clip", "J&F", 0.5), ("video", "clip", "J", 0.4)], job_id=job.id,
                            project_id=footage_project.project_id)
        frame = footage.list_frames(session, footage_project.video_ids[0])[3]
        predicted = np.zeros((64, 96), bool)
        predicted[0:10, 0:10] = True
        annotation_store.save_annotation(session, frame.id, 1, predicted, "propagated", status="draft")
        truth = np.zeros((64, 96), bool)
        truth[0:10, 0:5] = True
        annotation_store.save_annotation(session, frame.id, 1, truth, "manual", status="submitted")
        other = footage.list_frames(session, footage_project.video_ids[0])[5]
        annotation_store.save_annotation(session, other.id, 1, predicted, "propagated", status="draft")
    rows = explore.metric_rows(engine, footage_project.project_id)
    assert [(r.sequence, r.model, r.metric, r.value) for r in rows] == [
        ("clip", "propagate: vit_tiny", "J&F", 0.5), ("clip", "propagate: vit_tiny", "J", 0.4)]
    assert explore.videos_with_predictions(engine, footage_project.project_id)[0][2] == 2
    listed, total = explore.predicted_frames(engine, footage_project.video_ids[0])
    assert total == 2 and [(f.id, human) for f, human in listed] == [(frame.id, True), (other.id, False)]
    listed, total = explore.predicted_frames(engine, footage_project.video_ids[0], only_with_human=True)
    assert total == 1 and listed[0][0].id == frame.id
    comparison = explore.compare_masks(engine, frame.id)
    assert comparison.predicted.sum() == 100 and comparison.human.sum() == 50
    assert comparison.iou == {1: pytest.approx(0.5)}


def test_keyframes_are_the_most_recently_labeled(engine, footage_project) -> None:
    """With frames 7, then 2, then 9 labeled, the last two are 2 and 9; 0 means every labeled frame."""
    video_id = footage_project.video_ids[0]
    with session_scope(engine) as session:
        frames = footage.list_frames(session, video_id)
    with pytest.raises(labeling.LabelingError, match="no frame has a manual or imported mask"):
        labeling.keyframe_spec(engine, video_id, 1)
    for index in (7, 2, 9):
        labels = np.zeros((64, 96), np.uint8)
        labels[10:20, 10:20] = 1
        labeling.save_frame_labels(engine, frames[index].id, labels, {}, status="submitted")
    assert labeling.keyframe_spec(engine, video_id, 2) == "2,9"
    assert labeling.keyframe_spec(engine, video_id, 0) is None
    request = labeling.PropagationRequest(method="pixels", last_keyframes=1)
    params = labeling.propagation_params(engine, video_id, request)
    assert params["keyframes"] == "9" and params["video_ids"] == [video_id]
    with pytest.raises(labeling.LabelingError, match="propagation method"):
        labeling.propagation_params(engine, video_id, labeling.PropagationRequest(method="magic"))


def test_more_like_this_from_other_videos_only(engine, settings, footage_project, embedded) -> None:
    """With other_videos, the k neighbours all come from the other video (12 frames there), most similar first."""
    index = explore.similarity_index(embedded, settings)
    with session_scope(engine) as session:
        frame = footage.list_frames(session, footage_project.video_ids[0])[3]
    found = explore.similar_frames(index, frame.id, 5, engine, other_videos=True)
    rows = explore.frame_rows(engine, [f for f, _ in found])
    assert len(found) == 5 and {rows[f][0].video_id for f, _ in found} == {footage_project.video_ids[1]}
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    everything = explore.similar_frames(index, frame.id, 40, engine, other_videos=True)
    assert len(everything) == 12 and frame.id not in {f for f, _ in everything}


def test_a_box_on_the_map_queues_its_frames(engine, settings, footage_project, embedded) -> None:
    """The points inside a box (corners in any order) become a 'manual' selection run in map order."""
    points = explore.map_points(engine, settings, embedded, "pca", 100, 0)
    xs = sorted(p.x for p in points)
    box = {"x": [xs[10], xs[0]], "y": [min(p.y for p in points), max(p.y for p in points)]}
    inside = explore.points_in_box(points, box)
    assert len(inside) == 11 and explore.points_in_box(points, {}) == []
    run = explore.queue_frames(engine, footage_project.project_id, [p.frame_id for p in inside], "box on the map")
    with session_scope(engine) as session:
        items = selections.selection_items(session, run.id)
    assert run.strategy == "manual" and [i.frame_id for i in items] == [p.frame_id for p in inside]
    with pytest.raises(explore.ExploreError, match="no frame chosen"):
        explore.queue_frames(engine, footage_project.project_id, [], "box")
    twice = explore.queue_frames(engine, footage_project.project_id, [inside[0].frame_id] * 2, "twice")
    assert twice.budget == 1  # a duplicate id was a database IntegrityError showing the SQL


def test_frames_of_another_project_cannot_be_queued_from_the_map(engine, settings, footage_project,
                                                                synth_root) -> None:
    """The map's lasso queued any frame id into the project's run (another project's frames showed up in its review
    page); a missing id was a database IntegrityError. Both are refused naming the frames, nothing stored."""
    from segloop.platform.core.errors import ValidationError
    from segloop.platform.media.ingest import IngestOptions, ingest_paths

    assert not ingest_paths([synth_root / "videos"], IngestOptions(project="elsewhere"), settings).failed
    with session_scope(engine) as session:
        from segloop.platform.db.stores import footage, projects

        other = projects.get_project(session, "elsewhere")
        theirs = [f.id for f in footage.project_frames(session, other.id)[:2]]
    for chosen in (theirs, [10**9]):
        with pytest.raises(ValidationError, match="are not frames of project 'ui'"):
            explore.queue_frames(engine, footage_project.project_id, chosen, "lasso")
    with session_scope(engine) as session:
        assert selections.list_selections(session, footage_project.project_id) == []


def _grid_points(size: int = 5) -> list[explore.MapPoint]:
    """Map points on an integer grid 0..size-1 in x and y (frame id = 100 + 10 x + y)."""
    return [explore.MapPoint(100 + 10 * x + y, float(x), float(y), f"v{x % 2}", y, "unlabeled", "", None,
                             "not picked", None) for x in range(size) for y in range(size)]


def test_a_lasso_event_gathers_the_points_inside_its_polygon() -> None:
    """A Plotly lasso event (an L-shaped polygon, not convex) gathers exactly the grid points inside the L, in map
    order, whether or not the event also lists the points; a box does the same for a rectangle; lasso and box
    together gather both; a single clicked point opens that frame; several clicks gather them; ids not on the map
    and malformed events are ignored."""
    points = _grid_points()
    # The L: x in [-0.5, 1.5] for any y in [-0.5, 4.5], plus y in [-0.5, 1.5] for any x in [-0.5, 4.5].
    lasso = {"xref": "x", "yref": "y", "x": [-0.5, 4.5, 4.5, 1.5, 1.5, -0.5], "y": [-0.5, -0.5, 1.5, 1.5, 4.5, 4.5]}
    inside_l = [p.frame_id for p in points if p.x <= 1 or p.y <= 1]
    assert len(inside_l) == 25 - 9
    for listed in ([], [{"customdata": [p.frame_id, "v"], "x": p.x, "y": p.y} for p in points if p.x <= 1]):
        picked = explore.read_map_selection(points, {"points": listed, "box": [], "lasso": [lasso]})
        assert picked.clicked is None and picked.how == "lasso"
        assert [p.frame_id for p in picked.gathered] == inside_l
    box = {"xref": "x", "yref": "y", "x": [4.5, 2.5], "y": [4.2, 2.8]}
    boxed = explore.read_map_selection(points, {"points": [], "box": [box], "lasso": []})
    assert [p.frame_id for p in boxed.gathered] == [133, 134, 143, 144] and boxed.how == "box"
    both = explore.read_map_selection(points, {"points": [], "box": [box], "lasso": [lasso]})
    assert [p.frame_id for p in both.gathered] == sorted(inside_l + [133, 134, 143, 144])
    assert both.how == "lasso and box"
    clicked = explore.read_map_selection(points, {"points": [{"customdata": [122, "v0", 2]}], "box": [], "lasso": []})
    assert clicked.clicked == 122 and clicked.gathered == [] and clicked.how == "click"
    clicks = explore.read_map_selection(points, {"points": [{"customdata": [141]}, {"customdata": [100]},
                                                            {"customdata": [999]}]})
    assert clicks.clicked is None and [p.frame_id for p in clicks.gathered] == [100, 141] and clicks.how == "clicks"
    for junk in (None, {}, {"points": "x"}, {"lasso": [{"x": [0, 1], "y": [0, 1]}]}, {"lasso": [{"x": "ab"}]},
                 {"box": [{"x": ["a", 1], "y": [0, 1]}]}, {"points": [{"customdata": [True]}, {"customdata": "7"}]}):
        empty = explore.read_map_selection(points, junk)
        assert empty.clicked is None and empty.gathered == []
