"""SSL model: EMA teacher, parameter groups, a few CPU steps reduce the loss."""
from __future__ import annotations

import torch

from segloop.pretrain.config import config_from_dict
from segloop.pretrain.data import MultiCropCollate, VideoClipDataset
from segloop.pretrain.model import SSLModel, Views, layer_id, param_groups
from segloop.pretrain.schedules import Schedules
from segloop.pretrain.train import build_optimizer, train_step


def test_ema_update_is_the_weighted_average(tiny):
    torch.manual_seed(0)
    model = SSLModel(config_from_dict(tiny()))
    for p in model.student.parameters():
        p.data.fill_(1.0)
    for p in model.teacher.parameters():
        p.data.fill_(3.0)
    model.update_teacher(0.75)
    for p in model.teacher.parameters():
        assert torch.allclose(p, torch.full_like(p, 2.5))
    assert all(not p.requires_grad for p in model.teacher.parameters())


def test_teacher_starts_equal_to_student(tiny):
    model = SSLModel(config_from_dict(tiny()))
    for s, t in zip(model.student.parameters(), model.teacher.parameters()):
        assert torch.equal(s, t)


def test_layer_decay_groups(tiny):
    model = SSLModel(config_from_dict(tiny()))
    depth = len(model.student["backbone"].blocks)
    assert layer_id("backbone.pos_embed", depth) == 0
    assert layer_id("backbone.blocks.3.attn.qkv.weight", depth) == 4
    assert layer_id("head.mlp.0.weight", depth) == depth + 1
    groups = param_groups(model, 0.5)
    multipliers = {g["lr_mult"] for g in groups if not g.get("dense")}
    assert max(multipliers) == 1.0 and min(multipliers) == 0.5 ** (depth + 1)
    no_decay = [g for g in groups if g["wd_mult"] == 0.0]
    assert any(model.student["backbone"].pos_embed is p for g in no_decay for p in g["params"])
    assert sum(len(g["params"]) for g in groups if not g.get("dense")) == len(list(model.student.parameters())) + 1
    assert sum(len(g["params"]) for g in groups if g.get("dense")) == len(list(model.dense.parameters()))


def test_a_few_cpu_steps_reduce_the_loss(tiny, videos):
    torch.manual_seed(0)
    config = config_from_dict(tiny(run={"steps": 8, "batch_size": 4}, optim={"lr": 2e-3, "warmup_fraction": 0.0},
                                   loss={"warmup_teacher_temp_fraction": 0.0}))
    model = SSLModel(config)
    optimizer = build_optimizer(model, config, torch.device("cpu"), pretrained=False)
    dataset = VideoClipDataset(videos, config.data)
    collate = MultiCropCollate.from_config(model.patch, config.data, config.loss)
    views = Views.from_batch(collate([dataset[(i, i)] for i in range(4)]), torch.device("cpu"))
    schedules = Schedules(config)
    losses = [train_step(model, optimizer, views, schedules.at(step), config, torch.Generator().manual_seed(step))
              for step in range(8)]
    first = sum(r["loss"] for r in losses[:2]) / 2
    last = sum(r["loss"] for r in losses[-2:]) / 2
    assert last < first - 0.05, [round(r["loss"], 3) for r in losses]


def test_switched_off_terms_are_not_computed(tiny, videos):
    config = config_from_dict(tiny(loss={"ibot_weight": 0.0, "random_walk_weight": 0.0, "koleo_weight": 0.0}))
    model = SSLModel(config)
    dataset = VideoClipDataset(videos, config.data)
    collate = MultiCropCollate.from_config(model.patch, config.data, config.loss)
    views = Views.from_batch(collate([dataset[(i, i)] for i in range(4)]), torch.device("cpu"))
    total, parts = model(views, 0.04)
    assert set(parts) == {"dino"} and torch.isclose(total, torch.tensor(parts["dino"]))
