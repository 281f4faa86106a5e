"""`segloop pretrain` (self-supervised pretraining on the user's frames) and `segloop embed`
(per-frame CLS / pooled-patch embeddings from a checkpoint or a timm backbone)."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import click

from segloop.platform.cli.options import checkpoint_fields, spec_options
from segloop.platform.core.backbones import BACKBONE_NAMES, DEFAULT_BACKBONE
from segloop.platform.core.console import OUT_DIR, OUT_FILE
from segloop.platform.services.params import EmbedParams


class CliInputError(ValueError):
    """A command-line value that cannot be used; the message names the option."""


def parse_sets(values: tuple[str, ...]) -> dict:
    """Nested overrides from `--set section.key=value` items (values parsed as YAML scalars/lists)."""
    import yaml

    overrides: dict = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:
            raise CliInputError(f"--set {item!r}: expected section.key=value, e.g. loss.random_walk_weight=0")
        section, name = key.split(".", 1)
        overrides.setdefault(section, {})[name] = yaml.safe_load(raw)
    return overrides


def flag_overrides(backbone: str | None, img_size: int | None, steps: int | None, max_minutes: float | None,
                   batch_size: int | None, init: str | None, workers: int | None, device: str | None,
                   compile_model: bool) -> dict:
    """Config overrides from the explicit command-line flags (only those given)."""
    out: dict = {"data": {}, "model": {}, "run": {}}
    if backbone:
        out["model"]["backbone"] = backbone
    if init:
        out["model"]["init_weights"] = str(init)
    if compile_model:
        out["model"]["compile"] = True
    if img_size is not None:
        out["data"].update(global_size=img_size, local_size=max(16, img_size // 32 * 16), clip_size=img_size)
    if workers is not None:
        out["data"]["num_workers"] = workers
    if steps is not None:
        out["run"]["steps"] = steps
        out["run"]["max_minutes"] = max_minutes  # explicit steps win over a config's time budget unless both given
    if max_minutes is not None:
        out["run"]["max_minutes"] = max_minutes
    if batch_size is not None:
        out["run"]["batch_size"] = batch_size
    if device:
        out["run"]["device"] = device
    return {k: v for k, v in out.items() if v}


def _merge(base: dict, extra: dict) -> dict:
    """Two-level merge of override dicts (extra wins)."""
    merged = {k: dict(v) for k, v in base.items()}
    for section, values in extra.items():
        merged.setdefault(section, {}).update(values)
    return merged


def run_pretraining(config, videos, out: Path, resume: bool, quiet: bool = False):
    """Run `segloop.pretrain.train.pretrain` with a rich progress bar on the main process; the result."""
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from segloop.platform.core.console import LazyProgress
    from segloop.pretrain import dist
    from segloop.pretrain.train import pretrain

    show = not quiet and int(os.environ.get("RANK", "0")) == 0
    columns = (TextColumn("pretrain", style="bold"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.description}", markup=False))
    with (LazyProgress(*columns) if show else contextlib.nullcontext()) as bar:
        task = bar.add_task("starting", total=1.0) if show else None

        def report(fraction: float, message: str) -> None:
            if show:
                bar.update(task, completed=fraction, description=message)

        try:
            return pretrain(config, videos, out, resume=resume, progress=report)
        finally:
            dist.shutdown()


@click.command(name="pretrain")
@click.option("--frames", "frames_root", type=click.Path(path_type=Path),
              help="DAVIS root (JPEGImages/480p/<seq>), folder of sequence folders of JPEGs, or folder of mp4s.")
@click.option("--project", default=None, help="Instead of --frames: the stored frames of this project (the checkpoint "
                                              "is registered with it).")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="YAML overrides of the defaults.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one config value (applied after --config and the flags below).")
@click.option("--backbone", type=click.Choice(BACKBONE_NAMES), help="timm ViT (default: the config's).")
@click.option("--img-size", type=int, help="Global crop and clip size in px (local crops half of it).")
@click.option("--steps", type=int, help="Optimisation steps (the schedules' horizon); with --max-minutes the time "
                                        "budget is the horizon instead and --steps is not used.")
@click.option("--max-minutes", type=float, help="Stop cleanly with a final checkpoint after this wall-clock time.")
@click.option("--batch-size", type=int, help="Samples per step per process.")
@click.option("--init", "init", type=click.Path(path_type=Path), help="Start from these timm-layout weights.")
@click.option("--workers", type=int, help="DataLoader worker processes.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Training device.")
@click.option("--compile", "compile_model", is_flag=True, help="torch.compile the backbone forward.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pth (fresh start if none).")
@click.option("--out", type=OUT_DIR, required=True, help="Run folder.")
def pretrain_command(frames_root, project, config_file, sets, backbone, img_size, steps, max_minutes, batch_size,
                     init, workers, device, compile_model, resume, out) -> None:
    """Self-supervised pretraining (DINO + iBOT + KoLeo + contrastive random walk) on your own frames.

    Writes OUT/teacher_backbone.pth (timm key layout), OUT/checkpoint.pth (exact resume),
    OUT/config.yaml, OUT/metrics.jsonl and OUT/loss_curve.png. Runs as is under
    `torchrun --nproc_per_node=N`.
    """
    from segloop.platform.core.errors import friendly_errors

    created = not Path(out).exists()
    try:
        friendly_errors(_pretrain)(frames_root, project, config_file, sets, backbone, img_size, steps, max_minutes,
                                   batch_size, init, workers, device, compile_model, resume, out)
    except (click.ClickException, KeyboardInterrupt):
        if created and Path(out).is_dir() and not (Path(out) / "checkpoint.pth").exists():
            shutil.rmtree(out, ignore_errors=True)  # a refusal before the first checkpoint leaves no folder
        raise


def _pretrain(frames_root, project, config_file, sets, backbone, img_size, steps, max_minutes, batch_size, init,
              workers, device, compile_model, resume, out) -> None:
    """Body of `segloop pretrain` (errors are ValueErrors with a clear message)."""
    from segloop.pretrain.config import load_config
    from segloop.pretrain.frames import discover_videos

    if (frames_root is None) == (project is None):
        raise CliInputError("give either --frames ROOT or --project NAME")
    if steps is not None and max_minutes is not None:  # it ran 53 steps for --steps 2 without a word
        from segloop.platform.core.console import console

        console.print("note: --max-minutes sets the schedule's horizon; --steps is not used")
    flags = flag_overrides(backbone, img_size, steps, max_minutes, batch_size, init, workers, device, compile_model)
    overrides = _merge(flags, parse_sets(sets))  # the specific --set wins over a convenience flag (--img-size)
    config = load_config(config_file, overrides)
    if project is not None:
        from segloop.platform.db.migrate import ensure_db
        from segloop.platform.services.pretraining import project_clips

        ensure_db()
        videos = project_clips(project)
    else:
        videos = discover_videos(frames_root, cache_dir=Path(out) / "decoded-frames")
    from segloop.platform.core.settings import load_settings
    from segloop.platform.services.artifacts import require_fresh_out

    require_fresh_out(out, load_settings(), only_with_a_database=True)
    result = run_pretraining(config, videos, Path(out), resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if project is not None:
        from segloop.platform.core.console import console
        from segloop.platform.services.pretraining import register_pretrain_checkpoint

        checkpoint = register_pretrain_checkpoint(project, config, result)
        console.print(f"registered checkpoint {checkpoint.id} for project {project!r}")
    _report(result, sum(len(v) for v in videos), len(videos), config.dense.distil_target)


def _report(result, frames: int, videos: int, distil_target: str) -> None:
    """Print where the run's files are, a short loss table, and write the loss-curve PNG."""
    from segloop.platform.core.console import console, print_table
    from segloop.pretrain.plot import loss_table, plot_metrics, read_metrics

    png = (plot_metrics(result.metrics_path, result.out_dir / "loss_curve.png")
           if result.metrics_path.is_file() else None)
    rows = loss_table(read_metrics(result.metrics_path)) if result.metrics_path.is_file() else []
    if rows:
        columns = list(rows[0].keys())
        print_table("pretraining loss", columns, [[f"{r[c]:.4f}" if isinstance(r[c], float) else r[c]
                                                   for c in columns] for r in rows])
    stop = " (stopped by --max-minutes)" if result.stopped_by_time else ""
    console.print(f"trained on {frames} frames of {videos} videos: step {result.step}/{result.total_steps}{stop}")
    if result.distil_steps:
        console.print(f"dense encoder distilled into one full-colour pass: {result.distil_steps} steps, "
                      f"final {distil_target} loss against its three dropped-channel views "
                      f"{result.distil_loss:.4f}")
    console.print(f"teacher backbone: {result.teacher_path}")
    console.print(f"checkpoint:       {result.checkpoint_path}")
    console.print(f"metrics:          {result.metrics_path}" + (f"\nloss curve:       {png}" if png else ""))


@click.command(name="embed")
@click.option("--checkpoint", default=None,
              help="Weights: a `segloop pretrain --out` folder, its teacher_backbone.pth or any timm-layout weights "
                   "file; with --project also a DB checkpoint id (default there: the project's newest pretrained "
                   "encoder).")
@click.option("--backbone", type=click.Choice(BACKBONE_NAMES), default=None,
              help=f"timm ViT for weights that do not record theirs (a pretrain run's do), or for random init "
                   f"(default {DEFAULT_BACKBONE}).")
@click.option("--frames", "frames_root", type=click.Path(path_type=Path), help="Frames folder (or --project).")
@click.option("--project", default=None, help="Instead of --frames/--out: embed the project's stored frames and "
                                              "register an embedding set.")
@spec_options(EmbedParams, exclude=("project", "checkpoint_id", "backbone"))
@click.option("--workers", type=click.IntRange(min=0), default=1, show_default=True,
              help="Frame-loading worker processes (0: in the main process).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--out", type=OUT_FILE,
              help="OUT.npy (CLS, float16), OUT.patch_mean.npy, OUT.json (frame keys); with --frames.")
def embed_command(checkpoint, backbone, frames_root, project, img_size, batch_size, vector, random_init, workers,
                  device, out) -> None:
    """Embed every frame (CLS token + mean patch token) with a pretrained or random backbone."""
    from segloop.platform.core.errors import friendly_errors

    if random_init and checkpoint is not None:
        raise click.UsageError("--random-init and --checkpoint exclude each other: drop one")
    weights = checkpoint_fields(checkpoint)
    if project is not None:
        if frames_root is not None or out is not None:
            raise click.UsageError("--project stores the embedding set itself: drop --frames/--out")
        friendly_errors(_embed_project)(weights, backbone, project, img_size, batch_size, vector, random_init,
                                        workers, device)
        return
    if frames_root is None or out is None:
        raise click.UsageError("give --frames ROOT --out FILE, or --project NAME")
    if click.get_current_context().get_parameter_source("vector") is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--vector chooses the vector of a project's embedding set; --frames writes both "
                               "(OUT.npy: CLS, OUT.patch_mean.npy): drop --vector")
    if "checkpoint_id" in weights:
        raise click.BadParameter(f"{checkpoint}: a checkpoint id needs --project", param_hint="--checkpoint")
    friendly_errors(_embed)(checkpoint, backbone, frames_root, img_size, batch_size, workers, device, out,
                            random_init)


def _embed_project(weights: dict, backbone, project, img_size, batch_size, vector, random_init, workers,
                   device) -> None:
    """Body of `segloop embed --project`: embed the stored frames with the project's encoder (or the weights
    given) and register an embedding set."""
    from segloop.platform.core.console import LazyProgress, console
    from segloop.platform.db.migrate import ensure_db
    from segloop.platform.services.embedding import embed_project

    ensure_db()
    said = []
    with LazyProgress() as bar:
        task = bar.add_task("embedding", total=1.0)

        def progress(fraction: float, message: str) -> None:
            bar.update(task, completed=fraction)
            if message.startswith("encoder: "):
                said.append(message)

        embedding_set = embed_project(project, backbone or DEFAULT_BACKBONE, weights.get("weights"), img_size,
                                      batch_size, vector, checkpoint_id=weights.get("checkpoint_id"), device=device,
                                      workers=workers, random_init=random_init, progress=progress)
    if embedding_set is None:  # a non-zero rank under torchrun
        return
    for message in said:
        console.print(message)
    console.print(f"embedding set {embedding_set.id}: {embedding_set.count} frames x {embedding_set.dim} "
                  f"({embedding_set.backbone}) -> {embedding_set.vectors_path}")


def _embed(checkpoint, backbone, frames_root, img_size, batch_size, workers, device, out, random_init) -> None:
    """Body of `segloop embed`."""
    from segloop.platform.core.console import LazyProgress, console
    from segloop.pretrain.backbones import backbone_for, create_backbone
    from segloop.pretrain.embed import embed_frames, save_embeddings
    from segloop.pretrain.frames import discover_videos, frame_key

    if checkpoint is None and backbone is None and not random_init:
        raise CliInputError("give --checkpoint PATH, or --backbone NAME / --random-init for a random-init backbone")
    name = backbone_for(checkpoint, backbone)
    model = create_backbone(name, weights=checkpoint)
    paths = [p for video in discover_videos(frames_root, cache_dir=Path(out).parent / "decoded-frames") for p in video]
    resolved = None if device == "auto" else device
    with LazyProgress() as bar:
        task = bar.add_task("embedding", total=len(paths))
        cls, patch_mean = embed_frames(paths, model, img_size, batch_size, workers, resolved,
                                       progress=lambda f, m: bar.update(task, completed=round(f * len(paths))))
    keys = [frame_key(p, frames_root) for p in paths]
    meta = {"backbone": name, "checkpoint": None if checkpoint is None else str(checkpoint), "img_size": img_size,
            "frames_root": str(frames_root)}
    files = save_embeddings(out, keys, cls, patch_mean, meta)
    console.print(f"{len(paths)} frames x {cls.shape[1]} dims -> "
                  f"{files['cls']}, {files['patch_mean']}, {files['keys']}")


commands = [pretrain_command, embed_command]
