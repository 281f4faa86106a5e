"""Faults around pretraining: corrupt checkpoint files, and the unchanged command line under torchrun (gloo)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from segloop.pretrain.backbones import BackboneError, create_backbone
from segloop.pretrain.checkpoint import CheckpointError
from segloop.pretrain.config import config_from_dict
from segloop.pretrain.train import pretrain


def test_truncated_checkpoint_refuses_resume_by_name(tiny, videos, tmp_path: Path) -> None:
    """A resume from a truncated checkpoint.pth fails naming the file; nothing else is touched."""
    out = tmp_path / "run"
    pretrain(config_from_dict(tiny()), videos, out)
    checkpoint = out / "checkpoint.pth"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    teacher_before = (out / "teacher_backbone.pth").read_bytes()
    with pytest.raises(CheckpointError, match="checkpoint.pth: cannot read checkpoint"):
        pretrain(config_from_dict(tiny()), videos, out, resume=True)
    assert (out / "teacher_backbone.pth").read_bytes() == teacher_before


def test_corrupt_teacher_weights_are_named(tmp_path: Path) -> None:
    """Loading garbage as backbone weights gives an error naming the file."""
    bad = tmp_path / "teacher_backbone.pth"
    bad.write_bytes(b"\x00not torch")
    with pytest.raises(BackboneError, match="teacher_backbone.pth: cannot load weights"):
        create_backbone("vit_tiny_patch16_224", weights=bad)


def _saved(path: Path, state: dict) -> Path:
    """`state` written as a PyTorch weights file at `path`."""
    import torch

    torch.save(state, path)
    return path


def test_weights_that_would_leave_the_model_at_random_init_are_refused(tmp_path: Path) -> None:
    """Weights of another layout or model are refused naming the file and the first tensor they lack; before, timm
    loaded them non-strictly (the classifier differs) and returned a random-init network with only a log line."""
    import timm
    import torch

    source = timm.create_model("vit_tiny_patch16_224", num_classes=0)
    state = source.state_dict()
    renamed = _saved(tmp_path / "renamed.pth", {f"backbone.{key}": value for key, value in state.items()})
    partial = _saved(tmp_path / "partial.pth", {k: v for k, v in state.items() if k != "blocks.3.mlp.fc1.weight"})
    other = _saved(tmp_path / "small.pth", timm.create_model("vit_small_patch16_224", num_classes=0).state_dict())
    text = tmp_path / "notes.pth"
    text.write_text("not weights\n")
    refusals = [
        (renamed, r"renamed.pth: not weights of vit_tiny_patch16_224: 150 of its 150 tensors are not in the file "
                  r"\(e.g. 'cls_token'\), so they would keep their random initialisation"),
        (partial, r"partial.pth: not weights of vit_tiny_patch16_224: 1 of its 150 tensors are not in the file "
                  r"\(e.g. 'blocks.3.mlp.fc1.weight'\)"),
        (other, r"small.pth: cannot load weights into vit_tiny_patch16_224: size mismatch for cls_token: copying a "
                r"param with shape \[1, 1, 384\] from checkpoint"),
        (text, "notes.pth: cannot load weights into vit_tiny_patch16_224: not a PyTorch"),
    ]
    for path, message in refusals:
        with pytest.raises(BackboneError, match=message):
            create_backbone("vit_tiny_patch16_224", weights=path)
    loaded = create_backbone("vit_tiny_patch16_224", weights=_saved(tmp_path / "own.pth", state), img_size=112)
    assert torch.equal(loaded.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    assert loaded.pos_embed.shape[1] == 1 + 7 * 7  # resized to the requested size by timm's checkpoint filter
    with_head = timm.create_model("vit_tiny_patch16_224", num_classes=10).state_dict()
    assert torch.equal(create_backbone("vit_tiny_patch16_224", weights=_saved(tmp_path / "head.pth", with_head))
                       .cls_token, with_head["cls_token"])  # a classifier in the file is dropped, as before


def test_a_folder_without_teacher_weights_is_named(tmp_path: Path) -> None:
    """A folder given as weights must be a pretrain run folder; the error names the folder and the file."""
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(BackboneError, match=re.escape(f"{folder}: no teacher_backbone.pth in this folder")):
        create_backbone("vit_tiny_patch16_224", weights=folder)
    with pytest.raises(BackboneError, match="nope.pth: weights file does not exist"):
        create_backbone("vit_tiny_patch16_224", weights=tmp_path / "nope.pth")


def test_pretrain_command_line_under_torchrun_with_gloo(tiny, videos, tmp_path: Path) -> None:
    """`torchrun --nproc_per_node=2 -m segloop.platform.cli pretrain ...` runs unchanged on CPU (gloo)."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny(run={"steps": 2, "batch_size": 2, "checkpoint_every": 2})))
    frames_root = videos[0][0].parent.parent
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "segloop.platform.cli", "pretrain", "--frames", str(frames_root), "--config", str(config),
         "--device", "cpu", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert (out / "teacher_backbone.pth").is_file() and "step 2/2" in result.stdout


def test_resume_with_another_dense_architecture_is_refused_by_name(tiny, videos, tmp_path: Path) -> None:
    """A run resumed with a different dense encoder layout fails naming the key; the run's files are untouched."""
    out = tmp_path / "run"
    pretrain(config_from_dict(tiny()), videos, out)
    before = {name: (out / name).read_bytes() for name in ("checkpoint.pth", "dense_encoder.pth")}
    with pytest.raises(CheckpointError, match=r"checkpoint has dense\.blocks=1 but this run has 2"):
        pretrain(config_from_dict(tiny(dense={"blocks": 2})), videos, out, resume=True)
    assert {name: (out / name).read_bytes() for name in before} == before


@pytest.mark.parametrize(("change", "message"), [
    ({"run": {"steps": 6}}, r"checkpoint has run\.steps=4 but this run has 6"),
    ({"data": {"global_size": 48}}, r"checkpoint has data\.global_size=\d+ but this run has 48"),
    ({"optim": {"lr": 0.01}}, r"checkpoint has optim\.lr=.* but this run has 0\.01"),
], ids=["steps", "img-size", "lr"])
def test_resume_with_another_schedule_or_crop_size_is_refused_by_name(change: dict, message: str, tiny, videos,
                                                                      tmp_path: Path) -> None:
    """A resume with a changed --steps, --img-size or learning rate continued with a jump in the schedules (the lr
    rose from 2e-6 to 1.9e-5 at the last steps); it is refused naming the setting. Execution settings may change."""
    out = tmp_path / "run"
    pretrain(config_from_dict(tiny(run={"steps": 4})), videos, out)
    with pytest.raises(CheckpointError, match=message):
        pretrain(config_from_dict(tiny(**{"run": {"steps": 4}, **change})), videos, out, resume=True)
    pretrain(config_from_dict(tiny(run={"steps": 4, "log_every": 2}, data={"num_workers": 0})), videos, out,
             resume=True)


@pytest.mark.parametrize(("first", "second", "message"), [
    (1.0, 0.0, r"checkpoint has a dense encoder \(dense\.weight=1\.0\) but this run has none \(dense\.weight=0\.0\)"),
    (0.0, 1.0, r"checkpoint has no dense encoder \(dense\.weight=0\.0\) but this run has one \(dense\.weight=1\.0\)"),
], ids=["dense-switched-off", "dense-switched-on"])
def test_resume_that_switches_the_dense_encoder_on_or_off_is_refused_by_name(
        tiny, videos, tmp_path: Path, first: float, second: float, message: str) -> None:
    """A resume whose dense.weight adds or drops the dense encoder fails naming the setting; run files untouched."""
    out = tmp_path / "run"
    pretrain(config_from_dict(tiny(dense={"weight": first})), videos, out)
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    with pytest.raises(CheckpointError, match=message):
        pretrain(config_from_dict(tiny(dense={"weight": second})), videos, out, resume=True)
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == before
