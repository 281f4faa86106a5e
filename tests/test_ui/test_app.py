"""The web UI pages render against a real database (Streamlit AppTest), and their main actions change it."""
from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

import segloop.ui
from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage
from segloop.platform.db.stores import jobs as job_store
from segloop.platform.services import labeling, timeline

from .conftest import page_script

APP = str(Path(segloop.ui.__file__).parent / "app.py")
TIMEOUT = 60


def page(name: str) -> AppTest:
    """An AppTest of one page, run once, that raised nothing."""
    app = AppTest.from_string(page_script(name), default_timeout=TIMEOUT).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_no_ui_module_shadows_the_standard_library() -> None:
    """`streamlit run ui/app.py` puts ui/ on sys.path, so no module or folder there may have a stdlib name."""
    import sys

    ui_dir = Path(segloop.ui.__file__).parent
    names = {p.stem for p in ui_dir.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert names and not names & set(sys.stdlib_module_names)
    assert not (ui_dir / "pages").exists(), "Streamlit would run ui/pages/*.py as old-style multipage scripts"


def test_app_entry_has_every_page(engine) -> None:
    """The entry file builds the navigation and opens the Library, which says how to add footage."""
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not app.exception
    assert "No footage yet" in app.info[0].value
    for name in ("upload", "library", "explore", "select_frames", "label", "results", "jobs"):
        assert not page(name).exception


def test_library_filters_pages_and_viewer(engine, footage_project) -> None:
    """All 24 frames on one page; one video has 12; 'labeled' finds none; View opens the frame with its masks."""
    app = page("library")
    assert app.dataframe[0].value["frames"].tolist() == [24]
    assert len(app.get("image")) == 24
    assert app.get("image")[0].captions[0].endswith("#0 · group 0 · unlabeled")
    app.selectbox(key="library_video").select(footage_project.video_ids[1]).run()
    assert len(app.get("image")) == 12 and not app.exception
    app.selectbox(key="library_status").select("labeled").run()
    assert "No frame matches" in app.info[0].value
    app.selectbox(key="library_status").select("any").run()
    with session_scope(engine) as session:
        frame = footage.list_frames(session, footage_project.video_ids[1], limit=1)[0]
    labels = labeling.load_frame_labels(engine, frame.id).labels
    labels[:8, :8] = 2
    labeling.save_frame_labels(engine, frame.id, labels, {}, status="submitted")
    app.button(key=f"library_view_{frame.id}").click().run()
    assert not app.exception
    assert app.subheader[0].value.endswith("frame #0 · submitted")
    assert app.dataframe[-1].value["object"].tolist() == [2]


def test_library_filters_frames_by_tag(engine, footage_project) -> None:
    """The Library's tag filter lists the tags with their counts and shows only the tagged frames (with a video
    chosen too: the tagged frames of that video)."""
    from segloop.platform.services import tags

    with session_scope(engine) as session:
        first, second = ([f.id for f in footage.list_frames(session, v)] for v in footage_project.video_ids)
    night = tags.tag_frames(engine, "ui", "night", [first[2], first[5], second[0]]).tag
    tags.tag_frames(engine, "ui", "blurry", [second[1]])
    app = page("library")
    tag_filter = app.selectbox(key="library_tag")
    assert tag_filter.options == ["any", "blurry (1)", "night (3)"] and len(app.get("image")) == 24
    tag_filter.select(night.id).run()
    assert not app.exception and len(app.get("image")) == 3
    assert [image.captions[0].split(" · ")[0] for image in app.get("image")] == [
        "synth-007-000 #2", "synth-007-000 #5", "synth-007-001 #0"]
    app.selectbox(key="library_video").select(footage_project.video_ids[1]).run()
    assert [image.captions[0].split(" · ")[0] for image in app.get("image")] == ["synth-007-001 #0"]


def test_library_pages_with_keyboard_buttons(engine, footage_project, monkeypatch) -> None:
    """With pages of 10, the 24 frames span 3 pages; Next / Previous (← / → shortcuts) move between them."""
    from segloop.ui.views import library as library_page

    monkeypatch.setattr(library_page, "PAGE_SIZE", 10)
    app = page("library")
    assert app.button(key="library_prev").disabled and not app.button(key="library_next").disabled
    app.button(key="library_next").click().run()
    assert app.number_input(key="library_page").value == 2
    assert app.get("image")[0].captions[0].split(" · ")[0].endswith("000 #10")
    app.button(key="library_next").click().run()
    assert len(app.get("image")) == 4 and app.button(key="library_next").disabled
    app.button(key="library_prev").click().run()
    assert app.number_input(key="library_page").value == 2 and len(app.get("image")) == 10
    app.selectbox(key="library_video").select(footage_project.video_ids[0]).run()
    assert app.number_input(key="library_page").value == 1 and len(app.get("image")) == 10


def test_upload_queues_one_ingest_job_per_file(engine, synth_root: Path) -> None:
    """Dropping a video and a damaged zip: the video becomes a queued ingest job, the zip a clear error."""
    video = sorted((synth_root / "videos").iterdir())[0]
    app = page("upload")
    app.text_input(key="upload_new_project").set_value("uploaded")
    app.file_uploader[0].set_value([(video.name, video.read_bytes(), "video/mp4"),
                                    ("broken.zip", b"PK\x03\x04 no", "application/zip")])
    app.run()
    app.button(key="upload_go").click().run()
    assert not app.exception
    with session_scope(engine) as session:
        jobs = job_store.list_jobs(session)
    assert len(jobs) == 1 and jobs[0].kind == "ingest" and jobs[0].status == "queued"
    assert jobs[0].params["project"] == "uploaded" and Path(jobs[0].params["paths"][0]).name == video.name
    assert any("broken.zip** refused" in e.value and "not a readable zip archive" in e.value for e in app.error)
    progress = app.get("progress")
    assert progress and f"job {jobs[0].id} · queued" in progress[0].proto.text
    with session_scope(engine) as session:  # a worker finds the video was ingested before: nothing new
        claimed = job_store.claim_next_job(session, "w1")
        job_store.finish_job(session, job_store.Claim.of(claimed),
                             {"frames": 0, "skipped": [f"{video.name}: already ingested as video 1 (clip)"]})
    app.run()
    assert [i.value for i in app.info] == [f"**{video.name}** added nothing: {video.name}: already ingested as video 1 "
                                           "(clip)"], [i.value for i in app.info]


_ACTIONS = itertools.count(1)


def canvas_action(app: AppTest, kind: str, labels: np.ndarray | None = None, **extra) -> AppTest:
    """Send an action from the mask editor as the browser does (labels as runs), and rerun the page."""
    state = app.session_state["label_session"]
    action = {"id": f"test-{next(_ACTIONS)}", "kind": kind, "token": state.token, "frame_id": state.frame_id,
              "dirty": labels is not None, **extra}
    if labels is not None:
        action["labels"] = labeling.label_runs(labels)
    app.session_state["label_canvas"] = {"action": action}
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def square(state, object_id: int = 1, rows=slice(0, 10), cols=slice(0, 20)) -> np.ndarray:
    """The open frame's saved labels with a rectangle of `object_id` painted on."""
    labels = state.base.copy()
    labels[rows, cols] = object_id
    return labels


def newest(engine, frame_id: int) -> list:
    """The newest annotation of each object on a frame."""
    with session_scope(engine) as session:
        return annotation_store.latest_annotations(session, frame_id)


def test_label_save_makes_a_version_and_a_conflict_keeps_the_edits(engine, footage_project) -> None:
    """Save draft stores version 1; after someone else saves version 2, saving again keeps the edits on the canvas
    (same token) next to the newer version; "keep mine" then stores version 3 with the user's pixels."""
    app = page("label")
    state = app.session_state["label_session"]
    canvas_action(app, "save", square(state), status="draft")
    assert [(a.object_id, a.version, a.area, a.status, a.source) for a in newest(engine, state.frame_id)] == [
        (1, 1, 200, "draft", "manual")]
    assert any("object 1 → version 1" in s.value for s in app.success)
    other = labeling.load_frame_labels(engine, state.frame_id)
    other_labels = other.labels.copy()
    other_labels[30:40, 30:40] = 1
    labeling.save_frame_labels(engine, state.frame_id, other_labels, other.versions, author="someone else")
    mine = app.session_state["label_session"]
    edited = square(mine, rows=slice(50, 60))
    canvas_action(app, "save", edited, status="draft")
    assert any("Not saved" in e.value and "version 2 was saved meanwhile" in e.value for e in app.error)
    kept = app.session_state["label_session"]
    assert kept.token == mine.token and kept.conflict is not None and kept.conflict.versions == {1: 2}
    assert kept.replies["conflict"]["overlay"].startswith("data:image/png")
    assert [(a.version, a.author) for a in newest(engine, state.frame_id)] == [(2, "someone else")]
    canvas_action(app, "resolve", edited, choice="mine", status="draft")
    latest = newest(engine, state.frame_id)
    assert [a.version for a in latest] == [3]
    np.testing.assert_array_equal(annotation_store.annotation_mask(latest[0]), edited == 1)


def test_label_import_png_and_submit_moves_to_the_next_frame(engine, footage_project) -> None:
    """An imported 0/255 PNG replaces the canvas; Submit stores it and the editor opens the next queue frame;
    Previous returns to the submitted frame."""
    app = page("label")
    state = app.session_state["label_session"]
    height, width = state.base.shape
    mask = np.zeros((height, width), np.uint8)
    mask[5:15, 10:30] = 255
    buffer = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buffer, format="PNG")
    importer = next(e for e in app.expander if e.label.startswith("Import a mask"))
    importer.file_uploader[0].set_value(("mask.png", buffer.getvalue(), "image/png"))
    app.run()
    app.button(key="label_import_go").click().run()
    assert not app.exception
    imported = app.session_state["label_session"]
    canvas_action(app, "save", imported.base, status="submitted")
    latest = newest(engine, state.frame_id)
    assert [(a.object_id, a.status, a.area) for a in latest] == [(1, "submitted", 200)]
    np.testing.assert_array_equal(annotation_store.annotation_mask(latest[0]), mask > 0)
    after = app.session_state["label_session"]
    assert after.frame_id != state.frame_id and after.frame.index == state.frame.index + 1
    assert app.expander[-1].label == "Queue: 11 frame(s) to label"
    canvas_action(app, "goto", target="prev")
    assert app.session_state["label_session"].frame_id == state.frame_id


def test_label_next_with_unsaved_edits_saves_a_draft_first(engine, footage_project) -> None:
    """Next with "save draft and go" stores the edits as a draft version before opening the next frame; Next
    without edits stores nothing."""
    app = page("label")
    state = app.session_state["label_session"]
    canvas_action(app, "goto", square(state, 2), target="next", save=True)
    assert [(a.object_id, a.version, a.status) for a in newest(engine, state.frame_id)] == [(2, 1, "draft")]
    second = app.session_state["label_session"]
    assert second.frame_id != state.frame_id
    canvas_action(app, "goto", target="next", save=False)
    assert newest(engine, second.frame_id) == []
    assert app.session_state["label_session"].frame_id not in (state.frame_id, second.frame_id)


def test_label_queue_follows_a_selection_run(engine, footage_project) -> None:
    """With a selection run, the Label queue defaults to its picks in rank order and Next follows the ranks."""
    from segloop.platform.db.stores import selections

    with session_scope(engine) as session:
        frames = footage.list_frames(session, footage_project.video_ids[1])
        run = selections.add_selection(session, footage_project.project_id, "k-center", 2,
                                       [(frames[9].id, 1.0, "far"), (frames[4].id, 0.5, "far")])
    app = page("label")
    assert app.selectbox(key="label_queue").value == ("selection", run.id)
    assert app.expander[-1].label == "Queue: 2 frame(s) to label"
    assert app.session_state["label_session"].frame_id == frames[9].id
    canvas_action(app, "goto", target="next")
    assert app.session_state["label_session"].frame_id == frames[4].id


def test_label_add_class_is_set_on_the_object_and_saved(engine, footage_project) -> None:
    """Stale-state bug: *Add class* created the class but the save stored class NULL. Now the new class is set on the
    object at once and a save stores it."""
    app = page("label")
    state = app.session_state["label_session"]
    canvas_action(app, "add_class", name="car", object_id=1)
    created = labeling.label_classes(engine, footage_project.project_id)
    assert [c.name for c in created] == ["car"]
    assert app.session_state["label_session"].replies["assign"]["class_id"] == created[0].id
    canvas_action(app, "save", square(state), status="draft")
    assert [(a.object_id, a.class_id) for a in newest(engine, state.frame_id)] == [(1, created[0].id)]


def test_label_frame_from_the_library_opens_under_its_own_project(engine, settings, synth_root,
                                                                  footage_project) -> None:
    """Stale-state bug: Library → *Label this frame* opened a frame of another project under the first project's
    queue. Now the page switches to the frame's project and its video's queue."""
    from segloop.platform.media.ingest import IngestOptions, ingest_paths

    assert not ingest_paths([synth_root / "videos"], IngestOptions(project="zzz-other"), settings).failed
    with session_scope(engine) as session:
        from segloop.platform.db.stores import projects

        other = projects.get_project(session, "zzz-other")
        video = footage.list_videos(session, other.id)[1]
        frame = footage.list_frames(session, video.id)[3]
    app = AppTest.from_string(page_script("label"), default_timeout=TIMEOUT)
    app.session_state["label_frame_request"] = frame.id
    app.run()
    assert not app.exception
    assert app.selectbox(key="label_project").value == "zzz-other"
    assert app.selectbox(key="label_queue").value == ("video", video.id)
    assert app.session_state["label_session"].frame_id == frame.id


def test_label_assist_replies_with_a_grabcut_proposal_and_superpixels(engine, footage_project) -> None:
    """A box becomes a GrabCut proposal inside it for the chosen object; the smart brush gets SLIC superpixels; a box
    outside the frame is refused with the field named."""
    app = page("label")
    state = app.session_state["label_session"]
    height, width = state.base.shape
    canvas_action(app, "grabcut", box=[10, 8, 60, 50], object_id=2)
    proposal = app.session_state["label_session"].replies["proposal"]
    assert proposal["object_id"] == 2 and proposal["box"] == [10, 8, 60, 50]
    mask = labeling.labels_from_runs(proposal["runs"], height, width)
    assert mask[:8].sum() == 0 and mask[:, 60:].sum() == 0 and mask[50:].sum() == 0
    canvas_action(app, "superpixels")
    runs = np.asarray(app.session_state["label_session"].replies["superpixels"]["runs"]).reshape(-1, 2)
    ids = np.repeat(runs[:, 0], runs[:, 1])
    assert ids.size == height * width and len(np.unique(ids)) > 10
    canvas_action(app, "grabcut", box=[500, 500, 600, 600], object_id=1)
    assert any("box:" in e.value for e in app.error)


def test_label_malformed_actions_are_refused_naming_the_field(engine, footage_project) -> None:
    """An action the page cannot use (as a broken or hostile client could send) is refused with the field named, and
    does nothing: a propagate without a direction raised a TypeError traceback; *Add class* with a bad object id
    created the class and then failed."""
    app = page("label")
    for direction in (None, "forward", 2, True):
        canvas_action(app, "propagate", direction=direction, count=3)
        assert any("Not done: direction:" in e.value for e in app.error), direction
    for object_id in ("x", 0, 999, None):
        canvas_action(app, "add_class", name="car", object_id=object_id)
        assert any("Not done: object_id:" in e.value for e in app.error), object_id
    assert labeling.label_classes(engine, footage_project.project_id) == []
    assert timeline.video_timeline(engine, app.session_state["label_session"].video.id).kinds.count(timeline.DRAFT) == 0


def test_label_propagate_then_correct_the_worst_draft(engine, footage_project) -> None:
    """Propagate 5 frames forward from a labelled frame: 5 drafts with a disagreement each on the timeline; opening
    the worst draft and submitting a correction makes it a keyframe and re-propagates only the drafts next to it."""
    app = page("label")
    state = app.session_state["label_session"]
    canvas_action(app, "propagate", square(state, rows=slice(20, 40), cols=slice(30, 60)), direction=1, count=5)
    assert any("Propagated 5 draft frame(s) forward" in s.value for s in app.success)
    line = timeline.video_timeline(engine, state.video.id)
    assert line.kinds[:7] == "hddddd." and all(v is not None for v in line.disagreement[1:6])
    canvas_action(app, "goto", target="worst")
    worst = app.session_state["label_session"]
    assert worst.frame.index == line.worst_draft() and worst.is_propagated_draft
    corrected = worst.base.copy()
    corrected[0:5, 0:5] = 1
    canvas_action(app, "save", corrected, status="submitted")
    after = timeline.video_timeline(engine, state.video.id)
    assert after.kinds[worst.frame.index] == "s" and after.kinds[6] == "."
    with session_scope(engine) as session:
        versions = {f.index: [a.version for a in annotation_store.latest_annotations(session, f.id)]
                    for f in footage.list_frames(session, state.video.id)[:7]}
    assert versions[0] == [1] and versions[worst.frame.index] == [2] and versions[6] == []
    assert all(versions[i] == [2] for i in range(1, 6) if i != worst.frame.index)


def test_jobs_form_list_cancel_and_retry(engine) -> None:
    """The ingest form queues a job with its defaults; cancel and retry change the job in the database."""
    from segloop.platform.core.settings import load_settings
    from segloop.platform.services import uploads

    settings = load_settings()
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    (settings.uploads_dir / "clip.mp4").write_bytes(b"not decoded in this test")
    app = page("jobs")
    app.button[0].click().run()  # the form's submit button
    assert not app.exception
    with session_scope(engine) as session:
        jobs = job_store.list_jobs(session)
    assert len(jobs) == 1 and jobs[0].status == "queued" and jobs[0].params["project"] == "default"
    assert jobs[0].params["paths"] == uploads.default_ingest_paths(settings)
    app.run()
    assert app.dataframe[0].value["status"].tolist() == ["queued"]
    app.button(key=f"jobs_cancel_{jobs[0].id}").click().run()
    with session_scope(engine) as session:
        assert job_store.get_job(session, jobs[0].id).status == "cancelled"
    app.button(key=f"jobs_retry_{jobs[0].id}").click().run()
    with session_scope(engine) as session:
        assert job_store.get_job(session, jobs[0].id).status == "queued"
    assert "(empty)" in app.code[-1].value


def test_pyproject_ships_the_views_and_the_canvas_assets() -> None:
    """The wheel needs the views package and the canvas's JS/CSS (package data), or the Label page breaks."""
    import tomllib

    config = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    assert "segloop.ui.views" in setuptools["packages"]
    assert {"*.js", "*.css"} <= set(setuptools.get("package-data", {}).get("segloop.ui", []))
    for asset in ("mask_canvas.js", "mask_canvas.css"):
        assert (Path(segloop.ui.__file__).parent / asset).is_file()


def page_text(app: AppTest) -> list[str]:
    """Every message a person reads on the page: alerts, markdown, captions, and any exception shown."""
    texts = [e.value for kind in ("error", "warning", "info", "success", "markdown", "caption")
             for e in getattr(app, kind)]
    return texts + [e.value for e in app.exception]


def assert_friendly(texts: list[str], data_dir: Path) -> None:
    """No traceback, no server path, no exception class name in any message."""
    import re

    for text in texts:
        assert "Traceback" not in text and 'File "' not in text, text
        assert str(data_dir) not in text and "site-packages" not in text and "/tmp/" not in text, text
        assert not re.search(r"\b[A-Z][A-Za-z]*(Error|Exception)\b", text), text


def test_bad_inputs_never_show_a_traceback_a_path_or_a_class_name(engine, settings, footage_project) -> None:
    """Bad values through the Jobs forms, the Select page and the Upload page: each is refused with a message, and
    no message shows a traceback, a server path or an exception class name."""
    from segloop.platform.db.stores import artifacts

    with session_scope(engine) as session:
        artifacts.add_checkpoint(session, "pretrain", "vit_tiny_patch16_224", str(settings.data_dir / "gone.pth"),
                                 project_id=footage_project.project_id)
    jobs = page("jobs")
    bad = {"ingest": ("text_area", "paths", "no-such-folder"), "pretrain": ("text_input", "config", "{bad"),
           "embed": None, "select": ("text_input", "params", "[1]"),
           "propagate": ("text_input", "keyframes", "banana"),
           "finetune_vss": ("text_input", "oracle", "nowhere/truth"),
           "finetune_vos": ("text_input", "weights", "missing.pth"), "predict": None,
           "loop_round": ("text_input", "strategy_params", "x=1"), "map2d": None}
    refusals = []
    for kind, change in bad.items():
        if change is not None:
            widget, name, value = change
            getattr(jobs, widget)(key=f"jobs_{kind}_{name}").set_value(value)
        jobs.button(key=f"FormSubmitter:jobs_{kind}_form-Queue {kind} job").click().run()
        refusals += [e.value for e in jobs.error]
        assert_friendly(page_text(jobs), settings.data_dir)
    assert len(refusals) == len(bad), refusals
    with session_scope(engine) as session:
        assert job_store.list_jobs(session) == []
    select = page("select_frames")
    select.selectbox(key="select_embed_backbone").set_value("vit_tiny_patch16_224")
    select.number_input(key="select_embed_size").set_value(32)
    select.button(key="select_embed_inline").click().run()  # the preselected encoder's file is gone: refused
    assert any("weights file is missing" in e.value for e in select.error)
    assert_friendly(page_text(select), settings.data_dir)
    select.selectbox(key="select_embed_checkpoint").select_index(0)  # random init
    select.button(key="select_embed_inline").click().run()
    select.selectbox(key="select_strategy").select("uncertainty").run()
    select.button(key="select_run_go").click().run()
    assert any("Selection not run" in e.value for e in select.error)
    assert_friendly(page_text(select), settings.data_dir)
    upload = page("upload")
    upload.file_uploader[0].set_value([("broken.zip", b"PK\x03\x04 no", "application/zip")])
    upload.run()
    upload.button(key="upload_go").click().run()
    assert upload.error
    assert_friendly(page_text(upload), settings.data_dir)


def test_review_page_refuses_a_decision_on_masks_changed_since_they_were_shown(engine, footage_project) -> None:
    """The Review page passes the versions it showed: a resubmission made while the reviewer looked is not accepted
    unseen (it was); after the page shows the new masks, Accept goes through."""
    with session_scope(engine) as session:
        frame = footage.list_frames(session, footage_project.video_ids[0], limit=1)[0]

    def submit(size: int) -> None:
        loaded = labeling.load_frame_labels(engine, frame.id)
        labels = np.zeros_like(loaded.labels)
        labels[:size, :size] = 1
        labeling.save_frame_labels(engine, frame.id, labels, loaded.versions, status="submitted")

    submit(4)
    app = page("review")
    submit(9)
    app.button(key="review_accept").click().run()
    assert any("resubmitted with other masks after you opened it" in e.value for e in app.error)
    assert newest(engine, frame.id)[0].status == "submitted"
    app.button(key="review_accept").click().run()
    assert not app.exception and newest(engine, frame.id)[0].status == "reviewed"
