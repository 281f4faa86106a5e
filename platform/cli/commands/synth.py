"""`segloop synth`: synthetic footage with exact ground truth (DAVIS layout + mp4)."""
from __future__ import annotations

from pathlib import Path

import click

from segloop.platform.core.console import OUT_DIR, console
from segloop.platform.core.errors import friendly_errors


@click.command("synth")
@click.argument("out_dir", type=OUT_DIR)
@click.option("--videos", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--frames", type=click.IntRange(min=2), default=40, show_default=True)
@click.option("--size", default="320x240", show_default=True, help="WIDTHxHEIGHT (even numbers).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@friendly_errors
def command(out_dir: Path, videos: int, frames: int, size: str, seed: int) -> None:
    """Write synthetic videos: textured objects that move, rotate, scale and occlude each other."""
    from segloop.platform.media.synth import SynthOptions, synthesize

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT, got {size!r}", param_hint="--size") from None
    names = synthesize(out_dir, SynthOptions(videos=videos, frames=frames, width=width, height=height, seed=seed))
    console.print(f"wrote {len(names)} videos of {frames} frames to {out_dir}: {', '.join(names)}")
