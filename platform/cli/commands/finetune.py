"""`segloop finetune vss|vos --project P`, `segloop predict --checkpoint C --project P`, `segloop loop round`."""
from __future__ import annotations

from datetime import UTC
from pathlib import Path

import click

from segloop.platform.core.console import console, print_table, progress_bar
from segloop.platform.core.errors import friendly_errors
from segloop.platform.db.migrate import ensure_db


def _checkpoint_file(checkpoint: str | None) -> str | None:
    """A pretrained weights file given as a path or as a checkpoint id of the DB."""
    if checkpoint is None or Path(checkpoint).is_file():
        return checkpoint
    if checkpoint.isdigit():
        from segloop.platform.db.migrate import db_session
        from segloop.platform.db.stores import artifacts

        with db_session() as session:
            return artifacts.get_checkpoint(session, int(checkpoint)).path
    raise ValueError(f"--checkpoint: {checkpoint} is neither a weights file nor a checkpoint id")


def _default_out(project: str, task: str) -> Path:
    """A fresh output folder per run, so registered checkpoint files are never overwritten."""
    from datetime import datetime

    from segloop.platform.core.settings import load_settings

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return load_settings().runs_dir / "finetune" / project / f"{task}-{stamp}"


def _print_result(title: str, result) -> None:
    """Checkpoint and metrics of a fine-tuning run as a table."""
    rows = [("checkpoint", f"{result.checkpoint_id} ({result.path})"), ("trained on", result.trained_on),
            ("evaluated frames", result.evaluated_on)]
    rows += [(name, f"{value:.4f}") for name, value in result.metrics.items()]
    print_table(title, ["what", "value"], rows)


@click.group("finetune")
def finetune() -> None:
    """Fine-tune segmentation models on a project's labeled frames."""


def _common(func):
    """Options shared by `finetune vss` and `finetune vos`."""
    options = [
        click.option("--project", required=True),
        click.option("--checkpoint", default=None, help="Pretrained backbone: weights file or DB checkpoint id."),
        click.option("--backbone", default="vit_tiny_patch16_224", show_default=True),
        click.option("--short-side", type=click.IntRange(min=16), default=192, show_default=True,
                     help="Frames are embedded at this short side (features cached once per frame)."),
        click.option("--out", type=click.Path(path_type=Path), default=None,
                     help="Output folder (default: a new $SEGLOOP_DATA_DIR/runs/finetune/<project>/<task>-<time>); "
                          "run again with the same --out to resume an interrupted run."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", default="auto", show_default=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@finetune.command("vss")
@_common
@click.option("--head", type=click.Choice(["linear", "multiscale"]), default="multiscale", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--min-steps", type=click.IntRange(min=0), default=200, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--finetune-backbone/--frozen-backbone", default=False, show_default=True,
              help="Train the backbone too (layer-wise LR decay); slow on a CPU.")
@click.option("--layer-decay", type=float, default=0.75, show_default=True)
@click.option("--val-fraction", type=float, default=0.2, show_default=True,
              help="Labeled frames held out for evaluation (none below 5 labeled frames).")
@click.option("--oracle", type=click.Path(path_type=Path), default=None,
              help="Ground truth (DAVIS root or <dir>/<video>/%05d.png): evaluate on every unlabeled frame.")
@friendly_errors
def finetune_vss(project: str, checkpoint: str | None, backbone: str, short_side: int, out: Path | None, seed: int,
                 device: str, head: str, epochs: int, min_steps: int, lr: float, finetune_backbone: bool,
                 layer_decay: float, val_fraction: float, oracle: Path | None) -> None:
    """Train a VSS head (background + the project's label classes) and score it on held-out frames."""
    from segloop.platform.core.settings import load_settings
    from segloop.platform.services.finetuning import finetune_vss_project, load_project
    from segloop.platform.services.loop import oracle_from, oracle_reference
    from segloop.platform.vss.head import VSSConfig

    ensure_db()
    settings = load_settings()
    config = VSSConfig(head=head, epochs=epochs, min_steps=min_steps, lr=lr, finetune_backbone=finetune_backbone,
                       layer_decay=layer_decay, seed=seed, device=device)
    truth = oracle_from(oracle)
    reference = oracle_reference(truth, load_project(project, settings), settings) if truth else None
    with progress_bar("finetune vss") as report:
        result = finetune_vss_project(project, out or _default_out(project, "vss"),
                                      pretrained=_checkpoint_file(checkpoint), backbone=backbone,
                                      short_side=short_side, config=config, val_fraction=val_fraction,
                                      reference=reference, settings=settings, progress=report)
    if result is not None:
        _print_result(f"VSS fine-tuning of {project}", result)


@finetune.command("vos")
@_common
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--prop-short-side", type=click.IntRange(min=16), default=240, show_default=True)
@click.option("--radius", type=click.IntRange(min=0), default=6, show_default=True)
@friendly_errors
def finetune_vos(project: str, checkpoint: str | None, backbone: str, short_side: int, out: Path | None, seed: int,
                 device: str, steps: int, prop_short_side: int, radius: int) -> None:
    """Train the propagation-refinement decoder; J&F of plain vs refined propagation on held-out human frames."""
    from segloop.platform.core.settings import load_settings
    from segloop.platform.services.finetuning import finetune_vos_project
    from segloop.platform.vos.refiner import RefineConfig

    ensure_db()
    settings = load_settings()
    with progress_bar("finetune vos") as report:
        result = finetune_vos_project(project, out or _default_out(project, "vos"),
                                      pretrained=_checkpoint_file(checkpoint), backbone=backbone,
                                      short_side=short_side, config=RefineConfig(steps=steps, seed=seed, device=device),
                                      prop_short_side=prop_short_side, prop_radius=radius, settings=settings,
                                      progress=report)
    if result is not None:
        _print_result(f"VOS refinement of {project}", result)


@click.command("predict")
@click.option("--checkpoint", "checkpoint_id", type=int, required=True, help="A vss checkpoint id.")
@click.option("--project", required=True)
@friendly_errors
def predict(checkpoint_id: int, project: str) -> None:
    """Predict class probabilities of every frame (stored .npz per video) and per-frame uncertainty scores."""
    from segloop.platform.services.finetuning import predict_project

    ensure_db()
    with progress_bar("predict") as report:
        result = predict_project(project, checkpoint_id, progress=report)
    print_table(f"predictions of checkpoint {checkpoint_id}", ["what", "value"],
                [("frames", result["frames"]), ("files", len(result["files"])),
                 ("folder", str(Path(result["files"][0]).parent) if result["files"] else ""),
                 ("uncertainty signals", ", ".join(result["signals"]))])


@click.group("loop")
def loop() -> None:
    """Rounds of select → label → fine-tune → predict → evaluate."""


@loop.command("round")
@click.option("--project", required=True)
@click.option("--strategy", default="kcenter", show_default=True)
@click.option("--budget", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--signal", default=None, help="Uncertainty signal for uncertainty/hybrid (e.g. vss_entropy_mean).")
@click.option("--checkpoint", default=None, help="Pretrained backbone: weights file or DB checkpoint id.")
@click.option("--backbone", default="vit_tiny_patch16_224", show_default=True)
@click.option("--oracle", type=click.Path(path_type=Path), default=None,
              help="Ground truth to simulate the annotator; without it the round stops after selecting.")
@click.option("--max-per-video", type=click.IntRange(min=1), default=None)
@friendly_errors
def loop_round(project: str, strategy: str, budget: int, signal: str | None, checkpoint: str | None, backbone: str,
               oracle: Path | None, max_per_video: int | None) -> None:
    """Run one round of the loop on a project."""
    from segloop.platform.services.loop import RoundConfig, oracle_from, run_round

    ensure_db()
    params = {"signal": signal} if signal else {}
    config = RoundConfig(strategy=strategy, budget=budget, strategy_params=params, max_per_video=max_per_video,
                         backbone=backbone, pretrained=_checkpoint_file(checkpoint))
    with progress_bar("round") as report:
        result = run_round(project, config, oracle_from(oracle), progress=report)
    rows = [("round", result.round), ("status", result.status), ("selection", result.selection_id),
            ("picked", len(result.picked)), ("labeled frames", result.labeled_frames),
            ("checkpoint", result.checkpoint_id)]
    rows += [(k, f"{v:.4f}") for k, v in result.metrics.items()]
    print_table(f"loop round on {project}", ["what", "value"], rows)
    if result.status != "done":
        console.print("Label the picked frames on the Label page (make ui), then run the next round.")


commands = [finetune, predict, loop]
