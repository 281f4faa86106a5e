"""`segloop bench embed`: frames/s of `segloop embed` (CLS + pooled patch embedding per frame),
decoding and resizing included, on the shared DAVIS sample frames or a given frames folder."""
from __future__ import annotations

import time
from pathlib import Path

import click

from segloop.platform.bench.common import bench_devices, comma_ints, default_json_path, machine_info
from segloop.platform.core.backbones import BACKBONE_NAMES, DEFAULT_BACKBONE
from segloop.platform.core.console import OUT_FILE, console, print_table
from segloop.platform.core.errors import friendly_errors
from segloop.platform.core.image import MAX_SIDE
from segloop.platform.core.settings import SHARED_SAMPLE
from segloop.platform.core.storage import write_json


def measure(paths: list[Path], backbone: str, img_size: int, batch_size: int, device: str, workers: int) -> dict:
    """Frames/s of embed_frames over the paths (after one untimed batch to warm up)."""
    import torch

    from segloop.pretrain.backbones import create_backbone
    from segloop.pretrain.embed import embed_frames

    model = create_backbone(backbone)
    embed_frames(paths[:batch_size], model, img_size, batch_size, 0, device)
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    cls, _ = embed_frames(paths, model, img_size, batch_size, workers, device)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"backbone": backbone, "img_size": img_size, "device": device, "batch_size": batch_size,
            "workers": workers, "frames": len(paths), "dim": int(cls.shape[1]), "seconds": seconds,
            "frames_per_s": len(paths) / seconds}


@click.command("embed")
@click.option("--frames", "frames_root", type=click.Path(path_type=Path), default=None,
              help="Frames folder (default: the shared DAVIS sample).")
@click.option("--backbone", type=click.Choice(BACKBONE_NAMES), default=DEFAULT_BACKBONE, show_default=True)
@click.option("--sizes", default="112,224", show_default=True, help="Comma-separated short sides in px.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=0))
@click.option("--limit", default=96, show_default=True, type=click.IntRange(min=1), help="Frames to embed per figure.")
@click.option("--device", "devices", default="auto", show_default=True, help="cpu, cuda, or auto (cpu + cuda if any).")
@click.option("--json", "json_path", type=OUT_FILE, default=None, help="Where to save the results.")
@friendly_errors
def command(frames_root: Path | None, backbone: str, sizes: str, batch_size: int, workers: int, limit: int,
            devices: str, json_path: Path | None) -> None:
    """Embedding throughput in frames/s."""

    from segloop.pretrain.frames import discover_videos

    root = frames_root or SHARED_SAMPLE
    if not root.is_dir():
        raise click.ClickException(f"{root}: frames folder does not exist (give --frames)")
    paths = [p for video in discover_videos(root) for p in video][:limit]
    img_sizes = comma_ints("--sizes", sizes, minimum=16, maximum=MAX_SIDE)
    names = bench_devices(devices)
    rows = [measure(paths, backbone, size, batch_size, name, workers) for name in names for size in img_sizes]
    print_table(f"embed throughput ({backbone}, {len(paths)} frames, batch {batch_size})",
                ["device", "short side", "frames/s", "seconds"],
                [[r["device"], r["img_size"], f"{r['frames_per_s']:.1f}", f"{r['seconds']:.2f}"] for r in rows])
    path = json_path or default_json_path("embed")
    write_json(path, {"machine": machine_info(), "frames_root": str(root), "results": rows})
    console.print(f"saved {path}")
