"""The Explore, Select and Results pages, the Label page's propagate button and the Jobs forms (Streamlit AppTest
against a real database); each main interaction is checked in the database."""
from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import artifacts, footage, metrics, selections
from segloop.platform.db.stores import jobs as job_store
from segloop.platform.services import labeling, tags

from .conftest import page_script

TIMEOUT = 60
TINY = {"backbone": "vit_tiny_patch16_224", "img_size": 32}


def page(name: str) -> AppTest:
    """An AppTest of one page, run once, that raised nothing."""
    app = AppTest.from_string(page_script(name), default_timeout=TIMEOUT).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def ok(app: AppTest) -> AppTest:
    """The app after a run that raised nothing."""
    assert not app.exception, [e.value for e in app.exception]
    return app



def all_jobs(engine):
    """Every job, oldest first."""
    with session_scope(engine) as session:
        return list(reversed(job_store.list_jobs(session)))


def test_select_embeds_runs_and_accepts_into_the_label_queue(engine, footage_project) -> None:
    """No embedding set → embed here → run k-center with budget 4 → uncheck one pick → accept the others:
    3 accepted and 1 rejected in the DB, and the Label page's queue is those 3."""
    app = page("select_frames")
    assert "embed the project above first" in app.info[0].value
    app.selectbox(key="select_embed_backbone").set_value(TINY["backbone"])
    app.number_input(key="select_embed_size").set_value(TINY["img_size"])
    ok(app.button(key="select_embed_inline").click().run())
    with session_scope(engine) as session:
        sets = artifacts.list_embedding_sets(session, footage_project.project_id)
    assert len(sets) == 1 and sets[0].count == 24 and sets[0].backbone == TINY["backbone"]
    app.number_input(key="select_budget").set_value(4)
    ok(app.button(key="select_run_go").click().run())
    with session_scope(engine) as session:
        runs = selections.list_selections(session, footage_project.project_id)
        assert len(runs) == 1 and runs[0].strategy == "kcenter" and runs[0].embedding_set_id == sets[0].id
        items = selections.selection_items(session, runs[0].id)
    assert len(items) == 4 and all(i.status == "proposed" and i.reason for i in items)
    assert len(app.get("image")) == 4
    dropped = items[2].frame_id
    app.checkbox(key=f"select_keep_{runs[0].id}_{dropped}").uncheck()
    ok(app.button(key="select_accept_checked").click().run())
    with session_scope(engine) as session:
        statuses = {i.frame_id: i.status for i in selections.selection_items(session, runs[0].id)}
    assert statuses.pop(dropped) == "rejected" and set(statuses.values()) == {"accepted"}
    label = page("label")
    assert label.selectbox(key="label_queue").value == ("selection", runs[0].id)
    assert label.expander[-1].label == "Queue: 3 frame(s) to label"
    assert label.session_state["label_session"].frame_id == items[0].frame_id


def test_select_other_strategy_with_params_and_as_a_job(engine, footage_project, embedded) -> None:
    """Random with seed 5 runs inline with that seed recorded; the job toggle queues a select job instead."""
    app = page("select_frames")
    app.selectbox(key="select_strategy").select("random").run()
    app.number_input(key="select_param_random_seed").set_value(5)
    app.number_input(key="select_budget").set_value(3)
    ok(app.button(key="select_run_go").click().run())
    with session_scope(engine) as session:
        run = selections.list_selections(session, footage_project.project_id)[0]
    assert run.strategy == "random" and run.params["seed"] == 5 and run.params["constraints"]["budget"] == 3
    app.toggle(key="select_as_job").set_value(True)
    ok(app.button(key="select_run_go").click().run())
    queued = all_jobs(engine)
    assert [j.kind for j in queued] == ["select"]
    assert queued[0].params["strategy"] == "random" and queued[0].params["params"] == {"seed": 5}
    assert queued[0].params["embedding_set_id"] == embedded.id and queued[0].params["budget"] == 3


def test_select_more_constraints_reach_the_run_and_the_job(engine, footage_project, embedded) -> None:
    """The folded constraints (a time range, a gap in seconds, labelled frames included) shape the inline run and
    go with a select job; a range's end left at 0 is the project's end at the time of the run (a remembered number
    would silently cut off footage ingested while the page was open)."""
    app = page("select_frames")
    app.selectbox(key="select_strategy").select("random").run()
    app.number_input(key="select_budget").set_value(3)
    with session_scope(engine) as session:
        stamps = {f.id: f.timestamp for f in footage.project_frames(session, footage_project.project_id)}
    latest = max(stamps.values())
    app.number_input(key="select_from").set_value(latest / 2)
    ok(app.button(key="select_run_go").click().run())
    assert not app.error, [e.value for e in app.error]
    with session_scope(engine) as session:
        run = selections.list_selections(session, footage_project.project_id)[0]
        assert run.params["constraints"]["time_range"] == [latest / 2, np.ceil(latest)]
    app.number_input(key="select_from").set_value(0.0)
    app.number_input(key="select_to").set_value(latest / 2)
    app.number_input(key="select_gap_seconds").set_value(0.01)
    app.checkbox(key="select_include_labeled").check()
    ok(app.button(key="select_run_go").click().run())
    with session_scope(engine) as session:
        run = selections.list_selections(session, footage_project.project_id)[0]
        picked = [i.frame_id for i in selections.selection_items(session, run.id)]
    constraints = run.params["constraints"]
    assert constraints["time_range"] == [0.0, latest / 2] and constraints["min_gap_seconds"] == 0.01
    assert constraints["exclude_labeled"] is False and constraints["exclude_selected"] is True
    assert picked and all(stamps[f] <= latest / 2 for f in picked)
    app.toggle(key="select_as_job").set_value(True)
    ok(app.button(key="select_run_go").click().run())
    [job] = all_jobs(engine)
    assert (job.params["time_range"], job.params["include_labeled"], job.params["min_gap_seconds"]) == (
        [0.0, latest / 2], True, 0.01)


def test_explore_map_open_frame_and_more_like_this(engine, settings, footage_project, embedded) -> None:
    """The PCA map holds all 24 frames (one trace per video, each point carrying its frame id); a clicked point
    opens its frame, which lists its 5 most similar frames; t-SNE is queued as a map2d job, and once computed the
    map shows it."""
    app = page("explore")
    charts = app.get("plotly_chart")
    assert len(charts) == 1 and "24 of 24 frames shown" in app.caption[0].value
    figure = json.loads(charts[0].proto.spec)
    assert [len(trace["x"]) for trace in figure["data"]] == [12, 12]
    assert {trace["name"] for trace in figure["data"]} == {"synth-007-000", "synth-007-001"}
    with session_scope(engine) as session:
        frame = footage.list_frames(session, footage_project.video_ids[1])[4]
    clicked = next(p for p in figure["data"][1]["customdata"] if p[0] == frame.id)
    ok(select_on_map(app, {"points": [{"customdata": clicked, "x": 0.0, "y": 0.0}], "box": [], "lasso": []}))
    assert app.session_state["explore_frame_id"] == frame.id
    assert app.subheader[0].value.endswith("frame #4 · unlabeled")
    app.slider(key="explore_k").set_value(5)
    ok(app.button(key="explore_similar").click().run())
    assert len(app.get("image")) == 1 + 5 and "5 frames most like this one" in app.markdown[-1].value
    video_name, similarity = app.get("image")[1].proto.imgs[0].caption.split(" · ")
    assert " #" in video_name and -1.0 <= float(similarity) <= 1.0
    app.selectbox(key="explore_colour").select("label status").run()
    ok(app)
    app.radio(key="explore_method").set_value("tsne").run()
    assert "not computed yet" in app.info[0].value
    ok(app.button(key="explore_tsne_go").click().run())
    job = all_jobs(engine)[-1]
    assert job.kind == "map2d" and job.params["embedding_set_id"] == embedded.id and job.params["method"] == "tsne"
    from segloop.platform.services.explore import compute_map

    compute_map(embedded, settings, "tsne", job.params["max_points"], 0, perplexity=5.0)
    ok(app.run())
    assert len(app.get("plotly_chart")) == 1


def run_as_browser(app: AppTest, values: dict[str, str], click: str | None = None) -> AppTest:
    """Rerun the page with widget values as the browser sends them ({element id: string value}), optionally with a
    button (by key) clicked in the same run: for what AppTest cannot do itself (a Plotly selection, a new option
    typed into a selectbox)."""
    states = app._tree.get_widget_states()
    by_id = {state.id: state for state in states.widgets}
    for element_id, value in values.items():
        state = by_id.get(element_id) or states.widgets.add()
        state.id, state.string_value = element_id, value
    if click is not None:
        by_id[app.button(key=click).id].trigger_value = True
    return app._run(states)


def select_on_map(app: AppTest, selection: dict) -> AppTest:
    """Rerun the page as after a selection on the Explore map: the chart's value is Streamlit's
    {"selection": {"points", "box", "lasso"}} of the event."""
    chart = app.get("plotly_chart")[0].proto.id
    return run_as_browser(app, {chart: json.dumps({"selection": {"point_indices": [], **selection}})})


def test_explore_lasso_queues_and_tags_the_gathered_frames(engine, footage_project, embedded) -> None:
    """A lasso around the first video's frames gathers those 12 frames: queued as a 'manual' run that becomes the
    Label queue, tagged 'night' (suggested the next time), coloured by that tag on the map; an empty tag name is
    refused naming the field."""
    app = page("explore")
    figure = json.loads(app.get("plotly_chart")[0].proto.spec)
    first = figure["data"][0]
    xs, ys = first["x"], first["y"]
    ring = [min(xs) - 1e-3, max(xs) + 1e-3, min(ys) - 1e-3, max(ys) + 1e-3]
    others = figure["data"][1]
    if any(ring[0] <= x <= ring[1] and ring[2] <= y <= ring[3] for x, y in zip(others["x"], others["y"])):
        pytest.skip("the two videos overlap on this map: no lasso holds one video only")
    lasso = {"x": [ring[0], ring[1], ring[1], ring[0]], "y": [ring[2], ring[2], ring[3], ring[3]]}
    wanted = [p[0] for p in first["customdata"]]
    points = [{"customdata": p, "x": x, "y": y} for p, x, y in zip(first["customdata"], xs, ys)]
    ok(select_on_map(app, {"points": points, "box": [], "lasso": [lasso]}))
    assert "12 frame(s) gathered with the lasso" in app.markdown[0].value
    ok(app.button(key="explore_queue_box").click().run())
    with session_scope(engine) as session:
        [run] = selections.list_selections(session, footage_project.project_id)
        items = selections.selection_items(session, run.id)
    assert run.strategy == "manual" and sorted(i.frame_id for i in items) == sorted(wanted)
    assert {i.reason for i in items} == {"lasso on the map"}
    assert app.session_state["label_queue"] == ("selection", run.id)
    ok(app.button(key="explore_tag_add").click().run())
    assert "tag name: must not be empty" in app.error[0].value
    ok(run_as_browser(app, {app.selectbox(key="explore_tag_name").id: "night"}, click="explore_tag_add"))
    assert "12 frame(s) tagged 'night'" in [s.value for s in app.success]
    assert sorted(tags.tagged_frames(engine, "ui", "night")) == sorted(wanted)
    assert app.selectbox(key="explore_tag_name").options == ["night"]
    ok(app.selectbox(key="explore_colour").select("tag").run())
    figure = json.loads(app.get("plotly_chart")[0].proto.spec)
    by_name = {trace["name"]: sorted(p[0] for p in trace["customdata"]) for trace in figure["data"]}
    assert by_name == {"tagged night": sorted(wanted), "not tagged": sorted(p[0] for p in others["customdata"])}


def test_label_propagate_queues_a_job_or_runs_inline(engine, footage_project, monkeypatch) -> None:
    """With one labeled frame, Propagate queues a propagate job for long videos; for short ones it runs here and
    every other frame of the video gets a propagated draft."""
    app = page("label")
    state = app.session_state["label_session"]
    labels = np.zeros_like(state.base)
    labels[10:30, 20:50] = 1
    labeling.save_frame_labels(engine, state.frame_id, labels, {}, status="submitted")
    monkeypatch.setattr(labeling, "INLINE_PROPAGATION_MAX_FRAMES", 0)
    app.selectbox(key="label_prop_method").select("pixels")
    ok(app.button(key="label_propagate").click().run())
    queued = all_jobs(engine)
    assert [j.kind for j in queued] == ["propagate"]
    assert queued[0].params["video_ids"] == [state.video.id] and queued[0].params["method"] == "pixels"
    assert any(f"Queued propagate job {queued[0].id}" in s.value for s in app.success)
    monkeypatch.setattr(labeling, "INLINE_PROPAGATION_MAX_FRAMES", 30)
    app.selectbox(key="label_prop_method").select("pixels")
    app.number_input(key="label_prop_size").set_value(64)
    ok(app.button(key="label_propagate").click().run())
    assert any("11 draft frame(s)" in s.value for s in app.success)
    with session_scope(engine) as session:
        drafts = [a for a in annotation_store.latest_annotations_for_video(session, state.video.id)
                  if a.source == "propagated"]
    assert len({a.frame_id for a in drafts}) == 11 and all(a.status == "draft" for a in drafts)


def test_results_scores_curves_and_drill_down(engine, settings, footage_project) -> None:
    """Metrics rows become a sequence × model table; benchmark files become charts; a frame with a propagated and a
    manual mask shows both with their IoU."""
    with session_scope(engine) as session:
        job = job_store.submit_job(session, "propagate", {"method": "pixels"})
        metrics.add_metrics(session, [("video", "clip-a", "J&F", 0.25), ("video", "clip-b", "J&F", 0.75)],
                            job_id=job.id, project_id=footage_project.project_id)
        checkpoint = artifacts.add_checkpoint(session, "vss", "vit_tiny_patch16_224", "/nowhere/head.pt",
                                              project_id=footage_project.project_id)
        metrics.add_metrics(session, [("overall", "", "mIoU", 0.4), ("class", "1", "IoU", 0.6)],
                            project_id=footage_project.project_id, checkpoint_id=checkpoint.id)
        frame = footage.list_frames(session, footage_project.video_ids[0])[2]
        predicted = np.zeros((64, 96), bool)
        predicted[0:10, 0:20] = True
        annotation_store.save_annotation(session, frame.id, 1, predicted, "propagated", status="draft")
        annotation_store.save_annotation(session, frame.id, 1, np.roll(predicted, 10, axis=1), "manual",
                                         status="submitted")
    bench = settings.data_dir / "bench"
    bench.mkdir(parents=True)
    (bench / "al.json").write_text(json.dumps({"task": "vos", "metric": "J&F", "ceiling": 0.9, "results": [
        {"strategy": s, "budget": b, "seed": 0, "labeled_frames": b, "value": v}
        for s, b, v in (("random", 2, 0.3), ("random", 4, 0.5), ("kcenter", 2, 0.4), ("kcenter", 4, 0.6))]}))
    (bench / "keyframes.json").write_text(json.dumps({"results": [{"strategy": "uniform", "budget": 2, "J&F": 0.5,
                                                                     "sequences": 2}]}))
    (bench / "ingest.json").write_text(json.dumps({"frames_per_second": 100}))
    app = page("results")
    assert app.dataframe[0].value["checkpoint"].tolist() == [checkpoint.id]  # the models table
    table = app.dataframe[1].value
    assert table["sequence"].tolist() == ["clip-a", "clip-b", "mean"]
    assert table["propagate: pixels"].tolist() == pytest.approx([0.25, 0.75, 0.5])
    assert app.dataframe[2].value.to_dict("records") == [
        {"model": f"checkpoint {checkpoint.id} (vss, vit_tiny_patch16_224)", "mIoU": 0.4}]
    assert app.dataframe[3].value["class"].tolist() == ["object", "mean"]  # class 1 by name
    assert len(app.get("vega_lite_chart")) == 3
    assert app.expander[0].label == "Other benchmark files (1)"
    images = app.get("image")
    assert len(images) == 2 and "object 1: IoU 0.333" in images[1].proto.imgs[0].caption

