"""The pretraining loop as a function: data -> SSLModel -> AdamW steps -> EMA teacher -> checkpoints.

Callable from the CLI (`segloop pretrain`), from the job system (progress callback
`(fraction, message)`), and under `torchrun` (one process per device, see `segloop.pretrain.dist`).
Optimiser and schedules follow DINO/DINOv2: AdamW, cosine learning rate with warm-up, cosine
weight decay, gradient clipping, layer-wise learning-rate decay when starting from pretrained
weights ("ELECTRA", Clark et al., 2020; BEiT), teacher = EMA of the student.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from segloop.platform.core import device as core_device
from segloop.platform.core.optim import finite_loss
from segloop.platform.core.storage import atomic_path
from segloop.pretrain import dist
from segloop.pretrain.checkpoint import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    TEACHER_NAME,
    CheckpointError,
    check_resumable,
    load_training_state,
    restore_rng_state,
    save_training_state,
)
from segloop.pretrain.config import DenseConfig, PretrainConfig, config_to_dict, dense_encoder_on, save_config
from segloop.pretrain.data import dataloader
from segloop.pretrain.dense.distil import affinity_distil_loss, distil_loss, full_colour_student
from segloop.pretrain.dense.io import DENSE_NAME, save_dense_encoder
from segloop.pretrain.model import SSLModel, Views, pair_lab, param_groups
from segloop.pretrain.schedules import Schedules, StepValues

Progress = Callable[[float, str], None]
METRICS_NAME = "metrics.jsonl"


class PretrainError(ValueError):
    """A pretraining run that cannot start; the message says which input and why."""


@dataclass
class PretrainResult:
    """Where a finished (or time-limited) run left its files and how far it got."""

    out_dir: Path
    step: int
    total_steps: int
    teacher_path: Path
    checkpoint_path: Path
    metrics_path: Path
    last_loss: float | None
    stopped_by_time: bool
    dense_path: Path | None = None
    distil_steps: int = 0
    distil_loss: float | None = None


def resolve_device(config: PretrainConfig, local_rank: int = 0) -> torch.device:
    """cuda:<local rank> when asked for or available (auto), else cpu."""
    try:
        name = core_device.resolve_device(config.run.device)
    except core_device.DeviceError as exc:
        raise PretrainError(f"run.device: {exc}") from None
    return torch.device("cuda", local_rank) if name.startswith("cuda") else torch.device("cpu")


def build_optimizer(model: SSLModel, config: PretrainConfig, device: torch.device,
                    pretrained: bool) -> torch.optim.Optimizer:
    """AdamW over the student's parameter groups (layer-wise LR decay only from pretrained weights)."""
    groups = param_groups(model, config.optim.layer_decay if pretrained else None)
    kwargs = {"betas": (0.9, 0.999)}
    if config.optim.fused and device.type == "cuda":
        kwargs["fused"] = True
    return torch.optim.AdamW(groups, lr=config.optim.lr, **kwargs)


def apply_schedule(optimizer: torch.optim.Optimizer, values: StepValues) -> None:
    """Set each group's lr and weight decay for this step."""
    for group in optimizer.param_groups:
        scale = values.last_layer_lr_scale if group["last_layer"] else 1.0
        group["lr"] = values.lr * group["lr_mult"] * scale
        group["weight_decay"] = values.weight_decay * group["wd_mult"]


def train_step(model: SSLModel, optimizer: torch.optim.Optimizer, views: Views, values: StepValues,
               config: PretrainConfig, generator: torch.Generator) -> dict[str, float]:
    """One optimisation step: losses, backward, gradient averaging and clipping, AdamW, EMA."""
    apply_schedule(optimizer, values)
    optimizer.zero_grad(set_to_none=True)
    device = views.global_crops.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and config.run.bf16):
        total, parts = model(views, values.teacher_temp, generator)
    total.backward()
    student_params = [p for group in optimizer.param_groups for p in group["params"]]
    dist.average_gradients(student_params)
    grad_norm = float("nan")
    if config.optim.clip_grad > 0:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(student_params, config.optim.clip_grad))
    optimizer.step()
    model.update_teacher(values.momentum)
    loss = total.detach().clone()
    dist.all_reduce(loss)
    return {"loss": float(loss) / dist.info().world_size, **parts, "grad_norm": grad_norm}


class MetricsLog:
    """Append-only JSONL of per-step metrics; on resume, lines after the checkpoint step are dropped."""

    def __init__(self, path: Path, keep_until_step: int | None):
        self.path = path
        if keep_until_step is None:
            path.write_text("")
        elif path.is_file():
            kept = [line for line, record in map(_parsed, path.read_text(errors="replace").splitlines())
                    if record is not None and record.get("step", 0) <= keep_until_step]
            with atomic_path(path) as tmp:
                tmp.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        """Append one record."""
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def _parsed(line: str) -> tuple[str, dict | None]:
    """(line, its record), the record None for a blank or torn line (a crash or full disk mid-append: it blocked
    every resume with a JSON error naming no file) or one that is not a record."""
    try:
        record = json.loads(line) if line.strip() else None
    except ValueError:
        return line, None
    return line, record if isinstance(record, dict) else None


def _describe(step: int, total: int | str, record: dict) -> str:
    """One-line progress message with losses and throughput."""
    terms = " ".join(f"{k} {record[k]:.3f}" for k in ("dino", "ibot", "koleo", "random_walk", "dense") if k in record)
    return (f"step {step}/{total} loss {record['loss']:.4f} ({terms}) lr {record['lr']:.2e} "
            f"{record['img_per_s']:.1f} img/s")


def _prepare_out_dir(out_dir: Path, resume: bool, config: PretrainConfig, world_size: int) -> dict | None:
    """Create the run folder; the checkpoint state to resume from, or None for a fresh run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / CHECKPOINT_NAME
    if not resume:
        if checkpoint.exists():
            raise PretrainError(f"{out_dir}: already holds a checkpoint; pass --resume to continue it "
                                "or choose another --out")
        return None
    if not checkpoint.exists():
        return None
    state = load_training_state(checkpoint)
    check_resumable(checkpoint, state["config"], config_to_dict(config), world_size)
    for partial in out_dir.glob(".tmp-*"):  # a save killed midway (kill -9): tens of MB each, never used
        partial.unlink(missing_ok=True)
    return state


def images_per_step(config: PretrainConfig, world_size: int) -> int:
    """Crops processed per optimisation step across processes (global + local + clip frames)."""
    data = config.data
    clip = data.clip_length if config.loss.random_walk_weight > 0 else 0
    pairs = 2 * config.dense.pairs if dense_encoder_on(config.dense.weight) else 0
    return config.run.batch_size * world_size * (2 + data.num_local_crops + clip + pairs)


def pretrain(config: PretrainConfig, videos: Sequence[Sequence[Path]], out_dir: str | Path, *,
             resume: bool = False, progress: Progress | None = None) -> PretrainResult:
    """Run (or resume) self-supervised pretraining on the videos' frames; files go to out_dir."""
    started = time.monotonic()
    out_dir = Path(out_dir)
    where = dist.init_distributed(config.run.device)
    device = resolve_device(config, where.local_rank)
    state = _prepare_out_dir(out_dir, resume, config, where.world_size)
    torch.manual_seed(config.run.seed)
    model = SSLModel(config, config.model.init_weights).to(device)
    optimizer = build_optimizer(model, config, device, pretrained=config.model.init_weights is not None)
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_rng_state(state["rng"])
        step = int(state["step"])
        # A time-budgeted run resumes its clock too: it restarted the schedules (warm-up again) and the whole budget
        started -= float(state.get("elapsed_s", 0.0))
    dist.broadcast_module(model)
    if where.is_main:
        save_config(config, out_dir / CONFIG_NAME)
    metrics = MetricsLog(out_dir / METRICS_NAME, step if state is not None else None) if where.is_main else None
    loader = dataloader(videos, config.data, config.loss, model.patch, config.run.batch_size, config.run.seed,
                        where.rank, where.world_size, start=step * config.run.batch_size, dense=config.dense)
    result = _loop(model, optimizer, loader, config, out_dir, step, started, metrics, progress, where, device)
    dist.barrier()
    return result


def _loop(model: SSLModel, optimizer: torch.optim.Optimizer, loader, config: PretrainConfig, out_dir: Path,
          step: int, started: float, metrics: MetricsLog | None, progress: Progress | None,
          where: dist.DistInfo, device: torch.device) -> PretrainResult:
    """Steps until run.steps, or until the wall-clock budget (then the schedules' horizon) is spent,
    checkpointing every run.checkpoint_every steps; then the last `dense.distil_share` of the run (of the
    budget, or of run.steps plus the distillation steps) distils the dense encoder."""
    distils = model.dense is not None and not config.dense.inference_views  # the views run as they are
    share = config.dense.distil_share if distils else 0.0
    budget = None if config.run.max_minutes is None else config.run.max_minutes * 60.0
    main_budget = None if budget is None else budget * (1.0 - share)
    total = 2**62 if budget is not None else config.run.steps  # with a budget, time ends the run
    distil_steps = None if budget is not None else int(round(total * share / (1.0 - share)))
    schedules, per_step_images = Schedules(config), images_per_step(config, where.world_size)
    record: dict | None = None
    stopped_by_time = False
    last_saved = step
    batches = iter(loader)
    step_seconds = 0.0
    while step < total:
        if main_budget is not None and _out_of_time(started, main_budget, step_seconds, device):
            stopped_by_time = True
            break
        tick = time.monotonic()
        views = Views.from_batch(next(batches), device)
        values = schedules.at(step, None if main_budget is None else (tick - started) / main_budget)
        generator = torch.Generator(device=device).manual_seed(config.run.seed * 1_000_003 + step)
        parts = train_step(model, optimizer, views, values, config, generator)
        finite_loss(parts["loss"], step, "lower optim.lr or raise loss.warmup_teacher_temp_fraction")
        step += 1
        step_seconds = time.monotonic() - tick
        record = {"step": step, **parts, "lr": values.lr, "weight_decay": values.weight_decay,
                  "momentum": values.momentum, "teacher_temp": values.teacher_temp,
                  "img_per_s": per_step_images / max(step_seconds, 1e-9), "step_s": step_seconds,
                  "elapsed_s": time.monotonic() - started}
        if metrics is not None and (step % config.run.log_every == 0 or step == total):
            metrics.write(record)
        if step % config.run.checkpoint_every == 0 or step == total:
            _checkpoint(model, optimizer, step, config, out_dir, where, time.monotonic() - started)
            last_saved = step
        if progress is not None and where.is_main:
            if main_budget is None:
                fraction, shown = step / (total + distil_steps), total
            else:
                fraction = (time.monotonic() - started) / budget
                shown = f"~{round(step * main_budget / max(time.monotonic() - started, 1e-9))}"
            progress(min(1.0, fraction), _describe(step, shown, record))
    if last_saved != step or not (out_dir / CHECKPOINT_NAME).exists():
        _checkpoint(model, optimizer, step, config, out_dir, where, time.monotonic() - started)
    distilled, distilled_loss = 0, None
    if share > 0:
        distilled, distilled_loss = _distil(model, batches, config, out_dir, started, budget, distil_steps,
                                            progress, where, device)
    if stopped_by_time and progress is not None and where.is_main:
        progress(1.0, f"stopped at step {step}: run.max_minutes={config.run.max_minutes} spent")
    dense_path = out_dir / DENSE_NAME if model.dense is not None else None
    return PretrainResult(out_dir, step, step if budget is not None else total, out_dir / TEACHER_NAME,
                          out_dir / CHECKPOINT_NAME, out_dir / METRICS_NAME, None if record is None else record["loss"],
                          stopped_by_time, dense_path, distilled, distilled_loss)


def _distil(model: SSLModel, batches, config: PretrainConfig, out_dir: Path, started: float, budget: float | None,
            steps: int | None, progress: Progress | None, where: dist.DistInfo,
            device: torch.device) -> tuple[int, float | None]:
    """Train a one-pass full-colour copy of the dense encoder on its three dropped-channel views (their affinity
    or features: `dense.distil_target`) until the budget is spent (or for `steps`), then save it as the run's
    dense encoder; (steps, last loss)."""
    teacher = model.dense.eval()
    student = full_colour_student(teacher)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.dense.distil_lr, weight_decay=0.0)
    done, loss, step_seconds = 0, None, 0.0
    while done < steps if budget is None else not _out_of_time(started, budget, step_seconds, device):
        tick = time.monotonic()
        pair = next(batches)["pair"].to(device, non_blocking=True)  # the ViT's crops stay where they are
        term = _distil_term(student, teacher, pair, config.dense)
        optimizer.zero_grad(set_to_none=True)
        term.backward()
        dist.average_gradients(list(student.parameters()))
        optimizer.step()
        done, loss, step_seconds = done + 1, float(term.detach()), time.monotonic() - tick
        if progress is not None and where.is_main:
            elapsed, run_steps = time.monotonic() - started, config.run.steps
            fraction = elapsed / budget if budget is not None else (run_steps + done) / (run_steps + steps)
            progress(min(1.0, fraction), f"distilling the dense encoder into one full-colour pass: step {done}, "
                                         f"{config.dense.distil_target} loss {loss:.4f}")
    if where.is_main:
        save_dense_encoder(student, out_dir / DENSE_NAME)
    dist.barrier()
    return done, loss


def _distil_term(student: torch.nn.Module, teacher: torch.nn.Module, pair: torch.Tensor,
                 dense: DenseConfig) -> torch.Tensor:
    """The distillation loss of one batch of (B, T, 3, S, S) uint8 frame groups, for `dense.distil_target`."""
    lab = pair_lab(pair)
    if dense.distil_target == "features":
        return distil_loss(student, teacher, lab)
    return affinity_distil_loss(student, teacher, lab.unflatten(0, pair.shape[:2]), dense.radius, dense.temperature)


def _out_of_time(started: float, budget: float, step_seconds: float, device: torch.device) -> bool:
    """True (on every process alike) when another step would overrun the wall-clock budget."""
    over = torch.tensor(float(time.monotonic() - started + 1.5 * step_seconds > budget), device=device)
    dist.all_reduce(over, op="max")
    return bool(over.item())


def _checkpoint(model: SSLModel, optimizer: torch.optim.Optimizer, step: int, config: PretrainConfig,
                out_dir: Path, where: dist.DistInfo, elapsed_s: float) -> None:
    """Save the full state, the teacher backbone and the dense encoder from the main process."""
    if where.is_main:
        if model.dense is not None:
            save_dense_encoder(model.dense, out_dir / DENSE_NAME)
        save_training_state(out_dir, model, optimizer, step, step * config.run.batch_size,
                            config_to_dict(config), where.world_size, elapsed_s)
    dist.barrier()


__all__ = ["CheckpointError", "PretrainError", "PretrainResult", "pretrain"]
