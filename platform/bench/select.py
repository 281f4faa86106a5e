"""`segloop bench select`: k-center greedy speed and memory vs a naive NumPy version, and FAISS
similarity-search throughput (exact and IVF-PQ, with recall@10 against exact) on synthetic
clustered unit-norm embeddings."""
from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import numpy as np

from segloop.platform.bench.common import MAX_THREADS, comma_ints, default_json_path, machine_info
from segloop.platform.core.console import OUT_FILE, console, print_table
from segloop.platform.core.device import require_memory
from segloop.platform.core.errors import friendly_errors
from segloop.platform.core.storage import write_json


def synthetic_embeddings(
    size: int, dim: int, seed: int, stream: int = 0, clusters: int = 64, chunk: int = 100_000
) -> np.ndarray:
    """Unit-norm float32 vectors around `clusters` random centres (embedding-like structure), built in chunks.

    The centres depend on `seed` only; `stream` draws other points around the same centres.
    """
    centres = np.random.default_rng(seed).standard_normal((clusters, dim)).astype(np.float32)
    rng = np.random.default_rng((seed, stream))
    vectors = np.empty((size, dim), dtype=np.float32)
    for start in range(0, size, chunk):
        stop = min(start + chunk, size)
        block = rng.standard_normal((stop - start, dim), dtype=np.float32)
        block += centres[rng.integers(0, clusters, stop - start)]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        vectors[start:stop] = block
    return vectors


def naive_kcenter(vectors: np.ndarray, picks: int) -> list[int]:
    """Straightforward NumPy farthest-point traversal: full (x - c) difference and norm per pick."""
    nearest = np.linalg.norm(vectors - vectors.mean(axis=0), axis=1)
    chosen: list[int] = []
    for _ in range(picks):
        if chosen:
            nearest[chosen] = -1.0
        pick = int(np.argmax(nearest))
        distances = np.linalg.norm(vectors - vectors[pick], axis=1)
        nearest = distances if not chosen else np.minimum(nearest, distances)
        chosen.append(pick)
    return chosen


def full_update_kcenter(vectors: np.ndarray, picks: int, device: str) -> list[int]:
    """Farthest-first with every distance updated after each pick (one matrix-vector product):
    device 'numpy' (NumPy GEMV) or 'cpu' (torch on CPU, the code path used on GPU)."""
    from segloop.selectors.diversity import FarthestFirst

    engine = FarthestFirst(vectors, device=device)
    first = int(np.argmax(engine.distances_to_mean()))
    chosen = [first]
    engine.add_row(first)
    engine.block([first])
    while len(chosen) < picks:
        row, _ = engine.farthest()
        chosen.append(row)
        engine.add_row(row)
        engine.block([row])
    return chosen


def _rss_bytes(field: str) -> int:
    """A VmRSS/VmHWM figure of this process in bytes (0 where /proc is unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@contextmanager
def _threads(count: int) -> Iterator[None]:
    """Limit BLAS, OpenMP (FAISS) and torch threads to `count` for the duration."""
    import faiss

    faiss.omp_set_num_threads(count)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=count):
        yield


def measure_kcenter(
    size: int, dim: int, budget: int, naive_picks: int, full_picks: int, torch_picks: int, seed: int
) -> dict[str, Any]:
    """Time kcenter_greedy (budget picks), its peak memory, and per-pick baselines extrapolated to the budget."""
    from segloop.selectors.diversity import kcenter_greedy

    vectors = synthetic_embeddings(size, dim, seed)
    kcenter_greedy(vectors[:2000], 10)  # warm-up: imports, BLAS threads
    rss_before = _rss_bytes("VmRSS")
    peak_reset = _reset_peak_rss()
    started, cpu_started = time.perf_counter(), time.process_time()
    picks = kcenter_greedy(vectors, budget)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    rss_peak_delta = max(_rss_bytes("VmHWM") - rss_before, 0) if peak_reset else None
    tracemalloc.start()
    traced_picks = kcenter_greedy(vectors, budget)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    started = time.perf_counter()
    naive = naive_kcenter(vectors, naive_picks)
    naive_seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "n": size, "dim": dim, "budget": budget, "matrix_bytes": int(vectors.nbytes),
        "seconds": seconds, "cpu_seconds": cpu_seconds, "ms_per_pick": 1000 * seconds / budget,
        "peak_traced_bytes": int(traced_peak), "peak_traced_ratio": traced_peak / vectors.nbytes,
        "peak_rss_delta_bytes": rss_peak_delta,
        "peak_rss_delta_ratio": None if rss_peak_delta is None else rss_peak_delta / vectors.nbytes,
        "deterministic": bool(np.array_equal(picks, traced_picks)),
        "naive_picks_measured": naive_picks, "naive_seconds_measured": naive_seconds,
        "naive_seconds_extrapolated": naive_seconds / naive_picks * budget,
        "naive_agrees_on_measured_picks": naive == picks[:naive_picks].tolist(),
    }
    result["speedup_vs_naive"] = result["naive_seconds_extrapolated"] / seconds
    for key, device, count in (("full_numpy", "numpy", full_picks), ("torch_cpu", "cpu", torch_picks)):
        if count <= 0:
            continue
        started = time.perf_counter()
        chosen = full_update_kcenter(vectors, count, device)
        measured = time.perf_counter() - started
        result.update({
            f"{key}_picks_measured": count, f"{key}_seconds_measured": measured,
            f"{key}_seconds_extrapolated": measured / count * budget,
            f"{key}_agrees_on_measured_picks": chosen == picks[:count].tolist(),
        })
    return result


def _recall_at(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of the exact top-k found per query."""
    return float(np.mean([len(set(f) & set(e)) / exact.shape[1] for f, e in zip(found, exact)]))


def measure_search(
    size: int, dim: int, queries: int, nprobes: tuple[int, ...], reranks: tuple[int, ...], seed: int
) -> list[dict[str, Any]]:
    """Build time, queries/s and recall@10 of exact, IVF-PQ and re-ranked IVF-PQ indexes over `size` vectors."""
    from segloop.selectors.index import IndexConfig, VectorIndex, default_nlist, default_pq_m

    vectors = synthetic_embeddings(size, dim, seed)
    probe = synthetic_embeddings(queries, dim, seed, stream=1)  # same centres, points not in the index
    rows: list[dict[str, Any]] = []

    def timed(index: VectorIndex) -> tuple[float, np.ndarray]:
        index.search(probe[:16], 10)  # warm-up
        started = time.perf_counter()
        found = index.search(probe, 10).rows
        return time.perf_counter() - started, found

    started = time.perf_counter()
    exact_index = VectorIndex.build(vectors, config=IndexConfig(kind="flat"))
    build = time.perf_counter() - started
    seconds, exact = timed(exact_index)
    rows.append({"n": size, "index": "exact (IndexFlatIP)", "build_s": build, "qps": queries / seconds,
                 "recall_at_10": 1.0})
    del exact_index
    started = time.perf_counter()
    plain = VectorIndex.build(vectors, config=IndexConfig(kind="ivfpq"))
    build = time.perf_counter() - started
    plain.vectors = None  # plain IVF-PQ: no re-ranking
    variants = [(plain, "")] + [
        (VectorIndex(plain.cpu_index, plain.frame_ids, IndexConfig(kind="ivfpq", rerank=factor), "ivfpq",
                     vectors=vectors),
         f" + re-rank top {10 * factor}")
        for factor in reranks if factor > 1
    ]
    label = f"IVF{default_nlist(size)},PQ{default_pq_m(dim)}"
    for nprobe in nprobes:
        for index, suffix in variants:
            index.set_nprobe(nprobe)
            seconds, found = timed(index)
            rows.append({"n": size, "index": f"{label} nprobe={nprobe}{suffix}", "nprobe": nprobe, "build_s": build,
                         "qps": queries / seconds, "recall_at_10": _recall_at(found, exact)})
    return rows


def run_benchmark(
    n: int = 100_000, dim: int = 384, budget: int = 1000, naive_picks: int = 20, full_picks: int = 200,
    torch_picks: int = 100, sizes: tuple[int, ...] = (100_000,), queries: int = 1000,
    nprobes: tuple[int, ...] = (16,), reranks: tuple[int, ...] = (4, 10), threads: int = 2, seed: int = 0,
) -> dict[str, Any]:
    """Run both parts of the benchmark and return the results as a JSON-ready dict."""
    load_at_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    with _threads(threads):
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            torch_picks = 0
        console.print(f"k-center greedy: {n} x {dim}, budget {budget} ...")
        kcenter = measure_kcenter(n, dim, budget, naive_picks, full_picks, torch_picks, seed)
        search = []
        for size in sizes:
            console.print(f"similarity search: {size} x {dim}, {queries} queries ...")
            search.extend(measure_search(size, dim, queries, nprobes, reranks, seed))
    return {"machine": machine_info(), "threads": threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "load_average_at_start": load_at_start, "kcenter": kcenter, "search": search}


def print_results(results: dict[str, Any]) -> None:
    """Print the k-center and search tables."""
    k = results["kcenter"]
    budget = k["budget"]
    rows = [["kcenter_greedy", f"{budget} (all)", f"{k['seconds']:.2f}", f"{k['ms_per_pick']:.2f}", "1.0x", "-"]]
    engines = (("full_numpy", "full update, NumPy"), ("torch_cpu", "full update, torch"), ("naive", "naive NumPy"))
    for key, name in engines:
        if f"{key}_seconds_extrapolated" not in k:
            continue
        measured, count = k[f"{key}_seconds_measured"], k[f"{key}_picks_measured"]
        rows.append([name, f"{count}, extrap.", f"{k[f'{key}_seconds_extrapolated']:.2f}",
                     f"{1000 * measured / count:.2f}", f"{k[f'{key}_seconds_extrapolated'] / k['seconds']:.1f}x",
                     "yes" if k[f"{key}_agrees_on_measured_picks"] else "NO"])
    load = results.get("load_average_at_start")
    load_text = f", load {load[0]:.1f}" if load else ""
    print_table(f"k-center greedy {k['n']}x{k['dim']}, budget {budget}, {results['threads']} threads{load_text}; "
                f"CPU time {k['cpu_seconds']:.2f} s",
                ["implementation", "picks run", f"s/{budget}", "ms/pick", "ratio", "same picks"], rows)
    rss = ("n/a" if k["peak_rss_delta_ratio"] is None
           else f"{k['peak_rss_delta_bytes'] / 2**20:.1f} MiB ({k['peak_rss_delta_ratio']:.3f}x)")
    print_table("k-center greedy: peak memory beyond the input matrix",
                ["matrix", "tracemalloc peak", "peak RSS delta"],
                [[f"{k['matrix_bytes'] / 2**20:.1f} MiB",
                  f"{k['peak_traced_bytes'] / 2**20:.1f} MiB ({k['peak_traced_ratio']:.3f}x)", rss]])
    print_table("similarity search (k=10)", ["vectors", "index", "build s", "queries/s", "recall@10 vs exact"],
                [[r["n"], r["index"], f"{r['build_s']:.1f}", f"{r['qps']:.0f}", f"{r['recall_at_10']:.3f}"]
                 for r in results["search"]])


@click.command("select")
@click.option("--n", "size", default=100_000, show_default=True, type=click.IntRange(min=10),
              help="Vectors for k-center.")
@click.option("--dim", default=384, show_default=True, type=click.IntRange(min=2))
@click.option("--budget", default=1000, show_default=True, type=click.IntRange(min=1), help="k-center picks.")
@click.option("--naive-picks", default=20, show_default=True, type=click.IntRange(min=1),
              help="Picks the naive NumPy version runs before extrapolating to the budget.")
@click.option("--full-picks", default=200, show_default=True, type=click.IntRange(min=0),
              help="Picks of the full-update NumPy engine before extrapolating (0 to skip).")
@click.option("--torch-picks", default=100, show_default=True, type=click.IntRange(min=0),
              help="Picks of the full-update torch-CPU engine before extrapolating (0 to skip).")
@click.option("--sizes", default="100000", show_default=True, help="Comma-separated index sizes for search.")
@click.option("--large", is_flag=True, help="Also measure search on 1,000,000 vectors (several minutes).")
@click.option("--queries", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--nprobe", "nprobes", default="16", show_default=True, help="Comma-separated IVF nprobe values.")
@click.option("--rerank", "reranks", default="4,10", show_default=True,
              help="Comma-separated IVF-PQ re-rank factors (exact re-scoring of the top 10 x factor).")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1, MAX_THREADS))
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--json", "json_path", type=OUT_FILE, default=None, help="Where to save the results.")
@friendly_errors
def command(size: int, dim: int, budget: int, naive_picks: int, full_picks: int, torch_picks: int, sizes: str,
            large: bool, queries: int, nprobes: str, reranks: str, threads: int, seed: int,
            json_path: Path | None) -> None:
    """Selector speed: k-center greedy vs naive NumPy, and similarity search queries/s and recall."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before FAISS loads: no spinning on shared cores
    search_sizes = comma_ints("--sizes", sizes, 1000)
    probe_counts = comma_ints("--nprobe", nprobes, 1)
    rerank_factors = comma_ints("--rerank", reranks, 1)
    if large and 1_000_000 not in search_sizes:
        search_sizes.append(1_000_000)
    if budget > size:
        raise click.BadParameter(f"--budget {budget} exceeds --n {size}")
    largest = max(size, *search_sizes)  # the vectors and an index's copy of them, one size at a time
    require_memory(4 * dim * (2 * largest + queries), f"{largest:,} vectors (--n, --sizes) x --dim {dim}")
    results = run_benchmark(size, dim, budget, min(naive_picks, budget), min(full_picks, budget),
                            min(torch_picks, budget), tuple(search_sizes), queries, tuple(probe_counts),
                            tuple(rerank_factors), threads, seed)
    print_results(results)
    path = json_path or default_json_path("select")
    write_json(path, results)
    console.print(f"saved {path}")
