"""`segloop bench scale`: a synthetic project of N frames in a fresh DB: insert rate, FAISS, k-center, UI queries."""
from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from segloop.platform.bench.common import default_json_path, machine_info
from segloop.platform.core.console import OUT_FILE, console, print_table
from segloop.platform.core.device import require_memory
from segloop.platform.core.errors import friendly_errors
from segloop.platform.core.settings import Settings
from segloop.platform.core.storage import write_json


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(results: dict, name: str, func, count: int | None = None):
    """Run `func`, store its seconds (and rate per second when `count` is given) under `name`."""
    started = time.perf_counter()
    value = func()
    seconds = time.perf_counter() - started
    results[name] = {"seconds": seconds, **({"per_second": count / seconds} if count else {})}
    return value


def insert_frames(settings: Settings, frames: int, per_video: int) -> int:
    """Insert one project with `frames` frame rows spread over videos of `per_video` frames; returns project id."""
    from segloop.platform.db.engine import get_engine, session_scope
    from segloop.platform.db.entities import NewFrame, NewVideo
    from segloop.platform.db.stores import footage, projects

    engine = get_engine(settings)
    with session_scope(engine) as session:
        project_id = projects.get_or_create_project(session, "scale").id
    for start in range(0, frames, per_video):
        count = min(per_video, frames - start)
        number = start // per_video
        video = NewVideo(
            name=f"video-{number:05d}", source_path=f"/synthetic/{number}.mp4", source_kind="video",
            sha256=f"{number:064x}", fps=24.0, sample_fps=None, source_frame_count=count, width=854, height=480,
            stored_width=854, stored_height=480, duration=count / 24, codec="h264",
            storage_dir=f"frames/video-{number:05d}",
            frames=[NewFrame(i, i, i / 24, f"frames/video-{number:05d}/{i:05d}.jpg",
                             f"frames/video-{number:05d}/thumbs/{i:05d}.jpg", i * 7919 % (1 << 62), i // 12)
                    for i in range(count)],
        )
        with session_scope(engine) as session:
            footage.add_video(session, project_id, video)
    return project_id


def clustered_vectors(count: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 256 random centres (a stand-in for frame embeddings), float32."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((256, dim)).astype(np.float32)
    vectors = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 100_000):
        stop = min(start + 100_000, count)
        block = centres[rng.integers(0, 256, stop - start)] + 0.6 * rng.standard_normal((stop - start, dim))
        vectors[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors


def check_sizes(frames: int, dim: int, budget: int, queries: int, ivf_min: int | None) -> None:
    """Refuse sizes the benchmark cannot measure as asked, before the minutes of inserting frames."""
    if budget > frames:
        raise click.BadParameter(f"--budget {budget} exceeds --frames {frames}: k-center cannot pick more frames "
                                 "than there are")
    if ivf_min is not None and frames < ivf_min:
        raise click.BadParameter(f"--frames {frames}: the IVF-PQ index needs at least {ivf_min} vectors to train "
                                 "(or pass --skip-ivf)")
    vector_bytes = 4 * dim * (2 * frames + queries)  # the vectors, the exact index's copy, the queries
    require_memory(vector_bytes, f"--frames {frames} x --dim {dim}")


@click.command("scale")
@click.option("--frames", type=click.IntRange(min=100), default=1_000_000, show_default=True)
@click.option("--dim", type=click.IntRange(min=2), default=384, show_default=True)
@click.option("--per-video", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--budget", type=click.IntRange(min=1), default=1000, show_default=True, help="k-center picks.")
@click.option("--queries", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--skip-ivf", is_flag=True, help="Skip the IVF-PQ index (its training dominates at 1M on 2 cores).")
@click.option("--json", "json_path", type=OUT_FILE, default=None)
@friendly_errors
def command(frames: int, dim: int, per_video: int, budget: int, queries: int, skip_ivf: bool,
            json_path: Path | None) -> None:
    """DB insert rate, FAISS build/search, k-center and Library/Explore queries on N synthetic frames."""
    from segloop.platform.db.engine import get_engine
    from segloop.platform.db.entities import FrameFilter
    from segloop.platform.db.migrate import upgrade
    from segloop.platform.services import explore, library
    from segloop.selectors.diversity import kcenter_greedy
    from segloop.selectors.index import IndexConfig, VectorIndex, ivfpq_min_vectors

    ivf_min = None if skip_ivf else ivfpq_min_vectors(frames, IndexConfig(kind="ivfpq"))
    check_sizes(frames, dim, budget, queries, ivf_min)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="segloop-scale-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        engine = get_engine(settings)
        upgrade(engine)
        project_id = timed(results, "db_insert_frames", lambda: insert_frames(settings, frames, per_video), frames)
        flt = FrameFilter(project_id=project_id)
        timed(results, "library_count_frames", lambda: library.count_filtered_frames(engine, flt))
        timed(results, "library_first_page", lambda: library.browse_frames(engine, flt, 0, 48))
        timed(results, "library_last_page", lambda: library.browse_frames(engine, flt, frames // 48 - 1, 48))
        unlabeled = FrameFilter(project_id=project_id, label_status="unlabeled")
        timed(results, "library_count_unlabeled", lambda: library.count_filtered_frames(engine, unlabeled))
        vectors = timed(results, "make_vectors", lambda: clustered_vectors(frames, dim))
        explore.pca_2d(vectors[:16])  # warm-up: library imports are not part of the figures
        VectorIndex.build(vectors[:16], config=IndexConfig(kind="flat"))
        timed(results, "explore_pca_5000", lambda: explore.pca_2d(vectors[explore.sample_rows(frames, 5000)]))
        flat = timed(results, "faiss_build_exact", lambda: VectorIndex.build(vectors, config=IndexConfig(kind="flat")),
                     frames)
        probes = vectors[np.random.default_rng(1).integers(0, frames, queries)]
        exact = timed(results, "faiss_search_exact_k10", lambda: flat.search(probes, 10), queries)
        if not skip_ivf:
            ivf = timed(results, "faiss_build_ivfpq", lambda: VectorIndex.build(
                vectors, config=IndexConfig(kind="ivfpq")), frames)
            found = timed(results, "faiss_search_ivfpq_k10", lambda: ivf.search(probes, 10), queries)
            hits = [len(set(a) & set(b)) for a, b in zip(found.frame_ids.tolist(), exact.frame_ids.tolist())]
            results["ivfpq_recall_at_10"] = float(np.mean(hits) / 10)
        flat = None  # free the exact index (a copy of the vectors) before k-center
        timed(results, "kcenter_greedy", lambda: kcenter_greedy(vectors, budget), budget)
        engine.dispose()
    results["peak_rss_mib"] = peak_rss_mib()
    results["vectors_mib"] = frames * dim * 4 / 2**20
    payload = {"frames": frames, "dim": dim, "per_video": per_video, "budget": budget, "queries": queries,
               "results": results, "machine": machine_info()}
    rows = []
    for name, value in results.items():
        if isinstance(value, dict):
            rate = f"{value['per_second']:,.0f}/s" if "per_second" in value else ""
            rows.append((name, f"{value['seconds']:.3f}", rate))
        else:
            rows.append((name, f"{value:,.3f}", ""))
    print_table(f"bench scale: {frames:,} frames x {dim}", ["measure", "seconds / value", "rate"], rows)
    target = json_path or default_json_path("scale")
    write_json(target, payload)
    console.print(f"saved {target}")
