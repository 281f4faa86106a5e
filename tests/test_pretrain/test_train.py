"""Training loop: checkpoints, exact resume, timm-loadable teacher, DDP on CPU, CLI, embeddings."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from click.testing import CliRunner

from segloop.pretrain.config import config_from_dict
from segloop.pretrain.train import PretrainError, pretrain


class Interrupt(Exception):
    """Raised from the progress callback to simulate a killed run."""


def _state(out: Path) -> dict:
    return torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=False)["model"]


def test_run_writes_checkpoints_config_and_metrics(tiny, videos, tmp_path):
    messages = []
    result = pretrain(config_from_dict(tiny()), videos, tmp_path / "run",
                      progress=lambda f, m: messages.append((f, m)))
    assert result.step == 4 and not result.stopped_by_time
    for name in ("checkpoint.pth", "teacher_backbone.pth", "config.yaml", "metrics.jsonl"):
        assert (tmp_path / "run" / name).is_file()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert {"loss", "dino", "ibot", "koleo", "random_walk", "img_per_s", "lr"} <= set(records[0])
    assert "img/s" in messages[-2][1] and messages[-2][0] == pytest.approx(0.8)  # dense.distil_share 0.2: 4 + 1
    assert messages[-1][0] == 1.0 and "distilling" in messages[-1][1]
    with pytest.raises(PretrainError, match="--resume"):
        pretrain(config_from_dict(tiny()), videos, tmp_path / "run")


def test_resume_after_a_kill_gives_identical_parameters_and_losses(tiny, videos, tmp_path):
    config = config_from_dict(tiny(run={"steps": 4, "checkpoint_every": 2}))
    pretrain(config, videos, tmp_path / "straight")

    def kill_after_step_3(fraction: float, message: str) -> None:
        if message.startswith("step 3/"):
            raise Interrupt

    with pytest.raises(Interrupt):
        pretrain(config, videos, tmp_path / "killed", progress=kill_after_step_3)
    assert torch.load(tmp_path / "killed" / "checkpoint.pth", weights_only=False)["step"] == 2
    (tmp_path / "killed" / ".tmp-k2l9.pth").write_bytes(b"a save killed midway")
    pretrain(config, videos, tmp_path / "killed", resume=True)
    assert not list((tmp_path / "killed").glob(".tmp-*")), "a killed save's partial file is swept on resume"
    straight, resumed = _state(tmp_path / "straight"), _state(tmp_path / "killed")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    losses = [[json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
              for name in ("straight", "killed")]
    assert losses[0] == losses[1]


def test_max_minutes_stops_cleanly_with_a_checkpoint(tiny, videos, tmp_path):
    config = config_from_dict(tiny(run={"steps": 1000, "max_minutes": 0.001}))
    result = pretrain(config, videos, tmp_path / "run")
    assert result.stopped_by_time and result.step < 1000
    assert torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=False)["step"] == result.step


def test_a_time_budgeted_run_resumes_its_clock(tiny, videos, tmp_path):
    """Resuming a --max-minutes run restarted its clock: the schedules warmed up again and the whole budget was spent
    once more (tens of steps here). A run stopped after its budget resumes with nothing left to train."""
    config = config_from_dict(tiny(run={"steps": 1000, "max_minutes": 0.04}))
    result = pretrain(config, videos, tmp_path / "run")
    saved = torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=False)
    assert result.stopped_by_time and saved["elapsed_s"] > 0.5 * 0.04 * 60
    again = pretrain(config, videos, tmp_path / "run", resume=True)
    assert again.step - result.step <= 2, (result.step, again.step)  # at most the stop's safety margin of steps


def test_a_run_that_trained_no_step_is_not_registered(tiny, videos, tmp_path):
    """`pretrain --max-minutes 0.0001` stopped at step 0 and registered its untrained teacher as the project's
    encoder (the default of embed, finetune and predict); such a run is refused, naming the budget."""
    import dataclasses

    from segloop.platform.services.pretraining import TrainingDataError, register_pretrain_checkpoint

    config = config_from_dict(tiny(run={"steps": 1}))
    result = dataclasses.replace(pretrain(config, videos, tmp_path / "run"), step=0)
    with pytest.raises(TrainingDataError, match="stopped before its first step .* nothing was registered"):
        register_pretrain_checkpoint("any", config, result)


def test_a_runs_resume_state_given_as_weights_is_named_for_what_it_is(tiny, videos, tmp_path):
    """`--checkpoint RUN/checkpoint.pth` (a real PyTorch file: the resume state) was refused as 'not a PyTorch ...
    weights file'; the refusal now says what it is and which folder to give."""
    from segloop.pretrain.backbones import BackboneError, create_backbone, load_weights

    pretrain(config_from_dict(tiny(run={"steps": 1})), videos, tmp_path / "run")
    with pytest.raises(BackboneError, match="it is a pretrain run's resume state, not weights: give the run folder"):
        load_weights(create_backbone("vit_tiny_patch16_224"), "vit_tiny_patch16_224",
                     tmp_path / "run" / "checkpoint.pth")


def test_teacher_checkpoint_loads_with_timm(tiny, videos, tmp_path):
    result = pretrain(config_from_dict(tiny(run={"steps": 2})), videos, tmp_path / "run")
    model = timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=0,
                              pretrained_cfg_overlay=dict(file=str(result.teacher_path)))
    teacher = torch.load(result.teacher_path, weights_only=True)
    loaded = model.state_dict()
    assert set(teacher) == set(loaded)
    for key, value in teacher.items():
        assert torch.equal(loaded[key], value), key
    saved = _state(tmp_path / "run")
    assert torch.equal(saved["teacher.backbone.blocks.0.attn.qkv.weight"], teacher["blocks.0.attn.qkv.weight"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, overrides: dict, videos: list, out: str) -> None:
    """One process of a 2-process gloo run; writes its final student parameters."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from segloop.pretrain import dist

    result = pretrain(config_from_dict(overrides), videos, out)
    state = torch.load(Path(out) / "checkpoint.pth", map_location="cpu", weights_only=False)
    torch.save({"step": result.step, "world": dist.info().world_size, "ckpt_world": state["world_size"],
                "distil_steps": result.distil_steps},
               Path(out) / f"rank{rank}.pth")
    dist.shutdown()


def test_two_process_ddp_on_cpu(tiny, videos, tmp_path):
    overrides = tiny(run={"steps": 2, "batch_size": 2}, dense={"distil_share": 0.5})
    out = str(tmp_path / "ddp")
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), overrides, videos, out), nprocs=2, join=True)
    reports = [torch.load(Path(out) / f"rank{r}.pth", weights_only=False) for r in range(2)]
    assert all(r["step"] == 2 and r["world"] == 2 and r["ckpt_world"] == 2 for r in reports)
    assert [r["distil_steps"] for r in reports] == [2, 2]  # both processes distil in step (averaged gradients)
    records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    state = _state(Path(out))
    assert not torch.equal(state["student.backbone.blocks.0.attn.qkv.weight"],
                           state["teacher.backbone.blocks.0.attn.qkv.weight"])


def test_cli_pretrain_and_embed(tiny, videos, tmp_path):
    from segloop.platform.cli import main

    config = tmp_path / "tiny.yaml"
    import yaml

    config.write_text(yaml.safe_dump(tiny(run={"steps": 2})))
    runner = CliRunner()
    result = runner.invoke(main, ["pretrain", "--frames", str(tmp_path / "frames"), "--config", str(config),
                                  "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "loss_curve.png").is_file()
    result = runner.invoke(main, ["embed", "--checkpoint", str(tmp_path / "run" / "teacher_backbone.pth"),
                                  "--frames", str(tmp_path / "frames"), "--img-size", "32", "--workers", "0",
                                  "--out", str(tmp_path / "emb.npy")])
    assert result.exit_code == 0, result.output
    cls = np.load(tmp_path / "emb.npy")
    patch_mean = np.load(tmp_path / "emb.patch_mean.npy")
    keys = json.loads((tmp_path / "emb.json").read_text())
    assert cls.dtype == np.float16 and cls.shape == (14, 192) and patch_mean.shape == (14, 192)
    assert keys["backbone"] == "vit_tiny_patch16_224" and keys["keys"][0] == "a/00000.jpg"
    result = runner.invoke(main, ["embed", "--checkpoint", str(tmp_path / "run"), "--frames", str(tmp_path / "frames"),
                                  "--img-size", "32", "--workers", "0", "--out", str(tmp_path / "by_folder.npy")])
    assert result.exit_code == 0, result.output  # the run folder stands for its teacher_backbone.pth
    assert np.array_equal(np.load(tmp_path / "by_folder.npy"), cls)
    random_init = runner.invoke(main, ["embed", "--backbone", "vit_tiny_patch16_224", "--frames",
                                       str(tmp_path / "frames"), "--img-size", "32", "--workers", "0",
                                       "--out", str(tmp_path / "random.npy")])
    assert random_init.exit_code == 0 and not np.array_equal(np.load(tmp_path / "random.npy"), cls)


def test_cli_reports_bad_config_keys(tmp_path, videos):
    from segloop.platform.cli import main

    (tmp_path / "bad.yaml").write_text("optim:\n  learning_rate: 0.1\n")
    result = CliRunner().invoke(main, ["pretrain", "--frames", str(tmp_path / "frames"), "--config",
                                       str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and "optim.learning_rate: unknown field" in result.output
    result = CliRunner().invoke(main, ["pretrain", "--frames", str(tmp_path / "frames"), "--set", "run.steps=x",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and "run.steps: expected an integer" in result.output


def test_embed_frames_matches_a_direct_forward(videos):
    from PIL import Image

    from segloop.platform.core.image import working_size
    from segloop.pretrain.backbones import create_backbone
    from segloop.pretrain.embed import embed_frames
    from segloop.pretrain.transforms import to_tensor

    torch.manual_seed(0)
    model = create_backbone("vit_tiny_patch16_224").eval()
    paths = videos[0][:3]
    cls, patch_mean = embed_frames(paths, model, img_size=32, batch_size=2, num_workers=0, device="cpu")
    height, width = working_size(64, 80, 32, 16, rounding="nearest")  # the frames are 80x64
    assert (height, width) in ((32, 32), (32, 48))
    size = (width, height)
    frame = Image.open(paths[1])
    frame.draft("RGB", size)  # embed_frames decodes JPEGs at reduced DCT scale when it can
    image = to_tensor(frame.convert("RGB").resize(size, Image.BICUBIC))[None]
    with torch.no_grad():
        tokens = model.forward_features(image)
    assert cls.shape == (3, 192)
    assert np.allclose(cls[1], tokens[0, 0].numpy(), atol=1e-4)
    assert np.allclose(patch_mean[1], tokens[0, 1:].mean(0).numpy(), atol=1e-4)


def test_cli_set_overrides_win_over_convenience_flags():
    from segloop.platform.cli.commands.pretrain import _merge, flag_overrides, parse_sets

    flags = flag_overrides(None, 64, None, None, None, None, None, None, False)
    merged = _merge(flags, parse_sets(("data.clip_size=96", "loss.mask_ratio=[0.2, 0.3]")))
    assert merged["data"] == {"global_size": 64, "local_size": 32, "clip_size": 96}
    assert merged["loss"]["mask_ratio"] == [0.2, 0.3]


@pytest.mark.parametrize(("args", "message"), [
    (("--steps", "0"), "run.steps: must be >= 1, got 0"),
    (("--batch-size", "0"), "run.batch_size: must be >= 1, got 0"),
    (("--img-size", "0"), "data.global_size: must be >= 1, got 0"),
    (("--img-size", "100000"), "data.global_size: must be <= 2048, got 100000"),
    (("--set", "data.clip_size=99999"), "data.clip_size: must be <= 2048, got 99999"),
])
def test_cli_refuses_zero_or_absurd_sizes_before_training(args, message, tmp_path):
    """A 0 given to --steps / --batch-size / --img-size was read as 'not given' and the run trained with the
    defaults; a 100000-px crop crashed a DataLoader worker. Both are refused before any work, naming the key."""
    from tests.conftest import invoke_segloop

    result = invoke_segloop("pretrain", "--frames", str(tmp_path), "--out", str(tmp_path / "run"), *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [("--init", "NOWHERE/weights.pth"), ("--init", "TEXT"), ("--img-size", "33")])
def test_a_refused_run_leaves_no_run_folder(args, videos, tmp_path):
    """Weights that cannot be loaded, or a size the patches do not divide, were refused after the run folder (and its
    frame cache) was made: an empty or half-made folder stayed behind."""
    from tests.conftest import invoke_segloop

    (tmp_path / "TEXT").write_text("not weights")
    args = [a.replace("NOWHERE", str(tmp_path / "nowhere")).replace("TEXT", str(tmp_path / "TEXT")) for a in args]
    result = invoke_segloop("pretrain", "--frames", str(tmp_path / "frames"), "--out", str(tmp_path / "run"),
                            "--steps", "1", "--workers", "0", *args)
    assert result.exit_code == 1, result.output
    assert not (tmp_path / "run").exists()


def test_run_folder_holds_a_loadable_dense_encoder(tiny, videos, tmp_path):
    import numpy as np

    from segloop.pretrain.dense import dense_features, load_dense_encoder

    result = pretrain(config_from_dict(tiny(run={"steps": 2})), videos, tmp_path / "run")
    assert result.dense_path == tmp_path / "run" / "dense_encoder.pth" and result.dense_path.is_file()
    encoder = load_dense_encoder(tmp_path / "run")
    assert not encoder.config.dropout_views  # full-colour inference unless dense.inference_views is set
    frames = np.zeros((2, 64, 80, 3), dtype=np.uint8)
    assert dense_features(encoder, frames).shape == (2, 16, 8, 10)
    records = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    assert all("dense" in r for r in records)


@pytest.mark.parametrize("target", ["affinity", "features"])
def test_distil_share_ends_the_run_by_distilling_the_dense_encoder(tiny, videos, tmp_path, target):
    from segloop.pretrain.dense import load_dense_encoder

    config = config_from_dict(tiny(run={"steps": 3, "checkpoint_every": 2},
                                   dense={"distil_share": 0.5, "distil_target": target}))
    messages = []
    result = pretrain(config, videos, tmp_path / "run", progress=lambda f, m: messages.append((f, m)))
    assert result.step == 3 and result.distil_steps == 3 and 0 < result.distil_loss < 2
    records = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]  # run.steps counts the main steps
    assert "distilling" in messages[-1][1] and messages[-1][0] == 1.0
    assert max(f for f, m in messages if not m.startswith("distilling")) == pytest.approx(0.5)
    student = load_dense_encoder(tmp_path / "run")
    teacher = {k[len("dense."):]: v for k, v in _state(tmp_path / "run").items() if k.startswith("dense.")}
    assert not student.config.dropout_views and teacher.keys() == student.state_dict().keys()
    assert not torch.equal(teacher["project.weight"], student.state_dict()["project.weight"])
    for name, value in student.state_dict().items():
        if "running" in name or "num_batches" in name:
            assert torch.equal(value, teacher[name]), name  # batch-norm statistics stay the teacher's
    views = config_from_dict(tiny(run={"steps": 2}, dense={"distil_share": 0.5, "inference_views": True}))
    result = pretrain(views, videos, tmp_path / "views")
    assert result.step == 2 and result.distil_steps == 0  # three-pass inference asked for: nothing to distil
    assert load_dense_encoder(tmp_path / "views").config.dropout_views


def test_time_budget_runs_past_the_step_count(tiny, videos, tmp_path, monkeypatch):
    import types

    from segloop.pretrain import train

    clock = iter(float(i) for i in range(10**6))  # a fake clock: every reading is one second later
    monkeypatch.setattr(train, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    config = config_from_dict(tiny(run={"steps": 1, "max_minutes": 0.5, "checkpoint_every": 1000}))
    result = pretrain(config, videos, tmp_path / "run")
    assert result.stopped_by_time and 1 < result.step < 30 and result.total_steps == result.step
    records = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    assert records[-1]["lr"] < records[len(records) // 2]["lr"]  # the schedule follows the budget, not run.steps
    config = config_from_dict(tiny(run={"steps": 1, "max_minutes": 0.5, "checkpoint_every": 1000},
                                   dense={"distil_share": 0.5}))
    distilled = pretrain(config, videos, tmp_path / "distilled")
    assert distilled.stopped_by_time and 1 <= distilled.step < result.step and distilled.distil_steps >= 1
    records = [json.loads(line) for line in distilled.metrics_path.read_text().splitlines()]
    assert records[-1]["lr"] < records[0]["lr"]  # the main schedule ends with the main phase


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_device_without_a_gpu_is_refused_naming_the_field():
    from segloop.pretrain.train import resolve_device

    assert resolve_device(config_from_dict({"run": {"device": "auto"}})) == torch.device("cpu")
    with pytest.raises(PretrainError, match="run.device: device 'cuda': no CUDA GPU is available"):
        resolve_device(config_from_dict({"run": {"device": "cuda"}}))


def test_a_torn_metrics_line_does_not_block_a_resume(tmp_path):
    """A metrics.jsonl whose last line was cut (a crash or full disk mid-append) blocked every resume with
    "Unterminated string ..." naming no file; torn lines are dropped with those after the checkpoint."""
    from segloop.pretrain.train import MetricsLog

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n[1]\n{"step": 3, "loss": 1.')
    MetricsLog(path, keep_until_step=2)
    assert path.read_text() == '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n'
