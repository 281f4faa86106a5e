"""`segloop finetune vss|vos --project P`, `segloop predict --checkpoint C --project P`, `segloop loop round`."""
from __future__ import annotations

import os
from datetime import UTC
from pathlib import Path

import click

from segloop.platform.cli.options import checked_params, checkpoint_fields, spec_options
from segloop.platform.core.console import OUT_DIR, console, print_table, progress_bar
from segloop.platform.core.errors import friendly_errors
from segloop.platform.services.params import FinetuneVOSParams, FinetuneVSSParams, LoopRoundParams, PredictParams

PRETRAINED = ("checkpoint_id", "weights")  # given as one --checkpoint PATH|ID on the command line
CHECKPOINT_HELP = ("Pretrained backbone: a weights file, a `segloop pretrain --out` folder or a DB checkpoint id "
                   "(default with --project: its newest pretrained encoder).")


def _default_out(project: str, task: str) -> Path:
    """A fresh output folder per run, so registered checkpoint files are never overwritten."""
    import uuid
    from datetime import datetime

    from segloop.platform.core.settings import load_settings

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return load_settings().runs_dir / "finetune" / project / f"{task}-{stamp}-{uuid.uuid4().hex[:6]}"


def _print_result(title: str, result) -> None:
    """Checkpoint and metrics of a fine-tuning run as a table."""
    rows = [("checkpoint", f"{result.checkpoint_id} ({result.path})"), ("trained on", result.trained_on),
            ("evaluated frames", result.evaluated_on)]
    rows += [(name, f"{value:.4f}") for name, value in result.metrics.items()]
    print_table(title, ["what", "value"], rows)


@click.group("finetune")
def finetune() -> None:
    """Fine-tune segmentation models on a project's labeled frames."""


def _run_options(func):
    """Options of `finetune vss|vos` that are not params of the operation: weights as path or id, folder, device."""
    options = [
        click.option("--checkpoint", default=None, help=CHECKPOINT_HELP),
        click.option("--out", type=OUT_DIR, default=None,
                     help="Output folder (default: a new $SEGLOOP_DATA_DIR/runs/finetune/<project>/<task>-<time>); "
                          "vss: run again with the same --out to resume an interrupted run (the VOS model trains "
                          "for minutes and starts over)."),
        click.option("--device", default="auto", show_default=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@finetune.command("vss")
@spec_options(FinetuneVSSParams, exclude=PRETRAINED, required=("project",),
              names={"finetune_backbone": "--finetune-backbone/--frozen-backbone"})
@_run_options
@friendly_errors
def finetune_vss(checkpoint: str | None, out: Path | None, device: str, **values) -> None:
    """Train a VSS head (background + the project's label classes) and score it on held-out frames."""
    _finetune("finetune_vss", FinetuneVSSParams, values, checkpoint, out, device, "VSS fine-tuning")


@finetune.command("vos")
@spec_options(FinetuneVOSParams, exclude=PRETRAINED)
@click.option("--frames", "frames_root", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Instead of --project: a DAVIS-layout root; the masks of --keyframes are the labels, the other "
                   "masks score the model (needs --out).")
@click.option("--keyframes", default="uniform:3", show_default=True,
              help="With --frames: the labelled frames per sequence (first | uniform:K | indices).")
@_run_options
@friendly_errors
def finetune_vos(checkpoint: str | None, out: Path | None, device: str, frames_root: Path | None, keyframes: str,
                 **values) -> None:
    """Train the memory VOS model (keys from the pretrained encoder); J&F of plain propagation vs the model."""
    if frames_root is not None:
        _finetune_vos_root(frames_root, keyframes, checkpoint, out, values)
        return
    if not values.get("project"):
        raise click.UsageError("give --project P (a project's human masks) or --frames ROOT (a DAVIS root)")
    _finetune("finetune_vos", FinetuneVOSParams, values, checkpoint, out, device, "VOS model")


def _finetune_vos_root(root: Path, keyframes: str, checkpoint: str | None, out: Path | None, values: dict) -> None:
    """`finetune vos --frames ROOT`: train on the keyframes' masks, save to --out, print plain vs model J&F."""
    from segloop.platform.services.finetuning import finetune_vos_root
    from segloop.platform.vos.memory_train import MemoryTrainConfig

    if out is None:
        raise click.UsageError("--frames needs --out DIR (where the model folder is written)")
    if checkpoint is not None and not Path(checkpoint).is_dir():
        raise click.BadParameter(f"{checkpoint}: with --frames, give a `segloop pretrain --out` folder",
                                 param_hint="--checkpoint")
    config = MemoryTrainConfig(steps=values.get("steps") or MemoryTrainConfig.steps, seed=values.get("seed") or 0)
    with progress_bar("finetune vos") as report:
        result = finetune_vos_root(root, keyframes, out, encoder=checkpoint, config=config,
                                   prop_short_side=values.get("prop_short_side") or 240, progress=report)
    if result["scores"]:
        print_table(f"VOS model in {out}: J&F on the annotated non-keyframes", ["propagation", "J&F"],
                    [(name.removeprefix("J&F_"), f"{value:.4f}") for name, value in result["scores"].items()])
    else:  # it printed an empty table
        console.print(f"VOS model saved in {out}, not scored: no annotated frame is left besides the keyframes and "
                      "each sequence's first and last frame")
    console.print(f"trained {result['steps']} of {config.steps} steps in {result['seconds']:.0f} s"
                  + (" (ended by the time limit)" if result["seconds"] >= config.max_seconds else ""))


def _finetune(kind: str, params_class: type, values: dict, checkpoint: str | None, out: Path | None, device: str,
              title: str) -> None:
    """Body of `finetune vss|vos`: check the params, train with a progress bar, print the result."""
    from segloop.platform.services import runs

    params = checked_params(kind, params_class, values, **checkpoint_fields(checkpoint))
    task = kind.removeprefix("finetune_")
    train = {"finetune_vss": runs.finetune_vss, "finetune_vos": runs.finetune_vos}[kind]
    if out is None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # each process would pick its own default folder
            raise click.UsageError("under torchrun give --out: every process writes and resumes the same folder")
        out = _default_out(params.project, task)
        again = f"stopped early? `--out {out}` resumes it" if task == "vss" else "a rerun trains afresh"
        console.print(f"run folder: {out} ({again})", soft_wrap=True)
    with progress_bar(kind.replace("_", " ")) as report:
        result = train(params, out, device=device, progress=report)
    if result is not None:
        _print_result(f"{title} of {params.project}", result)


@click.command("predict")
@spec_options(PredictParams, names={"checkpoint_id": "--checkpoint"}, required=("project",))
@friendly_errors
def predict(**values) -> None:
    """Predict every frame with a VSS checkpoint (class probabilities; its temporal module when it has one) or a VOS
    checkpoint (propagated from each video's human masks), by default the project's newest of either: .npz per video
    and per-frame uncertainty scores."""
    from segloop.platform.services.finetuning import predict_project

    params = checked_params("predict", PredictParams, values)
    with progress_bar("predict") as report:
        result = predict_project(params.project, params.checkpoint_id, progress=report)
    print_table(f"predictions of checkpoint {result['checkpoint_id']}", ["what", "value"],
                [("frames", result["frames"]), ("files", len(result["files"])),
                 ("folder", str(Path(result["files"][0]).parent) if result["files"] else ""),
                 ("uncertainty signals", ", ".join(result["signals"]))]
                + ([("temporal module", "yes" if result["temporal"] else "no")] if "temporal" in result else [])
                + ([("videos without a human mask (skipped)", ", ".join(result["skipped_videos"]))]
                   if result.get("skipped_videos") else []))


@click.group("loop")
def loop() -> None:
    """Rounds of select → label → fine-tune → predict → evaluate."""


@loop.command("round")
@spec_options(LoopRoundParams, exclude=PRETRAINED, required=("project",))
@click.option("--signal", default=None, help="Uncertainty signal for uncertainty/hybrid (e.g. vss_entropy_mean).")
@click.option("--checkpoint", default=None, help=CHECKPOINT_HELP)
@friendly_errors
def loop_round(signal: str | None, checkpoint: str | None, **values) -> None:
    """Run one round of the loop on a project."""
    from segloop.platform.services import runs

    if signal:
        values["strategy_params"] = {**(values.get("strategy_params") or {}), "signal": signal}
    params = checked_params("loop_round", LoopRoundParams, values, **checkpoint_fields(checkpoint))
    with progress_bar("round") as report:
        result = runs.loop_round(params, progress=report)
    rows = [("round", result.round), ("status", result.status), ("selection", result.selection_id),
            ("picked", len(result.picked)), ("labeled frames", result.labeled_frames),
            ("checkpoint", result.checkpoint_id)]
    rows += [(k, f"{v:.4f}") for k, v in result.metrics.items()]
    print_table(f"loop round on {params.project}", ["what", "value"], rows)
    if result.status == "awaiting labels":
        console.print(f"Label the picked frames on the Label page (make ui), then run `loop round` again to continue "
                      f"round {result.round}" + (f" ({result.note})" if result.note else "."), soft_wrap=True)
    elif result.status == "nothing to label":
        console.print(f"Nothing to label: {result.note}")


commands = [finetune, predict, loop]
