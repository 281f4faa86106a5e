"""Server-side render time of every page (Streamlit AppTest) with 100,000 frame rows in SQLite.

Not a test (speed targets live in benchmarks): run `python tests/test_ui/measure_render_times.py [--frames N]`.
Builds a throw-away data dir: one really ingested synthetic video whose stored frames every synthetic frame row
points at, annotations, a 100k-vector embedding set, a selection run, metrics rows and per-frame uncertainty;
then times a cold and a warm run of each page and of the main interactions, and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VIDEO_FRAMES = 1_000


def build(data_dir: Path, total_frames: int) -> dict:
    """Fill a fresh data dir with `total_frames` frame rows and the artefacts the pages read."""
    os.environ["SEGLOOP_DATA_DIR"] = str(data_dir)
    os.environ.pop("SEGLOOP_DATABASE_URL", None)
    from sqlalchemy import insert

    from segloop.platform.core.settings import load_settings
    from segloop.platform.core.storage import atomic_write_bytes
    from segloop.platform.db.engine import get_engine, session_scope
    from segloop.platform.db.migrate import upgrade
    from segloop.platform.db.orm import Frame, FrameScore, Video
    from segloop.platform.db.stores import annotations, artifacts, footage, jobs, metrics, projects, selections
    from segloop.platform.media.ingest import IngestOptions, ingest_paths
    from segloop.platform.media.synth import SynthOptions, synthesize

    settings = load_settings()
    engine = get_engine(settings)
    upgrade(engine)
    synthesize(data_dir / "synth", SynthOptions(videos=1, frames=12, width=192, height=128, seed=1))
    ingest_paths([data_dir / "synth" / "videos"], IngestOptions(project="big"), settings)
    with session_scope(engine) as session:
        project = projects.get_project(session, "big")
        real_video = footage.list_videos(session, project.id)[0]
        real = footage.list_frames(session, real_video.id)
    remaining = total_frames - len(real)
    videos = -(-remaining // VIDEO_FRAMES)
    with session_scope(engine) as session:
        for v in range(videos):
            count = min(VIDEO_FRAMES, remaining - v * VIDEO_FRAMES)
            row = session.execute(insert(Video).returning(Video.id), [dict(
                project_id=project.id, name=f"clip-{v:03d}", source_path=f"/nowhere/clip-{v:03d}.mp4",
                source_kind="video", sha256=f"{v:064d}", fps=25.0, sample_fps=None, source_frame_count=count,
                frame_count=count, width=192, height=128, stored_width=192, stored_height=128, duration=count / 25,
                codec="h264", status="ready", storage_dir=real_video.storage_dir)]).scalar_one()
            session.execute(insert(Frame), [dict(
                video_id=row, index=i, source_index=i, timestamp=i / 25, image_path=real[i % len(real)].image_path,
                thumb_path=real[i % len(real)].thumb_path, phash=i, dup_group=i // 5) for i in range(count)])
    with session_scope(engine) as session:
        frame_ids = np.array([f.id for f in footage.project_frames(session, project.id)], dtype=np.int64)
        mask = np.zeros((128, 192), bool)
        mask[20:80, 30:120] = True
        for position, frame_id in enumerate(frame_ids[::500]):
            source = "manual" if position % 2 else "propagated"
            status = "submitted" if position % 2 else "draft"
            annotations.save_annotation(session, int(frame_id), 1, mask, source, status=status)
        run = selections.add_selection(session, project.id, "kcenter", 50,
                                       [(int(f), 1.0, "far") for f in frame_ids[1::2000][:50]])
        job = jobs.submit_job(session, "propagate", {"method": "backbone", "backbone": "vit_small_patch16_224"})
        metrics.add_metrics(session, [("video", f"clip-{v:03d}", name, 0.5) for v in range(videos)
                                      for name in ("J&F", "J", "F")], job_id=job.id, project_id=project.id)
        rng = np.random.default_rng(0)
        session.execute(insert(FrameScore), [dict(frame_id=int(f), name="vos_uncertainty", value=float(u))
                                             for f, u in zip(frame_ids, rng.random(frame_ids.size))])
        vectors = rng.standard_normal((frame_ids.size, 192)).astype(np.float16)
        folder = settings.runs_dir / "embeddings" / "big"
        for name, array in (("vectors.npy", vectors), ("frame_ids.npy", frame_ids)):
            import io

            buffer = io.BytesIO()
            np.save(buffer, array)
            atomic_write_bytes(folder / name, buffer.getvalue())
        artifacts.add_embedding_set(session, project.id, "big", "vit_tiny_patch16_224", 192, frame_ids.size,
                                    "runs/embeddings/big/vectors.npy", "runs/embeddings/big/frame_ids.npy")
    bench = data_dir / "bench"
    bench.mkdir(parents=True, exist_ok=True)
    (bench / "al.json").write_text(json.dumps({"task": "vos", "metric": "J&F", "ceiling": 0.8, "results": [
        {"strategy": s, "budget": b, "seed": seed, "labeled_frames": b, "value": 0.1 * b / (seed + 1)}
        for s in ("random", "kcenter") for b in (2, 4, 8) for seed in (0, 1)]}))
    return {"frames": int(frame_ids.size), "videos": videos + 1, "selection": run.id}


def timed(action) -> float:
    """Seconds an AppTest action took."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def measure() -> list[tuple[str, float, float]]:
    """(page or interaction, cold seconds, warm seconds) for every page."""
    from streamlit.testing.v1 import AppTest

    rows = []
    for name in ("upload", "library", "explore", "select_frames", "label", "results", "jobs"):
        app = AppTest.from_string(f"from segloop.ui.views import {name}\n{name}.render()\n", default_timeout=600)
        cold = timed(app.run)
        assert not app.exception, [e.value for e in app.exception]
        warm = timed(app.run)
        rows.append((name, cold, warm))
        if name == "library":
            app.selectbox(key="library_status").select("labeled")
            rows.append(("library: filter labeled", timed(app.run), timed(app.run)))
            app.selectbox(key="library_status").select("any")
            app.number_input(key="library_page").set_value(2000)
            rows.append(("library: page 2000", timed(app.run), timed(app.run)))
        if name == "explore":
            app.selectbox(key="explore_colour").select("uncertainty")
            rows.append(("explore: colour by uncertainty", timed(app.run), timed(app.run)))
            app.session_state["explore_frame_id"] = 1
            app.run()
            app.button(key="explore_similar").click()
            rows.append(("explore: more like this (100k flat index)", timed(app.run), timed(app.run)))
        if name == "select_frames":
            app.button(key="select_run_go").click()
            rows.append(("select: run (queues a job at 100k)", timed(app.run), timed(app.run)))
        if name == "label":
            app.button(key="label_step_1").click()
            rows.append(("label: next frame", timed(app.run), timed(app.run)))
        assert not app.exception, [e.value for e in app.exception]
    return rows


def main() -> None:
    """Build, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        facts = build(Path(folder) / "segloop-data", args.frames)
        print(f"built {facts} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        rows = measure()
    print(f"| page / interaction ({facts['frames']} frames, {facts['videos']} videos) | cold s | warm s |")
    print("| --- | ---: | ---: |")
    for name, cold, warm in rows:
        print(f"| {name} | {cold:.2f} | {warm:.2f} |")


if __name__ == "__main__":
    main()
