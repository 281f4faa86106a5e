"""Fine-tuning: VSS heads on cached features, stored predictions + uncertainty, the VOS refinement decoder and
the memory VOS model on a project."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from segloop.platform.core.davis import DavisLayout
from segloop.platform.core.image import working_size
from segloop.platform.core.masks import read_mask
from segloop.platform.core.optim import layer_decay_groups
from segloop.platform.evaluation import metrics as evaluation
from segloop.platform.features.backbone import FeatureSpec, layer_indices, video_features
from segloop.platform.vss import head as vss

SPEC = FeatureSpec(backbone="vit_tiny_patch16_224", short_side=64, batch_size=12)


@pytest.fixture(scope="module")
def synth(synth_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """(frame files, features, binary ground truth) of the synthetic videos, embedded once per module."""
    images = DavisLayout(synth_root).images_dir
    videos = {p.name: sorted(p.glob("*.jpg")) for p in sorted(images.iterdir())}
    feats = video_features(videos, SPEC, tmp_path_factory.mktemp("features"))
    gt = {name: [(read_mask(DavisLayout(synth_root).masks_dir / name / f"{p.stem}.png") > 0).astype(np.uint8)
                 for p in paths] for name, paths in videos.items()}
    return videos, feats, gt


def test_layer_indices_and_working_size() -> None:
    """Evenly spaced blocks with the last included; working size keeps the aspect on patch multiples."""
    assert layer_indices(12, 4) == [2, 5, 8, 11]
    assert layer_indices(12, 1) == [11]
    assert working_size(480, 854, 192, 16) == (192, 336)


def test_layer_decay_groups_scale_lr_by_depth() -> None:
    """Block i gets lr × decay^(depth - i), embeddings decay^(depth + 1), the final norm the full lr."""
    from segloop.pretrain.backbones import create_backbone

    model = create_backbone("vit_tiny_patch16_224")
    groups = layer_decay_groups(model.named_parameters(), len(model.blocks), 1.0, 0.5, 0.0)
    lrs = sorted(g["lr"] for g in groups)
    assert lrs[0] == pytest.approx(0.5 ** 13) and lrs[-1] == pytest.approx(1.0)
    assert len(groups) == 14
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_quantized_probabilities_and_uncertainty_signals() -> None:
    """uint8 storage round-trips within 1/255; uniform 2-class maps have entropy 1 and margin 1."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 5, 6))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.abs(vss.dequantize(vss.quantize(probs)) - probs).max() < 4 / 255
    uniform = np.full((2, 2, 3, 3), 0.5, dtype=np.float32)
    certain = np.zeros((1, 2, 3, 3), dtype=np.float32)
    certain[:, 0] = 1.0
    signals = vss.uncertainty_signals(np.concatenate([uniform, certain]))
    assert signals["vss_entropy_mean"] == pytest.approx([1, 1, 0], abs=1e-4)
    assert signals["vss_entropy_p90"] == pytest.approx([1, 1, 0], abs=1e-4)
    assert signals["vss_margin"] == pytest.approx([1, 1, 0], abs=1e-4)


def test_vss_head_reduces_loss_and_beats_chance(synth, tmp_path: Path) -> None:
    """Trained on 3 frames per video, the head's loss falls and mIoU on the other frames beats all-background."""
    videos, feats, gt = synth
    train = [vss.Sample(name, i, gt[name][i]) for name in videos for i in (0, 5, 10)]
    trained = vss.train_vss(train, feats, 2, SPEC, vss.VSSConfig(min_steps=80, epochs=1, device="cpu"))
    assert np.mean(trained.losses[-10:]) < 0.6 * np.mean(trained.losses[:10])
    confusion = np.zeros((2, 2), dtype=np.int64)
    background = np.zeros((2, 2), dtype=np.int64)
    for name in videos:
        probs = vss.predict_video(trained, feats[name])
        assert probs.shape[:2] == (len(videos[name]), 2)
        for i in range(len(probs)):
            if i in (0, 5, 10):
                continue
            confusion += evaluation.confusion_matrix(vss.class_map(probs[i], feats[name].size), gt[name][i], 2)
            background += evaluation.confusion_matrix(np.zeros_like(gt[name][i]), gt[name][i], 2)
    chance = evaluation.mean_iou(background)
    assert evaluation.mean_iou(confusion) > chance + 0.15


def test_backbone_finetuning_path_saves_and_reloads(synth, tmp_path: Path) -> None:
    """With finetune_backbone the ViT trains too; the checkpoint carries it and predicts the same."""
    videos, feats, gt = synth
    train = [vss.Sample(name, 0, gt[name][0]) for name in videos]
    config = vss.VSSConfig(head="linear", min_steps=3, epochs=1, batch_size=2, finetune_backbone=True, device="cpu")
    trained = vss.train_vss(train, feats, 2, SPEC, config, frame_paths=videos)
    from segloop.platform.features.backbone import load_backbone

    initial = load_backbone(SPEC).state_dict()
    assert trained.backbone_state is not None
    assert not all(np.allclose(initial[k].numpy(), v.numpy()) for k, v in trained.backbone_state.items())
    path = vss.save_vss(tmp_path / "vss.pt", trained)
    loaded, backbone = vss.load_vss(path)
    assert backbone is not None and loaded.head_kind == "linear"
    assert all(np.allclose(backbone.state_dict()[k].numpy(), v.numpy()) for k, v in trained.backbone_state.items())
    name = next(iter(videos))
    assert np.allclose(vss.predict_video(loaded, feats[name]), vss.predict_video(trained, feats[name]), atol=1e-5)


def test_training_resumes_from_its_state(synth, tmp_path: Path) -> None:
    """A finished run's state file makes a rerun start at the end (same losses, no new steps)."""
    videos, feats, gt = synth
    train = [vss.Sample(name, 2, gt[name][2]) for name in videos]
    config = vss.VSSConfig(min_steps=20, epochs=1, save_every=10, device="cpu")
    first = vss.train_vss(train, feats, 2, SPEC, config, state_path=tmp_path / "state.pt")
    steps: list[str] = []
    again = vss.train_vss(train, feats, 2, SPEC, config, state_path=tmp_path / "state.pt",
                          progress=lambda fraction, message: steps.append(message))
    assert again.losses == first.losses and len(again.losses) == 20 and steps == []  # nothing left to train
    # Another encoder's features (a retried job whose project registered a newer encoder) train afresh: the state
    # of the old encoder's head was resumed and registered under the new one.
    other = dataclasses.replace(SPEC, weights=str(tmp_path / "other-encoder"))
    vss.train_vss(train, feats, 2, other, config, state_path=tmp_path / "state.pt",
                  progress=lambda fraction, message: steps.append(message))
    assert steps[0].startswith("step 1/20"), steps


def test_bad_labels_are_refused(synth, tmp_path: Path) -> None:
    """A class id outside the classes is named in the error."""
    videos, feats, gt = synth
    name = next(iter(videos))
    with pytest.raises(vss.FinetuneError, match="class 3"):
        vss.train_vss([vss.Sample(name, 0, gt[name][0] * 3)], feats, 2, SPEC, vss.VSSConfig(device="cpu"))


@pytest.fixture
def labeled_project(synth_root: Path, sqlite):
    """The synthetic DAVIS root ingested with its masks (every frame labeled)."""
    from segloop.platform.media.ingest import IngestOptions, ingest_paths

    assert not ingest_paths([synth_root], IngestOptions(project="ft"), sqlite[0]).failed
    return "ft"


def test_finetune_predict_store_checkpoint_metrics_and_uncertainty(labeled_project: str, sqlite,
                                                                  tmp_path: Path) -> None:
    """finetune_vss_project registers a vss checkpoint with held-out metrics; predict stores .npz + frame scores."""
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import artifacts, footage, metrics, projects, scores
    from segloop.platform.services.finetuning import finetune_vss_project, predict_project

    settings, engine = sqlite
    result = finetune_vss_project(labeled_project, tmp_path / "out", short_side=64,
                                  config=vss.VSSConfig(min_steps=40, epochs=1, device="cpu"), settings=settings)
    assert result.trained_on == 19 and result.evaluated_on == 5
    assert 0.0 <= result.metrics["mIoU"] <= 1.0 and "temporal_stability" in result.metrics
    predicted = predict_project(labeled_project, result.checkpoint_id, settings=settings)
    assert predicted["frames"] == 24 and len(predicted["files"]) == 2
    probs, size, frame_ids = vss.load_predictions(predicted["files"][0])
    assert probs.shape[:2] == (12, 2) and size == (64, 96) and len(frame_ids) == 12
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    with session_scope(engine) as session:
        project = projects.get_project(session, labeled_project)
        checkpoint = artifacts.get_checkpoint(session, result.checkpoint_id)
        assert checkpoint.kind == "vss" and len(checkpoint.params["labeled_frame_ids"]) == 19
        names = {m.name for m in metrics.list_metrics(session, project_id=project.id)}
        assert {"mIoU", "IoU", "J&F", "temporal_stability"} <= names
        frames = footage.count_frames(session, project.id)
        for signal in ("vss_entropy_mean", "vss_entropy_p90", "vss_margin"):
            values = scores.latest_frame_scores(session, project.id, signal)
            assert len(values) == frames and all(0.0 <= v <= 1.0 for v in values.values())


def test_a_diverged_head_is_refused_and_never_registered(labeled_project: str, sqlite, tmp_path: Path) -> None:
    """`finetune vss --lr 1e30` registered a head of NaN weights as the project's newest VSS checkpoint (the default
    of `predict`), flagged only as below the majority baseline; training now stops at the first non-finite loss,
    naming the step and the setting, and nothing is registered."""
    from segloop.platform.core.optim import TrainingDiverged
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import artifacts
    from segloop.platform.services.finetuning import finetune_vss_project

    settings, engine = sqlite
    with session_scope(engine) as session:
        before = len(artifacts.list_checkpoints(session))
    with pytest.raises(TrainingDiverged, match=r"^training diverged: the loss became nan at step \d+; lower lr$"):
        finetune_vss_project(labeled_project, tmp_path / "out", short_side=64,
                             config=vss.VSSConfig(min_steps=40, epochs=1, lr=1e30, device="cpu"), settings=settings)
    with session_scope(engine) as session:
        assert len(artifacts.list_checkpoints(session)) == before


def test_an_oracle_with_none_of_the_projects_videos_is_refused(labeled_project: str, sqlite, tmp_path: Path) -> None:
    """`finetune vss --oracle ROOT` whose ground truth covers none of the project's videos trained, then scored 0
    frames and reported success; it is refused before training."""
    from segloop.platform.core.masks import write_mask
    from segloop.platform.services import runs
    from segloop.platform.services.finetuning import FinetuneError
    from segloop.platform.services.params import FinetuneVSSParams

    settings, _ = sqlite
    write_mask(tmp_path / "gt" / "another-video" / "00000.png", np.ones((4, 4), np.uint8))
    with pytest.raises(FinetuneError, match="holds ground truth for none of the project's videos"):
        runs.finetune_vss(FinetuneVSSParams(project=labeled_project, oracle=str(tmp_path / "gt")), tmp_path / "out",
                          device="cpu", settings=settings)
    assert not (tmp_path / "out").exists()


def test_two_runs_never_share_an_output_folder(labeled_project: str, sqlite, tmp_path: Path) -> None:
    """Two runs started in the same second shared the default folder (named to the second), one overwriting the
    other's registered weights; default folders are unique now, and a folder another run is writing is refused."""
    from segloop.platform.cli.commands.finetune import _default_out
    from segloop.platform.core.storage import exclusive_use
    from segloop.platform.services.finetuning import FinetuneError, finetune_vos_root, finetune_vss_project

    settings, _ = sqlite
    assert len({_default_out(labeled_project, "vss") for _ in range(20)}) == 20
    with exclusive_use(tmp_path / "busy") as mine:  # another process's run holds the folder
        assert mine
        with pytest.raises(FinetuneError, match="another run is writing there now"):
            finetune_vss_project(labeled_project, tmp_path / "busy", short_side=64,
                                 config=vss.VSSConfig(min_steps=1, epochs=1, device="cpu"), settings=settings)
        with pytest.raises(FinetuneError, match="another run is writing there now"):
            finetune_vos_root(tmp_path, "first", out_dir=tmp_path / "busy")
    assert not (tmp_path / "busy").exists()
    result = finetune_vss_project(labeled_project, tmp_path / "busy", short_side=64,
                                  config=vss.VSSConfig(min_steps=1, epochs=1, device="cpu"), settings=settings)
    assert result.checkpoint_id is not None


def test_a_run_stopped_while_evaluating_registers_nothing_and_resumes(labeled_project: str, sqlite, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while a VSS head was scored left it registered without scores (the project's newest predictor), and the
    rerun with the same --out was refused as a finished run; it is registered with its scores, once both exist."""
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import artifacts
    from segloop.platform.services import finetuning

    settings, engine = sqlite
    real = finetuning.evaluate_vss_project

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(finetuning, "evaluate_vss_project", stopped)
    config = vss.VSSConfig(min_steps=5, epochs=1, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        finetuning.finetune_vss_project(labeled_project, tmp_path / "out", short_side=64, config=config,
                                        settings=settings)
    with session_scope(engine) as session:
        assert artifacts.list_checkpoints(session) == []
    monkeypatch.setattr(finetuning, "evaluate_vss_project", real)
    result = finetuning.finetune_vss_project(labeled_project, tmp_path / "out", short_side=64, config=config,
                                             settings=settings)
    assert "mIoU" in result.metrics
    with session_scope(engine) as session:
        assert [c.id for c in artifacts.list_checkpoints(session)] == [result.checkpoint_id]


def test_a_finetune_without_out_names_its_folder_before_training(labeled_project: str, sqlite,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C of `finetune vss` without --out printed only "Aborted!": the run's folder (its resumable state) was
    never named and each rerun started over in a new one. The folder is said first; under torchrun --out is needed
    (each process would pick its own default folder)."""
    from ..conftest import invoke_segloop

    args = ["finetune", "vss", "--project", labeled_project, "--short-side", "32", "--epochs", "1", "--min-steps", "2",
            "--device", "cpu"]
    result = invoke_segloop(*args)
    assert result.exit_code == 0, result.output
    named = next(line for line in result.output.splitlines() if line.startswith("run folder: "))
    assert (Path(named.removeprefix("run folder: ").split(" (stopped early?")[0]) / "vss.pt").is_file()
    monkeypatch.setenv("WORLD_SIZE", "2")
    distributed = invoke_segloop(*args)
    assert distributed.exit_code == 2 and "under torchrun give --out" in distributed.output


def test_untrained_refiner_returns_the_propagated_mask(synth, tmp_path: Path) -> None:
    """The decoder's correction starts at zero: refining a mask gives (nearly) the same mask back."""
    from segloop.platform.vos import refiner as refine

    videos, feats, gt = synth
    name = next(iter(videos))
    trained = refine.train_refiner(refine.object_samples({name: {0: gt[name][0]}}), feats, SPEC,
                                   refine.RefineConfig(steps=1, lr=1e-9, device="cpu"))
    box = np.zeros((64, 96), dtype=np.uint8)
    box[16:48, 24:72] = 2
    out = refine.refine_mask(trained, feats[name], 3, box)
    assert set(np.unique(out)) == {0, 2}
    assert evaluation.region_similarity(out == 2, box == 2) > 0.95


def test_vos_model_is_trained_registered_and_compared_with_plain_propagation(labeled_project: str, sqlite,
                                                                            tmp_path: Path) -> None:
    """finetune_vos_project trains the memory model, saves a loadable folder, scores plain vs model J&F."""
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import artifacts, metrics
    from segloop.platform.services.finetuning import finetune_vos_project, finetune_vss_project
    from segloop.platform.vos.memory import MemoryModelError, load_memory_model
    from segloop.platform.vos.memory_train import MemoryTrainConfig

    settings, engine = sqlite
    result = finetune_vos_project(labeled_project, tmp_path / "vos", prop_short_side=64,
                                  config=MemoryTrainConfig(steps=3, short_side=64, crop=64), settings=settings)
    assert set(result.metrics) == {"J&F_plain", "J&F_model"}
    assert all(0.0 <= v <= 1.0 for v in result.metrics.values())
    assert load_memory_model(result.path).stride == 8
    with session_scope(engine) as session:
        assert artifacts.get_checkpoint(session, result.checkpoint_id).kind == "vos"
        rows = metrics.list_metrics(session, name="J&F_model")
        assert len(rows) == 1 and rows[0].checkpoint_id == result.checkpoint_id
    # Weights that are not a pretrain run's dense encoder were ignored without a word (colour cells trained instead).
    (tmp_path / "weights.pth").write_text("not a pretrain run")
    with pytest.raises(MemoryModelError, match=r"holds no dense_encoder.pth; the VOS model is built on the dense"):
        finetune_vos_project(labeled_project, tmp_path / "vos2", pretrained=str(tmp_path / "weights.pth"),
                             prop_short_side=64, config=MemoryTrainConfig(steps=3, short_side=64, crop=64),
                             settings=settings)
    # The folder of a finished, registered run is not trained over (its file changed under checkpoint 1's record).
    stamp = (tmp_path / "vos" / "memory_vos.pth").stat().st_mtime_ns
    with pytest.raises(ValueError, match=rf"holds registered checkpoint {result.checkpoint_id} \(vos\) of a "
                                            "finished run"):
        finetune_vos_project(labeled_project, tmp_path / "vos", prop_short_side=64,
                             config=MemoryTrainConfig(steps=3, short_side=64, crop=64), settings=settings)
    with pytest.raises(ValueError, match="holds registered checkpoint"):
        finetune_vss_project(labeled_project, tmp_path / "vos", short_side=64,
                             config=vss.VSSConfig(min_steps=1, epochs=1, device="cpu"), settings=settings)
    assert (tmp_path / "vos" / "memory_vos.pth").stat().st_mtime_ns == stamp


def test_finetune_and_predict_jobs_run_in_a_worker(labeled_project: str, sqlite, data_dir: Path) -> None:
    """finetune_vss then predict, submitted as jobs and run by a real `segloop worker` process."""
    import os
    import subprocess
    import sys

    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import jobs as job_store
    from segloop.platform.jobs.registry import validate_params

    settings, engine = sqlite
    env = dict(os.environ, SEGLOOP_DATA_DIR=str(data_dir), SEGLOOP_HEARTBEAT_SECONDS="0.5")
    env.pop("SEGLOOP_DATABASE_URL", None)
    worker = [sys.executable, "-m", "segloop.platform.cli", "worker", "--exit-when-idle"]
    with session_scope(engine) as session:
        job_id = job_store.submit_job(session, "finetune_vss", validate_params(
            "finetune_vss", {"project": labeled_project, "short_side": 64, "min_steps": 20, "epochs": 1})).id
    subprocess.run(worker, env=env, check=True, capture_output=True, timeout=300)
    with session_scope(engine) as session:
        job = job_store.get_job(session, job_id)
        assert job.status == "succeeded", job.error
        predict_id = job_store.submit_job(session, "predict", validate_params(
            "predict", {"project": labeled_project, "checkpoint_id": job.result["checkpoint_id"]})).id
    subprocess.run(worker, env=env, check=True, capture_output=True, timeout=300)
    with session_scope(engine) as session:
        job = job_store.get_job(session, predict_id)
        assert job.status == "succeeded", job.error
        assert job.result["frames"] == 24 and "vss_entropy_mean" in job.result["signals"]


def test_finetune_command_line_under_torchrun_registers_one_checkpoint(synth_root, settings, engine, tmp_path) -> None:
    """`torchrun --nproc_per_node=2 ... finetune vss` trains on 2 gloo processes; only rank 0 writes to the DB."""
    import os
    import subprocess
    import sys

    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import artifacts
    from segloop.platform.media.ingest import IngestOptions, ingest_paths

    if settings.database_url is not None:
        pytest.skip("the launcher path is database-independent; SQLite is enough")
    assert not ingest_paths([synth_root], IngestOptions(project="ddp"), settings).failed
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
         "segloop.platform.cli", "finetune", "vss", "--project", "ddp", "--short-side", "32", "--epochs", "1",
         "--min-steps", "4", "--device", "cpu", "--out", str(tmp_path / "ft")],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    with session_scope(engine) as session:
        assert [c.kind for c in artifacts.list_checkpoints(session)] == ["vss"]
