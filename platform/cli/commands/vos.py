"""`segloop vos propagate`: semi-supervised VOS on a DAVIS-layout root by label propagation."""
from __future__ import annotations

import json
from pathlib import Path

import click

from segloop.platform.cli.commands.eval import sequences_option_values
from segloop.platform.core.backbones import BACKBONE_NAMES, DEFAULT_BACKBONE
from segloop.platform.core.console import OUT_DIR, FiniteFloatRange, console
from segloop.platform.core.davis import DavisLayout
from segloop.platform.core.errors import friendly_errors
from segloop.platform.core.image import MAX_SIDE
from segloop.platform.core.storage import write_json
from segloop.platform.vos.propagation import TEMPERATURE_RANGE, PropagationConfig

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")

DEFAULTS = PropagationConfig()


def davis_dirs(root: Path) -> tuple[Path, Path]:
    """(JPEGImages/480p, Annotations/480p) of a DAVIS-layout root; errors say what is missing."""
    layout = DavisLayout(root)
    frames_dir, masks_dir = layout.images_dir, layout.masks_dir
    if not frames_dir.is_dir():
        raise click.ClickException(f"{frames_dir}: missing (ROOT must be a DAVIS-layout root)")
    if not masks_dir.is_dir():
        raise click.ClickException(f"{masks_dir}: missing (ROOT must be a DAVIS-layout root)")
    return frames_dir, masks_dir


def refuse_out_inside(out_root: Path, root: Path) -> None:
    """UsageError when OUT is ROOT, or lies in its frames or ground-truth masks (propagation would overwrite them)."""
    out, layout = out_root.resolve(), DavisLayout(root)
    inside = (out == folder or folder in out.parents
              for folder in (layout.images_dir.parent.resolve(), layout.masks_dir.parent.resolve()))
    if out == root.resolve() or any(inside):
        raise click.BadParameter(f"{out_root} is inside ROOT's frames or ground-truth masks, which the "
                                 "predictions would overwrite; give a folder outside them", param_hint="--out")


def frame_paths(folder: Path) -> list[Path]:
    """Sorted frame image files of one sequence folder."""
    if not folder.is_dir():
        raise click.ClickException(f"{folder}: sequence folder does not exist")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not paths:
        raise click.ClickException(f"{folder}: no frame images")
    return paths


def is_complete(out_dir: Path, names: list[str], settings: dict) -> bool:
    """True if `out_dir` already holds every mask and a confidence.json written with the same settings."""
    record = out_dir / "confidence.json"
    if not record.is_file():
        return False
    try:
        previous = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    same = isinstance(previous, dict) and previous.get("settings") == settings  # a list or text is another file
    return same and all((out_dir / f"{name}.png").is_file() for name in names)


@click.group(name="vos")
def command() -> None:
    """Video object segmentation from a few annotated keyframes."""


@command.command(name="propagate", context_settings={"allow_extra_args": True})
@click.argument("root", type=click.Path(path_type=Path, file_okay=False), required=False)
@click.option("--out", "out_root", type=OUT_DIR, help="Writes OUT/<seq>/%05d.png (with ROOT).")
@click.option("--video", "video_ids", type=int, multiple=True,
              help="Instead of ROOT: DB video id(s); propagates their human masks, stores drafts, scores and J&F.")
@click.option("--sequences", multiple=True, help="Sequences (default: all); space/comma separated.")
@click.option("--method", type=click.Choice(["auto", "backbone", "dense", "pixels", "copy"]), default="auto",
              show_default=True,
              help="auto: with --video, the project's best propagator per video (its pretrained encoder or VOS model, "
                   "chosen by leave-one-keyframe-out J&F on the human masks; raw colour without one), with ROOT or "
                   "--checkpoint, backbone. Else learned features (a pretrain run's dense encoder, else a ViT), raw "
                   "Lab pixel patches, or copy the nearest keyframe's mask.")
@click.option("--backbone", type=click.Choice(BACKBONE_NAMES), default=DEFAULT_BACKBONE, show_default=True,
              help="timm ViT (random init without --checkpoint).")
@click.option("--checkpoint", type=click.Path(path_type=Path, exists=True),
              help="A `segloop pretrain --out` folder (its dense encoder, else its teacher ViT), or local timm-layout "
                   "weights for --backbone (teacher_backbone.pth, a timm/DINOv2 file).")
@click.option("--model", "model_dir", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="A VOS model folder (`segloop finetune vos --out`): its memory model propagates instead of "
                   "--method.")
@click.option("--keyframes", default="first", show_default=True,
              help="first | uniform:K | comma-separated frame indices.")
@click.option("--short-side", default=DEFAULTS.short_side, show_default=True, type=click.IntRange(min=16, max=MAX_SIDE))
@click.option("--size-multiple", default=DEFAULTS.size_multiple, show_default=True, type=click.IntRange(min=1),
              help="Long side floored to this.")
@click.option("--n-last", default=DEFAULTS.n_last, show_default=True, type=click.IntRange(min=0),
              help="Propagated frames kept as context.")
@click.option("--topk", default=DEFAULTS.topk, show_default=True, type=click.IntRange(min=1))
@click.option("--radius", default=DEFAULTS.radius, show_default=True, type=int,
              help="Window radius in feature cells around each keyframe position (≤ 0: whole frame).")
@click.option("--recent-radius", default=DEFAULTS.recent_radius, show_default=True, type=click.IntRange(min=-1),
              help="Window radius in cells for the last propagated frames (consecutive frames move little); "
                   "0: the whole frame; -1: the same as --radius.")
@click.option("--temperature", default=DEFAULTS.temperature, show_default=True,
              type=FiniteFloatRange(*TEMPERATURE_RANGE), help="Softmax temperature of the top-k vote.")
@click.option("--max-keyframes-context", default=DEFAULTS.max_keyframes_in_context, show_default=True,
              type=click.IntRange(min=1))
@click.option("--pixel-patch", default=16, show_default=True, type=click.IntRange(min=1),
              help="Patch size of --method pixels.")
@click.option("--pixel-cells", default=4, show_default=True, type=click.IntRange(min=1),
              help="--method pixels: average each patch to CELLS x CELLS Lab colours (≥ patch: every pixel).")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda[:N]")
@click.option("--overwrite", is_flag=True, help="Recompute sequences already finished with the same settings.")
@click.pass_context
@friendly_errors
def propagate_command(ctx: click.Context, root: Path | None, out_root: Path | None, video_ids: tuple[int, ...],
                      sequences: tuple[str, ...], method: str, model_dir: Path | None,
                      backbone: str, checkpoint: Path | None, keyframes: str, short_side: int, size_multiple: int,
                      n_last: int, topk: int, radius: int, recent_radius: int, temperature: float,
                      max_keyframes_context: int,
                      pixel_patch: int, pixel_cells: int | None, batch_size: int, device: str, overwrite: bool) -> None:
    """Propagate the keyframe masks of ROOT (DAVIS layout) to every frame; reads only keyframe annotations."""
    from segloop.platform.services.models import requested_propagator
    from segloop.platform.vos import propagation as vos
    from segloop.pretrain.backbones import BackboneError

    recent = None if recent_radius < 0 else recent_radius
    if checkpoint is not None and method not in ("auto", "backbone", "dense"):
        raise click.UsageError("--checkpoint only applies to --method backbone or dense")
    if model_dir is not None and ctx.get_parameter_source("method") != click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--model propagates with the VOS model: drop --method")
    if bool(video_ids) == (root is not None):
        raise click.UsageError("give either ROOT (a DAVIS-layout folder) or --video ID, not both")
    if root is not None and out_root is None:
        raise click.UsageError("--out is required with ROOT")
    if video_ids:
        ignored = [option for option, given in (("--out", out_root is not None), ("--sequences", bool(sequences)),
                                                ("--overwrite", overwrite)) if given]
        if ignored:  # a video's drafts are stored in the database, every time
            raise click.UsageError(f"{', '.join(ignored)} only apply to ROOT: with --video the propagated masks are "
                                   "stored as drafts in the database")
        keyframes_given = ctx.get_parameter_source("keyframes") != click.core.ParameterSource.DEFAULT
        keyframe_spec = keyframes if keyframes_given else None
        config = vos.PropagationConfig(
            short_side=short_side, size_multiple=size_multiple, n_last=n_last, topk=topk, radius=radius,
            recent_radius=recent, temperature=temperature, max_keyframes_in_context=max_keyframes_context,
            batch_size=batch_size,
        )
        try:
            if model_dir is not None:
                from segloop.platform.vos.memory import load_memory_propagator

                featurizer = load_memory_propagator(model_dir, short_side)
            else:  # None for auto: each video's own best propagator
                featurizer = requested_propagator(method, backbone, checkpoint, config, device,
                                                  pixel_patch=pixel_patch, pixel_cells=pixel_cells)
            _run_videos(list(video_ids), featurizer, config, keyframe_spec, device)
        except (ValueError, BackboneError, LookupError) as exc:  # PropagationError, MaskError, MemoryModelError
            raise click.ClickException(str(exc)) from None
        return
    method = "backbone" if method == "auto" else method
    frames_dir, masks_dir = davis_dirs(root)
    refuse_out_inside(out_root, root)
    names = sequences_option_values(ctx, sequences) or sorted(p.name for p in frames_dir.iterdir() if p.is_dir())
    if not names:
        raise click.ClickException(f"{frames_dir}: no sequence folders")
    try:
        config = vos.PropagationConfig(
            short_side=short_side, size_multiple=size_multiple, n_last=n_last, topk=topk, radius=radius,
            recent_radius=recent, temperature=temperature, max_keyframes_in_context=max_keyframes_context,
            batch_size=batch_size,
        )
        plan = {name: frame_paths(frames_dir / name) for name in names}
        if model_dir is not None:
            from segloop.platform.vos.memory import load_memory_propagator

            featurizer, method, checkpoint = load_memory_propagator(model_dir, short_side), "model", model_dir
        else:
            featurizer = vos.make_featurizer(method, backbone, checkpoint, config, device, pixel_patch, pixel_cells)
        pixels = {"pixel_patch": pixel_patch, "pixel_cells": pixel_cells} if method == "pixels" else {}
        _run(plan, masks_dir, out_root, featurizer, config, method, backbone, checkpoint, keyframes, pixels, overwrite)
    except (ValueError, BackboneError) as exc:  # PropagationError, MaskError, MemoryModelError
        raise click.ClickException(str(exc)) from None


def _run_videos(video_ids: list[int], featurizer, config, keyframes: str | None, device: str) -> None:
    """Propagate DB videos with a progress bar and print what was stored; without a featurizer, each video
    with the project's best propagator for it."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from segloop.platform.core.console import LazyProgress, print_table
    from segloop.platform.db.migrate import ensure_db
    from segloop.platform.services.models import propagator_for
    from segloop.platform.services.propagation import propagate_video, require_propagatable

    ensure_db()
    require_propagatable(video_ids, keyframes)
    rows, notes = [], []
    with LazyProgress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn()) as bar:
        for video_id in video_ids:
            task = bar.add_task(f"video {video_id}", total=None)
            chosen, choice = propagator_for(video_id, config, featurizer, device=device)
            used = getattr(chosen, "name", str(chosen))
            if choice is not None:
                used = choice.propagator
                scores = ", ".join(f"{name} {value:.3f}" for name, value in choice.scores.items())
                notes.append(f"video {video_id}: {choice.propagator}, {choice.reason}" + (f" ({scores})" if scores
                                                                                           else ""))
            result = propagate_video(video_id, chosen, config, keyframes,
                                     on_frame=lambda done, total, t=task: bar.update(t, completed=done, total=total))
            rows.append((result.video_id, result.video_name, used, len(result.keyframes), result.drafts,
                         result.scored_frames,
                         *(f"{result.scores[k]:.3f}" if result.scores else "" for k in ("J&F", "J", "F"))))
    print_table("propagation", ["video", "name", "propagator", "keyframes", "drafts", "scored frames", "J&F", "J",
                                "F"], rows)
    for note in notes:
        console.print(note)


def _run(plan: dict[str, list[Path]], masks_dir: Path, out_root: Path, featurizer, config, method: str,
         backbone: str, checkpoint: Path | None, keyframes_spec: str, pixels: dict, overwrite: bool) -> None:
    """Propagate every planned sequence, writing masks and confidence.json; skips finished ones."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from segloop.platform.core.console import LazyProgress
    from segloop.platform.vos import propagation as vos

    settings = {
        "method": method,
        "backbone": backbone if method == "backbone" else None,
        "checkpoint": str(checkpoint) if checkpoint else None,
        **pixels,
        "keyframes": keyframes_spec,
        **({} if method == "copy" else config.as_dict()),
    }
    done = {name for name, paths in plan.items()
            if not overwrite and is_complete(out_root / name, [p.stem for p in paths], settings)}
    keyframe_files = {name: vos.keyframe_mask_files(name, paths, masks_dir / name, keyframes_spec)
                      for name, paths in plan.items() if name not in done}
    every = sorted(name for name, files in keyframe_files.items() if len(files) == len(plan[name]) > 1)
    if every:
        console.print(f"note: with --keyframes {keyframes_spec}, every frame of {', '.join(every)} is a keyframe: "
                      "its masks are copied, not propagated (and score as the ground truth they are)")
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with LazyProgress(*columns) as progress:
        overall = progress.add_task("frames", total=sum(len(p) for p in plan.values()))
        for name, paths in plan.items():
            out_dir = out_root / name
            if name in done:
                progress.console.print(f"{name}: already done, skipped")
                progress.advance(overall, len(paths))
                continue
            progress.update(overall, description=name)
            _propagate_sequence(name, paths, out_dir, featurizer, config, keyframe_files[name], settings,
                                lambda: progress.advance(overall))


def _propagate_sequence(name: str, paths: list[Path], out_dir: Path, featurizer, config,
                        mask_paths: dict[int, Path], settings: dict, on_frame) -> None:
    """Masks and confidence.json of one sequence from the annotations of its keyframes only."""
    from segloop.platform.core.masks import mask_style, read_mask, write_mask
    from segloop.platform.vos import propagation as vos

    frames = vos.FrameFolder(paths)
    keyframe_masks = {}
    for index, mask_path in mask_paths.items():
        keyframe_masks[index] = read_mask(mask_path)
        if keyframe_masks[index].shape != frames.size:
            raise vos.PropagationError(
                f"{mask_path}: size {keyframe_masks[index].shape[::-1]} differs from frame {paths[index]} "
                f"{frames.size[::-1]}"
            )
    style = mask_style(mask_paths[min(mask_paths)])
    records = []
    # The old record no longer describes the folder once a mask is rewritten: an interrupted rerun (--overwrite,
    # other settings) left masks of two runs under the first run's record, and was then skipped as done.
    (out_dir / "confidence.json").unlink(missing_ok=True)
    for result in vos.iter_propagate(frames, keyframe_masks, featurizer, config):
        write_mask(out_dir / f"{paths[result.index].stem}.png", result.mask, style=style)
        records.append({"index": result.index, "name": paths[result.index].stem, **result.confidence})
        on_frame()
    write_json(out_dir / "confidence.json", {
        "sequence": name,
        "keyframes": sorted(mask_paths),
        "mask_style": style,
        "settings": settings,
        "frames": records,
    })
