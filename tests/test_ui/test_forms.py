"""One job form per kind (Streamlit AppTest on a real database): each form's pickers and bounds come from the
params spec and the project, each refuses one invalid value naming the field (nothing queued), and queues a good one.
"""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import artifacts
from segloop.platform.db.stores import jobs as job_store
from segloop.platform.services import jobs as job_service

from .test_jobs_page import jobs_page, submit


def queued(engine) -> list:
    """Every job row, oldest first."""
    with session_scope(engine) as session:
        return list(reversed(job_store.list_jobs(session)))


def refused(app: AppTest, kind: str, field: str, reason: str) -> None:
    """The form showed one error naming the kind's field and the reason."""
    errors = [e.value for e in app.error]
    assert len(errors) == 1 and errors[0].startswith(f"{kind} params: {field}: ") and reason in errors[0], errors


def pretrain_checkpoint(engine, project_id: int, path: Path) -> int:
    """A registered pretrain checkpoint of the project whose weights file is `path`."""
    with session_scope(engine) as session:
        return artifacts.add_checkpoint(session, "pretrain", "vit_tiny_patch16_224", str(path),
                                        project_id=project_id, step=10).id


def test_every_kind_has_a_form_test_here() -> None:
    """The kinds below are every built-in kind: a new kind needs its form test."""
    tested = {name.removeprefix("test_").removesuffix("_form") for name in globals() if name.endswith("_form")}
    built_in = {kind for kind in job_service.operation_descriptions() if not kind.startswith("test-")}
    assert built_in <= tested  # kinds named test-* come from the suite's job plugins


def test_ingest_form(engine, synth_root) -> None:
    """A folder that does not exist is refused naming `paths`; a real one is queued into a new project."""
    app = jobs_page()
    app.text_area(key="jobs_ingest_paths").set_value("no-such-folder")
    submit(app, "ingest")
    refused(app, "ingest", "paths", "no-such-folder does not exist")
    assert queued(engine) == []
    app.text_area(key="jobs_ingest_paths").set_value(str(synth_root / "videos"))
    app.text_input(key="jobs_ingest_project").set_value("fresh")
    submit(app, "ingest")
    [job] = queued(engine)
    assert (job.kind, job.params["project"], job.params["paths"]) == ("ingest", "fresh", [str(synth_root / "videos")])


def test_pretrain_form(engine, footage_project) -> None:
    """Config overrides that are not a JSON object are refused naming `config`; the defaults queue a job."""
    app = jobs_page()
    assert app.selectbox(key="jobs_pretrain_preset").value == "cpu_10min_vit_tiny.yaml"
    assert app.number_input(key="jobs_pretrain_steps").value is None  # optional: the preset's
    app.text_input(key="jobs_pretrain_config").set_value("{run: fast}")
    submit(app, "pretrain")
    refused(app, "pretrain", "config", "expected a mapping")
    app.text_input(key="jobs_pretrain_config").set_value('{"run": {"batch_size": 4}}')
    app.number_input(key="jobs_pretrain_steps").set_value(5)
    submit(app, "pretrain")
    [job] = queued(engine)
    assert (job.params["project"], job.params["steps"], job.params["config"]) == ("ui", 5, {"run": {"batch_size": 4}})


def test_embed_form(engine, settings, footage_project) -> None:
    """The checkpoint picker lists the project's pretrain checkpoints with date and job; one whose file went
    missing is refused naming `checkpoint_id`; the other is queued. The image size carries the spec's bounds."""
    weights = settings.data_dir / "w.pth"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(b"weights")
    good = pretrain_checkpoint(engine, footage_project.project_id, weights)
    gone = pretrain_checkpoint(engine, footage_project.project_id, settings.data_dir / "gone.pth")
    app = jobs_page()
    picker = app.selectbox(key="jobs_embed_checkpoint_id")
    assert picker.value == gone  # the project's newest pretrained encoder
    assert picker.options[1].startswith(f"checkpoint {gone} · pretrain · vit_tiny_patch16_224 · 20")
    size = app.number_input(key="jobs_embed_img_size")
    assert (size.min, size.max, size.value) == (16, 4096, 224)
    size.set_value(8)  # below the spec's minimum: the widget keeps its value
    submit(app, "embed")
    refused(app, "embed", "checkpoint_id", f"checkpoint {gone}: its weights file is missing")
    app.selectbox(key="jobs_embed_checkpoint_id").set_value(good)
    submit(app, "embed")
    [job] = queued(engine)
    assert (job.params["checkpoint_id"], job.params["img_size"]) == (good, 224)


def test_select_form(engine, footage_project, embedded) -> None:
    """Strategy parameters that are a list are refused naming `params`, a reversed time range naming `time_range`;
    the newest embedding set is offered; a time range typed as lines reaches the job as numbers."""
    app = jobs_page()
    assert app.selectbox(key="jobs_select_strategy").value == "kcenter"
    assert app.selectbox(key="jobs_select_embedding_set_id").options[1].startswith(f"{embedded.id}: ")
    app.text_input(key="jobs_select_params").set_value("[1, 2]")
    submit(app, "select")
    refused(app, "select", "params", "expected a mapping")
    app.text_input(key="jobs_select_params").set_value('{"seed": 3}')
    app.selectbox(key="jobs_select_strategy").set_value("random")
    app.text_area(key="jobs_select_time_range").set_value("5\n1")
    submit(app, "select")
    refused(app, "select", "time_range", "start must be <= end, got 5.0 and 1.0")
    app.text_area(key="jobs_select_time_range").set_value("0\n0.5")
    app.multiselect(key="jobs_select_videos").select(footage_project.video_ids[1])
    submit(app, "select")
    [job] = queued(engine)
    assert (job.params["strategy"], job.params["params"], job.params["videos"], job.params["time_range"]) == (
        "random", {"seed": 3}, [footage_project.video_ids[1]], [0, 0.5])


def test_propagate_form(engine, footage_project) -> None:
    """Videos are picked from the project; no video, then keyframes 'banana', are refused by name."""
    app = jobs_page()
    picker = app.multiselect(key="jobs_propagate_video_ids")
    assert len(picker.options) == 2 and picker.options[0].endswith("(12 frames)")
    submit(app, "propagate")
    refused(app, "propagate", "video_ids", "at least 1 item")
    app.multiselect(key="jobs_propagate_video_ids").select(footage_project.video_ids[0])
    app.text_input(key="jobs_propagate_keyframes").set_value("banana")
    submit(app, "propagate")
    refused(app, "propagate", "keyframes", "'banana' is not valid")
    assert queued(engine) == []
    app.text_input(key="jobs_propagate_keyframes").set_value("first")
    submit(app, "propagate")
    [job] = queued(engine)
    assert (job.params["video_ids"], job.params["keyframes"]) == ([footage_project.video_ids[0]], "first")


def test_finetune_vss_form(engine, settings, footage_project) -> None:
    """The encoder starts at the project's checkpoint (the models resolver); lr 0 is refused naming `lr`."""
    weights = settings.data_dir / "w.pth"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(b"weights")
    older = pretrain_checkpoint(engine, footage_project.project_id, weights)
    newest = pretrain_checkpoint(engine, footage_project.project_id, weights)
    app = jobs_page()
    assert app.selectbox(key="jobs_finetune_vss_checkpoint_id").value == newest != older
    assert app.number_input(key="jobs_finetune_vss_epochs").min == 1
    app.number_input(key="jobs_finetune_vss_lr").set_value(0.0)
    submit(app, "finetune_vss")
    refused(app, "finetune_vss", "lr", "must be > 0, got 0")
    assert queued(engine) == []
    app.number_input(key="jobs_finetune_vss_lr").set_value(0.01)
    submit(app, "finetune_vss")
    [job] = queued(engine)
    assert (job.params["checkpoint_id"], job.params["lr"], job.params["epochs"]) == (newest, 0.01, 30)


def test_finetune_vos_form(engine, footage_project) -> None:
    """Without a pretrained encoder the picker says the backbone is random-init; a missing weights file is refused
    naming `weights`."""
    app = jobs_page()
    picker = app.selectbox(key="jobs_finetune_vos_checkpoint_id")
    assert picker.value is None and "random-init" in picker.options[0]
    app.text_input(key="jobs_finetune_vos_weights").set_value("missing.pth")
    submit(app, "finetune_vos")
    refused(app, "finetune_vos", "weights", "missing.pth: weights file does not exist")
    app.text_input(key="jobs_finetune_vos_weights").set_value("")
    app.number_input(key="jobs_finetune_vos_steps").set_value(20)
    submit(app, "finetune_vos")
    [job] = queued(engine)
    assert (job.params["project"], job.params["steps"], job.params["weights"]) == ("ui", 20, None)


def test_predict_form(engine, settings, footage_project) -> None:
    """Without a VSS or VOS checkpoint the form refuses the default (the project's newest) naming `checkpoint_id`;
    with one, the picker starts at it and shows its score against the baseline, and the default can be queued."""
    app = jobs_page()
    assert app.selectbox(key="jobs_predict_checkpoint_id").options == ["(the project's newest when the job runs)"]
    submit(app, "predict")
    refused(app, "predict", "checkpoint_id", "project 'ui' has no VSS or VOS checkpoint yet")
    head = settings.data_dir / "vss.pt"
    head.parent.mkdir(parents=True, exist_ok=True)
    head.write_bytes(b"head")
    from segloop.platform.db.stores import metrics

    with session_scope(engine) as session:
        checkpoint = artifacts.add_checkpoint(session, "vss", "vit_tiny_patch16_224", str(head),
                                              project_id=footage_project.project_id)
        metrics.add_metrics(session, [("overall", "", "mIoU", 0.3), ("overall", "", "mIoU_majority_baseline", 0.4)],
                            project_id=footage_project.project_id, checkpoint_id=checkpoint.id)
    app = jobs_page()
    picker = app.selectbox(key="jobs_predict_checkpoint_id")
    assert picker.value == checkpoint.id and picker.options[1].endswith("mIoU 0.300 (below baseline)")
    submit(app, "predict")
    app.selectbox(key="jobs_predict_checkpoint_id").select_index(0)  # "(the project's newest when the job runs)"
    submit(app, "predict")
    assert [(job.kind, job.params["checkpoint_id"]) for job in queued(engine)] == [("predict", checkpoint.id),
                                                                                  ("predict", None)]


def test_loop_round_form(engine, footage_project) -> None:
    """Strategy parameters that are not JSON are refused naming `strategy_params`."""
    app = jobs_page()
    app.text_input(key="jobs_loop_round_strategy_params").set_value("signal=vss_margin")
    submit(app, "loop_round")
    refused(app, "loop_round", "strategy_params", "expected a mapping")
    app.text_input(key="jobs_loop_round_strategy_params").set_value('{"signal": "vss_margin"}')
    app.selectbox(key="jobs_loop_round_strategy").set_value("uncertainty")
    submit(app, "loop_round")
    [job] = queued(engine)
    assert (job.params["strategy"], job.params["strategy_params"]) == ("uncertainty", {"signal": "vss_margin"})


def test_map2d_form(engine, footage_project, embedded) -> None:
    """With an embedding set it is preselected; a perplexity typed below the spec's minimum is not taken,
    and without any set the form says `embedding_set_id` is required."""
    app = jobs_page()
    assert app.selectbox(key="jobs_map2d_embedding_set_id").value == embedded.id
    perplexity = app.number_input(key="jobs_map2d_perplexity")
    assert perplexity.min == 1
    perplexity.set_value(0.5)
    submit(app, "map2d")
    [job] = queued(engine)
    assert (job.params["embedding_set_id"], job.params["perplexity"]) == (embedded.id, 30.0)


def test_map2d_form_without_embedding_set(engine, footage_project) -> None:
    """A project without an embedding set: the map2d form refuses naming `embedding_set_id`."""
    app = jobs_page()
    submit(app, "map2d")
    refused(app, "map2d", "embedding_set_id", "is required")
    assert queued(engine) == []
