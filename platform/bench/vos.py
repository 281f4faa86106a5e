"""`segloop bench vos`: frames/s of label propagation at 480p (feature extraction and propagation separately)."""
from __future__ import annotations

import platform as stdlib_platform
import statistics
import time
from pathlib import Path

import click

from segloop.platform.bench.common import MAX_THREADS
from segloop.platform.core.backbones import BACKBONE_NAMES
from segloop.platform.core.console import OUT_FILE
from segloop.platform.core.errors import friendly_errors
from segloop.platform.core.image import MAX_SIDE
from segloop.platform.vos.propagation import PropagationConfig


def synthetic_video(num_frames: int, height: int, width: int, seed: int = 0):
    """(frames (T, H, W, 3) uint8, first mask (H, W) uint8): smooth noise with a moving ellipse."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8), (width, height))
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    for t in range(num_frames):
        frame = base.copy()
        center = (width // 3 + 6 * t, height // 2 + 2 * t)
        cv2.ellipse(frame, center, (width // 8, height // 6), 0, 0, 360, (230, 60, 40), -1)
        if t == 0:
            cv2.ellipse(mask, center, (width // 8, height // 6), 0, 0, 360, 1, -1)
        frames[t] = frame
    return frames, mask


def _sync(device: str) -> None:
    """Wait for queued GPU work so timings are honest."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def bench_method(featurizer, frames, mask, config) -> dict:
    """Feature extraction, propagation-only and end-to-end frames/s of one featurizer.

    Propagation-only runs the production path (`iter_propagate`: window blocks cut once per context frame,
    masks at full size, confidences) on features extracted beforehand; end to end extracts them too.
    """
    from segloop.platform.vos import propagation as vos
    from segloop.platform.vos.frames import CachedFeaturizer, LoadedFrames

    device = featurizer.device
    count = len(frames)
    video = LoadedFrames(list(frames), "bench")
    cached = CachedFeaturizer(featurizer)
    featurizer(frames[: config.batch_size])  # warm-up
    _sync(device)
    start = time.perf_counter()
    for begin in range(0, count, config.batch_size):
        features = cached([video[i] for i in range(begin, min(begin + config.batch_size, count))])
    _sync(device)
    feature_seconds = time.perf_counter() - start

    start = time.perf_counter()
    for _ in vos.iter_propagate(video, {0: mask}, cached, config):
        pass
    _sync(device)
    propagation_seconds = time.perf_counter() - start

    start = time.perf_counter()
    for _ in vos.iter_propagate(frames, {0: mask}, featurizer, config):
        pass
    _sync(device)
    total_seconds = time.perf_counter() - start
    return {
        "method": featurizer.name,
        "grid": list(featurizer.grid(*frames.shape[1:3])),
        "feature_dim": int(features.shape[-1]),
        "features_fps": count / feature_seconds,
        "propagation_fps": (count - 1) / propagation_seconds,
        "end_to_end_fps": count / total_seconds,
        "features_ms_per_frame": 1000 * feature_seconds / count,
        "propagation_ms_per_frame": 1000 * propagation_seconds / max(count - 1, 1),
    }


def bench_method_median(featurizer, frames, mask, config, repeats: int) -> dict:
    """`bench_method` run `repeats` times; each rate is the median over the runs (a shared CPU's stalls fall out)."""
    runs = [bench_method(featurizer, frames, mask, config) for _ in range(repeats)]
    row = dict(runs[0], repeats=repeats)
    for key in ("features", "propagation", "end_to_end"):
        fps = statistics.median(run[f"{key}_fps"] for run in runs)
        row[f"{key}_fps"] = fps
        if key != "end_to_end":
            row[f"{key}_ms_per_frame"] = 1000 / fps
    return row


def default_json_path() -> Path:
    """$SEGLOOP_DATA_DIR/bench/vos.json (or ./segloop-data/bench/vos.json)."""
    from segloop.platform.core.settings import load_settings

    return load_settings().data_dir / "bench" / "vos.json"


@click.command(name="vos")
@click.option("--frames", "num_frames", default=12, show_default=True, type=click.IntRange(min=2))
@click.option("--height", default=480, show_default=True, type=click.IntRange(min=16, max=MAX_SIDE))
@click.option("--width", default=854, show_default=True, type=click.IntRange(min=16, max=MAX_SIDE))
@click.option("--backbone", type=click.Choice(BACKBONE_NAMES), default=None,
              help="timm ViT for --methods backbone without --checkpoint (random init; default: the registry's).")
@click.option("--checkpoint", type=click.Path(path_type=Path, exists=True),
              help="A `segloop pretrain --out` folder: --methods backbone uses its dense encoder (else its ViT).")
@click.option("--methods", default="backbone,pixels", show_default=True, help="Comma-separated: backbone, pixels.")
@click.option("--short-sides", default="480,240", show_default=True,
              help="Comma-separated working short sides; the table gives time per frame relative to the smallest.")
@click.option("--recent-radius", default=PropagationConfig.recent_radius, show_default=True,
              type=click.IntRange(min=-1),
              help="Window radius in cells for the last propagated frames; -1: the keyframe radius.")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1),
              help="Runs per row; each rate is the median over them.")
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", default=0, type=click.IntRange(0, MAX_THREADS), help="torch CPU threads (0: torch default).")
@click.option("--json", "json_out", type=OUT_FILE, help="Default: $SEGLOOP_DATA_DIR/bench/vos.json")
@friendly_errors
def command(num_frames: int, height: int, width: int, backbone: str | None, checkpoint: Path | None, methods: str,
            short_sides: str, recent_radius: int, batch_size: int, repeats: int, device: str, threads: int,
            json_out: Path | None) -> None:
    """Frames/s of label propagation (features + propagation) on a synthetic video, per working resolution."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from segloop.platform.bench.common import comma_ints, comma_items
    from segloop.platform.core.device import require_memory, resolve_device
    from segloop.platform.core.storage import write_json
    from segloop.platform.vos import propagation as vos

    if threads:
        torch.set_num_threads(threads)
    sides = sorted(set(comma_ints("--short-sides", short_sides, minimum=16, maximum=MAX_SIDE)), reverse=True)
    chosen_methods = comma_items("--methods", methods)
    device = resolve_device(device)
    require_memory(2 * num_frames * height * width * 3, f"--frames {num_frames} of --height {height} x --width {width}")
    frames, mask = synthetic_video(num_frames, height, width)
    recent = None if recent_radius < 0 else recent_radius
    rows = []
    for method in chosen_methods:
        if method not in ("backbone", "pixels"):
            raise click.ClickException(f"--methods: unknown method {method!r} (backbone|pixels)")
        for side in sides:
            config = vos.PropagationConfig(short_side=side, batch_size=batch_size, recent_radius=recent)
            try:
                featurizer = vos.make_featurizer(method, backbone, checkpoint if method == "backbone" else None,
                                                 config, device)
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
            rows.append({"short_side": side, **bench_method_median(featurizer, frames, mask, config, repeats)})
    smallest = {}
    for row in rows:
        smallest[row["method"]] = row  # rows are in decreasing short side: the last one per method is the smallest
    for row in rows:
        base = smallest[row["method"]]
        row["time_ratio_vs_smallest"] = (1 / row["end_to_end_fps"]) / (1 / base["end_to_end_fps"])
        row["pixel_ratio_vs_smallest"] = (row["grid"][0] * row["grid"][1]) / (base["grid"][0] * base["grid"][1])
    table = Table(title=f"VOS propagation of a {width}x{height} synthetic video, {num_frames} frames, {device}, "
                        f"median of {repeats} runs")
    for column in ("method", "short side", "grid", "features f/s", "propagation f/s", "end-to-end f/s",
                   "time/frame ratio", "cells ratio"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in rows:
        table.add_row(row["method"], str(row["short_side"]), "x".join(map(str, row["grid"])),
                      f"{row['features_fps']:.2f}", f"{row['propagation_fps']:.2f}", f"{row['end_to_end_fps']:.2f}",
                      f"{row['time_ratio_vs_smallest']:.2f}", f"{row['pixel_ratio_vs_smallest']:.2f}")
    Console(markup=False).print(table)
    payload = {
        "benchmark": "vos",
        "frames": num_frames,
        "repeats": repeats,
        "size": [height, width],
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "host": stdlib_platform.node(),
        "checkpoint": str(checkpoint) if checkpoint else None,
        "settings": vos.PropagationConfig(recent_radius=recent).as_dict(),
        "results": rows,
    }
    path = write_json(json_out or default_json_path(), payload)
    click.echo(f"wrote {path}")
