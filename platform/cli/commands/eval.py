"""`segloop eval vos|vss`: DAVIS J&F of predicted mask folders, and mIoU / J&F / stability for VSS."""
from __future__ import annotations

import json
from pathlib import Path

import click

from segloop.platform.core.console import OUT_FILE
from segloop.platform.core.errors import friendly_errors
from segloop.platform.core.masks import VOID_LABEL
from segloop.platform.core.storage import write_json


def split_names(values: tuple[str, ...] | list[str], extra: list[str] | None = None) -> list[str]:
    """Names from repeated or comma-separated option values plus trailing extra arguments, in order, unique."""
    names: list[str] = []
    for value in list(values) + list(extra or []):
        names.extend(part for part in value.replace(",", " ").split() if part)
    return list(dict.fromkeys(names))


def sequences_option_values(ctx: click.Context, sequences: tuple[str, ...]) -> list[str]:
    """`--sequences a b c`: the option's values plus the bare words click left over after it."""
    if ctx.args and not sequences:
        raise click.UsageError(f"unexpected extra arguments: {' '.join(ctx.args)}")
    names = split_names(sequences, ctx.args)
    if sequences and not names:
        raise click.BadParameter(f"{' '.join(sequences)!r}: give at least one sequence name", param_hint="--sequences")
    pathlike = next((n for n in names if "/" in n or "\\" in n or n in (".", "..")), None)
    if pathlike is not None:  # '../evil' read and wrote outside ROOT and OUT
        raise click.BadParameter(f"{pathlike!r} is not a sequence name (a folder name, without '/')",
                                 param_hint="--sequences")
    return names


def resolve_sequences(ctx: click.Context, sequences: tuple[str, ...], gt_root: Path) -> tuple[Path, list[str]]:
    """(ground-truth mask folder, sequence names): the --sequences given, else every sequence with masks."""
    from segloop.platform.core.davis import list_sequences
    from segloop.platform.evaluation import metrics as ev

    gt_dir = ev.resolve_gt_root(gt_root)
    names = sequences_option_values(ctx, sequences) or list_sequences(gt_dir)
    if not names:
        raise ev.EvaluationError(f"{gt_dir}: no sequence folders with PNG masks")
    return gt_dir, names


def keyframes_from_confidence(pred_root: Path, name: str) -> list[int]:
    """Keyframe indices recorded by `segloop vos propagate` in `<pred_root>/<seq>/confidence.json`."""
    path = pred_root / name / "confidence.json"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise click.ClickException(f"{path}: missing (needed by --exclude-keyframes)") from None
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: not readable JSON ({str(exc).splitlines()[0][:200]})") from None
    keyframes = record.get("keyframes") if isinstance(record, dict) else None
    if (not isinstance(keyframes, list)
            or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in keyframes)):
        raise click.ClickException(f"{path}: no 'keyframes' list of frame numbers (needed by --exclude-keyframes)")
    return keyframes


@click.group(name="eval")
def command() -> None:
    """Evaluate predicted masks against ground truth (DAVIS J&F, VSS mIoU)."""


_EXTRA = {"allow_extra_args": True}


@command.command(name="vos", context_settings=_EXTRA)
@click.option("--pred", "pred_root", required=True, type=click.Path(path_type=Path), help="PRED_ROOT/<seq>/%05d.png")
@click.option("--gt", "gt_root", required=True, type=click.Path(path_type=Path),
              help="GT_ROOT/<seq>/%05d.png, or a DAVIS root (uses Annotations/480p)")
@click.option("--sequences", multiple=True, help="Sequences to score (default: all in GT_ROOT); space/comma separated.")
@click.option("--json", "json_out", type=OUT_FILE, help="Write the summary JSON here.")
@click.option("--exclude-keyframes", is_flag=True,
              help="Do not score the keyframes listed in PRED_ROOT/<seq>/confidence.json.")
@click.option("--all-frames", is_flag=True,
              help="Also score the first and last frame (default: DAVIS protocol skips them).")
@click.pass_context
@friendly_errors
def vos_command(ctx: click.Context, pred_root: Path, gt_root: Path, sequences: tuple[str, ...],
                json_out: Path | None, exclude_keyframes: bool, all_frames: bool) -> None:
    """DAVIS J&F (mean, recall, decay) of PRED_ROOT against GT_ROOT."""
    from rich.console import Console

    from segloop.platform.core.console import LazyProgress
    from segloop.platform.evaluation import metrics as ev

    try:
        gt_dir, names = resolve_sequences(ctx, sequences, gt_root)
        frames = None
        if exclude_keyframes:
            frames = {}
            for name in names:
                count = len(list((gt_dir / name).glob("*.png")))
                keyframes = set(keyframes_from_confidence(pred_root, name))
                frames[name] = [i for i in range(count) if i not in keyframes]
        total = sum(len(list((gt_dir / n).glob("*.png"))) for n in names)
        with LazyProgress(transient=True) as progress:
            task = progress.add_task("scoring frames", total=total)
            report = ev.evaluate_vos_folders(
                pred_root, gt_dir, names, frames=frames, skip_first_last=not all_frames,
                on_frame=lambda: progress.advance(task),
            )
        summary = report.summary()
    except ev.EvaluationError as exc:
        raise click.ClickException(str(exc)) from None
    _print_vos_table(Console(markup=False), summary)
    if json_out is not None:
        write_json(json_out, summary)
        click.echo(f"wrote {json_out}")


def _print_vos_table(console, summary: dict) -> None:
    """Per-sequence J&F / J / F table and the pooled J, F statistics."""
    from rich.table import Table

    table = Table(title="DAVIS J&F per sequence")
    for column in ("sequence", "J&F", "J", "F"):
        table.add_column(column, justify="left" if column == "sequence" else "right")
    for name, scores in summary["sequences"].items():
        table.add_row(name, *(f"{scores[k]:.3f}" for k in ("J&F", "J", "F")))
    table.add_section()
    table.add_row("all objects", f"{summary['J&F']:.3f}", f"{summary['J']['mean']:.3f}", f"{summary['F']['mean']:.3f}")
    console.print(table)
    stats = Table(title="pooled statistics")
    for column in ("measure", "mean", "recall", "decay"):
        stats.add_column(column, justify="left" if column == "measure" else "right")
    for measure in ("J", "F"):
        stats.add_row(measure, *(f"{summary[measure][k]:.3f}" for k in ("mean", "recall", "decay")))
    console.print(stats)


@command.command(name="vss", context_settings=_EXTRA)
@click.option("--pred", "pred_root", required=True, type=click.Path(path_type=Path),
              help="PRED_ROOT/<seq>/%05d.png class maps")
@click.option("--gt", "gt_root", required=True, type=click.Path(path_type=Path),
              help="GT_ROOT/<seq>/%05d.png class maps")
@click.option("--num-classes", required=True, type=click.IntRange(min=1, max=VOID_LABEL),
              help=f"Number of classes (ids 0..N-1 of 8-bit class maps; {VOID_LABEL} ignored).")
@click.option("--sequences", multiple=True, help="Sequences to score (default: all in GT_ROOT); space/comma separated.")
@click.option("--json", "json_out", type=OUT_FILE, help="Write the summary JSON here.")
@click.pass_context
@friendly_errors
def vss_command(ctx: click.Context, pred_root: Path, gt_root: Path, num_classes: int,
                sequences: tuple[str, ...], json_out: Path | None) -> None:
    """mIoU, per-class IoU and J&F, and temporal stability of predicted class maps."""
    from rich.console import Console
    from rich.table import Table

    from segloop.platform.evaluation import metrics as ev

    try:
        gt_dir, names = resolve_sequences(ctx, sequences, gt_root)
        preds, gts = {}, {}
        for name in names:
            preds[name], gts[name] = ev.sequence_mask_pairs(pred_root, gt_dir, name, class_maps=True)
        summary = ev.evaluate_vss(preds, gts, num_classes)
    except ev.EvaluationError as exc:
        raise click.ClickException(str(exc)) from None
    stability = summary["temporal_stability"]
    shown = "n/a (no sequence has 2 frames)" if stability is None else f"{stability:.3f}"
    table = Table(title=f"VSS: mIoU {summary['mIoU']:.3f}, temporal stability {shown}")
    for column in ("class", "IoU", "J", "F", "J&F"):
        table.add_column(column, justify="right")
    for cls, entry in summary["classes"].items():
        table.add_row(cls, *("-" if entry.get(k) is None else f"{entry[k]:.3f}" for k in ("IoU", "J", "F", "J&F")))
    Console(markup=False).print(table)
    if json_out is not None:
        write_json(json_out, summary)
        click.echo(f"wrote {json_out}")
