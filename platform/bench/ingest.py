"""`segloop bench ingest`: end-to-end ingest frames/s, and decode-only frames/s of decord vs PyAV."""
from __future__ import annotations

import tempfile
from pathlib import Path

import click

from segloop.platform.bench.common import best_of, default_json_path, machine_info
from segloop.platform.core.console import OUT_FILE, console, print_table
from segloop.platform.core.errors import friendly_errors
from segloop.platform.core.settings import SHARED_SAMPLE, Settings
from segloop.platform.core.storage import write_json

DECODE_BATCH = 16


def decode_decord(path: Path) -> int:
    """Decode every frame of a video with decord in batches; returns the frame count."""
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=2)
    count = len(reader)
    checksum = 0
    for start in range(0, count, DECODE_BATCH):
        batch = reader.get_batch(list(range(start, min(start + DECODE_BATCH, count)))).asnumpy()
        checksum += int(batch[:, 0, 0, 0].sum())
    return count


def decode_pyav(path: Path) -> int:
    """Decode every frame of a video with PyAV to RGB arrays; returns the frame count."""
    import av

    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            count += int(rgb.shape[0] > 0)
    return count


def ingest_once(videos: list[Path]) -> tuple[int, float]:
    """Ingest the videos into a fresh temporary data dir; returns (frames, seconds)."""
    from segloop.platform.db.engine import get_engine
    from segloop.platform.db.migrate import upgrade
    from segloop.platform.media.ingest import IngestOptions, ingest_paths

    with tempfile.TemporaryDirectory(prefix="segloop-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        engine = get_engine(settings)
        upgrade(engine)
        report = ingest_paths(videos, IngestOptions(project="bench"), settings)
        engine.dispose()
        if report.failed:
            raise click.ClickException("; ".join(o.message for o in report.failed))
        return report.frames, report.seconds


@click.command("ingest")
@click.argument("videos", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Runs per figure; best kept.")
@click.option("--json", "json_path", type=OUT_FILE, default=None, help="Where to save the results.")
@friendly_errors
def command(videos: tuple[Path, ...], repeats: int, json_path: Path | None) -> None:
    """Ingest throughput on VIDEOS (default: the shared DAVIS sample videos)."""
    paths = list(videos) or sorted((SHARED_SAMPLE / "videos").glob("*.mp4"))
    if not paths:
        raise click.ClickException(f"no videos given and the shared sample is absent ({SHARED_SAMPLE / 'videos'})")
    runs = [ingest_once(paths) for _ in range(repeats)]  # first: an input that is not a video is named there
    ingest_s, stored = min(seconds for _, seconds in runs), runs[0][0]  # a video given twice is stored once
    frames = sum(decode_decord(p) for p in paths)
    decord_s, _ = best_of(repeats, lambda: [decode_decord(p) for p in paths])
    pyav_s, _ = best_of(repeats, lambda: [decode_pyav(p) for p in paths])
    results = {
        "videos": [str(p) for p in paths],
        "frames": frames,
        "frames_stored": stored,
        "repeats": repeats,
        "ingest_end_to_end_fps": stored / ingest_s,
        "decode_decord_fps": frames / decord_s,
        "decode_pyav_fps": frames / pyav_s,
        "decord_vs_pyav": pyav_s / decord_s,
        "seconds": {"ingest": ingest_s, "decord": decord_s, "pyav": pyav_s},
        "machine": machine_info(),
    }
    print_table(f"bench ingest: {len(paths)} videos, {frames} frames, best of {repeats}",
                ["measure", "seconds", "frames/s"],
                [(f"ingest end to end (decode+resize+JPEG+hash+DB; {stored} frames stored)", f"{ingest_s:.2f}",
                  f"{stored / ingest_s:.1f}"),
                 ("decode only, decord (batched)", f"{decord_s:.2f}", f"{frames / decord_s:.1f}"),
                 ("decode only, PyAV", f"{pyav_s:.2f}", f"{frames / pyav_s:.1f}")])
    console.print(f"decord / PyAV decode speed ratio: {results['decord_vs_pyav']:.2f}x")
    target = json_path or default_json_path("ingest")
    write_json(target, results)
    console.print(f"saved {target}")
