"""The Results page after a real VSS fine-tune (Streamlit AppTest on a real database): the model is listed with its
date, job and parameters against its baseline, its loss curve is drawn from what training recorded, classes show by
name, and the project's annotations download as a DAVIS zip or a COCO JSON file."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from streamlit.testing.v1 import AppTest

from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import footage, projects
from segloop.platform.db.stores import jobs as job_store
from segloop.platform.services import labeling

from .conftest import page_script


def labelled_person(engine, footage_project) -> int:
    """A 'person' class and a square of it on 3 frames of each video; returns the class id."""
    with session_scope(engine) as session:
        person = projects.get_or_create_label_class(session, footage_project.project_id, "person").id
        frames = [f for v in footage_project.video_ids for f in footage.list_frames(session, v)[::4]]
    for frame in frames:
        loaded = labeling.load_frame_labels(engine, frame.id)
        labels = np.zeros_like(loaded.labels)
        labels[10:40, 20:60] = 1
        labeling.save_frame_labels(engine, frame.id, labels, loaded.versions, {1: person}, status="submitted")
    return person


def test_results_lists_the_model_its_curve_class_names_and_exports(engine, settings, footage_project) -> None:
    """A finetune_vss run of a job: one model row (date, job, parameters, mIoU vs majority class), a loss curve with
    one point per step, per-class rows named 'background' / 'person', and both downloads."""
    from segloop.platform.services.finetuning import finetune_vss_project
    from segloop.platform.vss.head import VSSConfig

    labelled_person(engine, footage_project)
    with session_scope(engine) as session:
        job = job_store.submit_job(session, "finetune_vss", {"project": "ui"})
    result = finetune_vss_project("ui", settings.runs_dir / "vss", short_side=32, settings=settings, job_id=job.id,
                                  config=VSSConfig(head="linear", epochs=1, min_steps=6, device="cpu"),
                                  val_fraction=0.4)
    app = AppTest.from_string(page_script("results"), default_timeout=120).run()
    assert not app.exception, [e.value for e in app.exception]
    [model] = app.dataframe[0].value.to_dict("records")
    assert model["checkpoint"] == result.checkpoint_id and model["job"] == f"finetune_vss {job.id}"
    assert model["created"][:2] == "20" and "head=linear" in model["parameters"] and "epochs=1" in model["parameters"]
    assert model["score"] == "mIoU" and model["baseline"] == "majority class"
    assert model["value"] == result.metrics["mIoU"] and model["baseline value"] == result.metrics[
        "mIoU_majority_baseline"]
    assert (model["below baseline"] != "") == (result.metrics["mIoU"] <= result.metrics["mIoU_majority_baseline"])
    curve = [c for c in app.get("vega_lite_chart") if '"step"' in c.proto.spec]
    assert len(curve) == 1
    steps = json.loads(curve[0].proto.spec)
    assert steps["encoding"]["x"]["field"] == "step"
    classes = next(d.value for d in app.dataframe if "class" in d.value.columns)
    assert set(classes["class"]) <= {"background", "person", "mean"} and "person" in set(classes["class"])
    app.button(key="results_export_go").click().run()
    download = app.get("download_button")
    assert len(download) == 1 and "ui-davis.zip" in download[0].proto.label
    app.radio(key="results_export_format").set_value("coco").run()
    app.button(key="results_export_go").click().run()
    name, data = app.session_state["results_export"][2:4]
    coco = json.loads(data)
    assert name == "ui-coco.json" and len(coco["annotations"]) == 6
    assert coco["annotations"][0]["segmentation"]["counts"]
    app.radio(key="results_export_format").set_value("davis").run()
    app.button(key="results_export_go").click().run()
    name, data = app.session_state["results_export"][2:4]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        masks = [n for n in archive.namelist() if "/Annotations/" in n and n.endswith(".png")]
    assert name == "ui-davis.zip" and len(masks) >= 6
