"""`segloop bench pretrain`: self-supervised training throughput (images/s) and peak memory of one
full student/teacher step (DINO + iBOT + KoLeo + random walk) at several image sizes, CPU and GPU."""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import click

from segloop.platform.bench.common import bench_devices, comma_ints, default_json_path, machine_info
from segloop.platform.core.backbones import BACKBONE_NAMES, DEFAULT_BACKBONE
from segloop.platform.core.console import OUT_FILE, console, print_table
from segloop.platform.core.errors import friendly_errors
from segloop.platform.core.storage import write_json
from segloop.pretrain.config import MAX_CROP


def synthetic_batch(config, batch_size: int, seed: int = 0) -> dict:
    """A collated batch of random views with the shapes the data pipeline produces."""
    import random

    import torch

    from segloop.pretrain.masking import sample_masks

    data, generator = config.data, torch.Generator().manual_seed(seed)
    grid = data.global_size // 16
    batch = {"global": torch.randn(2 * batch_size, 3, data.global_size, data.global_size, generator=generator),
             "clip": torch.randn(batch_size, data.clip_length, 3, data.clip_size, data.clip_size, generator=generator)}
    if data.num_local_crops:
        batch["local"] = torch.randn(data.num_local_crops * batch_size, 3, data.local_size, data.local_size,
                                     generator=generator)
    masks = sample_masks(2 * batch_size, grid, grid, config.loss.mask_ratio, config.loss.mask_probability,
                         random.Random(seed))
    batch["masks"] = torch.from_numpy(masks)
    return batch


def peak_memory_mb(device) -> float:
    """Peak GPU memory allocated by torch, or this process's peak resident set size (CPU), in MiB."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def measure(backbone: str, img_size: int, device_name: str, batch_size: int, steps: int, warmup: int) -> dict:
    """Images/s and peak memory of `steps` timed SSL training steps after `warmup` untimed ones."""
    import torch

    from segloop.pretrain.config import config_from_dict
    from segloop.pretrain.model import SSLModel, Views
    from segloop.pretrain.schedules import Schedules
    from segloop.pretrain.train import build_optimizer, images_per_step, train_step

    local = max(16, (img_size * 96 // 224) // 16 * 16)
    config = config_from_dict({"model": {"backbone": backbone},
                               "data": {"global_size": img_size, "local_size": local, "clip_size": img_size},
                               "run": {"batch_size": batch_size, "steps": warmup + steps, "device": device_name}})
    device = torch.device(device_name)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = SSLModel(config).to(device)
    optimizer = build_optimizer(model, config, device, pretrained=False)
    views = Views.from_batch(synthetic_batch(config, batch_size), device)
    schedules = Schedules(config)
    generator = torch.Generator(device=device).manual_seed(0)
    for step in range(warmup):
        train_step(model, optimizer, views, schedules.at(step), config, generator)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for step in range(warmup, warmup + steps):
        train_step(model, optimizer, views, schedules.at(step), config, generator)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    images = images_per_step(config, 1) * steps
    return {"backbone": backbone, "img_size": img_size, "local_size": local, "device": device_name,
            "batch_size": batch_size, "images_per_step": images_per_step(config, 1), "steps": steps,
            "seconds": seconds, "images_per_s": images / seconds, "step_s": seconds / steps,
            "peak_memory_mb": peak_memory_mb(device), "threads": torch.get_num_threads()}


@click.command("pretrain")
@click.option("--backbone", type=click.Choice(BACKBONE_NAMES), default=DEFAULT_BACKBONE, show_default=True)
@click.option("--sizes", default="112,224", show_default=True, help="Comma-separated image sizes (ascending).")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=2))
@click.option("--steps", default=3, show_default=True, type=click.IntRange(min=1), help="Timed steps per figure.")
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(min=0))
@click.option("--device", "devices", default="auto", show_default=True, help="cpu, cuda, or auto (cpu + cuda if any).")
@click.option("--json", "json_path", type=OUT_FILE, default=None, help="Where to save the results.")
@friendly_errors
def command(backbone: str, sizes: str, batch_size: int, steps: int, warmup: int, devices: str,
            json_path: Path | None) -> None:
    """SSL training images/s (2 global + 2 local crops + 4 clip frames per sample) and peak memory.

    Model step only, on synthetic tensors (no decoding): the data loader runs in worker processes.
    """

    img_sizes = sorted(comma_ints("--sizes", sizes, minimum=16, maximum=MAX_CROP))
    names = bench_devices(devices)
    rows = [measure(backbone, size, name, batch_size, steps, warmup) for name in names for size in img_sizes]
    print_table(f"pretrain step throughput ({backbone}, batch {batch_size})",
                ["device", "img", "local", "img/step", "step s", "images/s", "peak MiB"],
                [[r["device"], r["img_size"], r["local_size"], r["images_per_step"], f"{r['step_s']:.2f}",
                  f"{r['images_per_s']:.1f}", f"{r['peak_memory_mb']:.0f}"] for r in rows])
    path = json_path or default_json_path("pretrain")
    write_json(path, {"machine": machine_info(), "results": rows})
    console.print(f"saved {path}")
