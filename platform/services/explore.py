"""Read services for the Explore, Select and Results pages: 2-D maps of embedding sets, similar frames,
selection review, metrics tables, benchmark curves and predicted-vs-human mask comparisons.

Everything here is bounded: maps sample at most `max_points` frames, tables are paged, and no call
loads every frame row of a large project.
"""
from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

from segloop.platform.core.masks import object_ious
from segloop.platform.core.settings import Settings
from segloop.platform.core.storage import atomic_write_bytes, resolve_inside
from segloop.platform.db.engine import session_scope
from segloop.platform.db.entities import EmbeddingSetInfo, FrameInfo, JobInfo, SelectionInfo
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import artifacts, footage, metrics, projects, scores, selections
from segloop.platform.db.stores import tags as tag_store
from segloop.platform.db.stores.annotations import HUMAN_SOURCES
from segloop.platform.services import access
from segloop.platform.services.access import Actor
from segloop.platform.services.embedding import EMBED_AGAIN, EmbeddingSetError, embedding_arrays
from segloop.platform.services.library import jobs_by_id

MAP_METHODS = ("pca", "tsne")
DEFAULT_MAX_POINTS = 5_000
PREDICTED_SOURCES = ("propagated", "predicted")


class ExploreError(ValueError):
    """A map, search or results request that cannot be answered; the message names the field or file."""


# ---------------------------------------------------------------- embedding sets and 2-D maps


def sample_rows(count: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted row positions of a seeded uniform sample of at most `max_points` of `count` rows."""
    if max_points < 1:
        raise ExploreError(f"max_points: must be >= 1, got {max_points}")
    if count <= max_points:
        return np.arange(count, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(count, size=max_points, replace=False)).astype(np.int64)


def sample_vectors(embedding_set: EmbeddingSetInfo, settings: Settings, max_points: int = DEFAULT_MAX_POINTS,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(float32 vectors, frame ids) of a seeded sample of an embedding set, read without loading all of it."""
    vectors, frame_ids = embedding_arrays(embedding_set, settings, mmap=True)
    what = f"embedding set {embedding_set.id}"
    if vectors.ndim != 2 or vectors.shape[0] != frame_ids.shape[0]:
        raise EmbeddingSetError(f"{what}: its vectors have shape {vectors.shape}, which does not match its "
                                f"{frame_ids.shape[0]} frame ids; {EMBED_AGAIN}")
    rows = sample_rows(vectors.shape[0], max_points, seed)
    sample = np.asarray(vectors[rows], dtype=np.float32)
    if not np.isfinite(sample).all():
        raise EmbeddingSetError(f"{what}: its vectors contain NaN or infinite values; {EMBED_AGAIN}")
    return sample, np.asarray(frame_ids[rows], dtype=np.int64)


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """(N, 2) coordinates of the vectors on their first two principal components (zeros if degenerate)."""
    from sklearn.decomposition import PCA

    if vectors.shape[0] < 3 or float(np.ptp(vectors, axis=0).max(initial=0.0)) == 0.0:
        return np.zeros((vectors.shape[0], 2), dtype=np.float32)
    return PCA(n_components=2, random_state=0).fit_transform(vectors).astype(np.float32)


def tsne_2d(vectors: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """(N, 2) t-SNE coordinates (PCA-initialised; perplexity capped below the sample size)."""
    from sklearn.manifold import TSNE

    if vectors.shape[0] < 5:
        return pca_2d(vectors)
    perplexity = float(min(perplexity, max((vectors.shape[0] - 1) / 3.0, 1.0)))
    model = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, n_jobs=1)
    return model.fit_transform(vectors).astype(np.float32)


def map_cache_path(settings: Settings, embedding_set_id: int, method: str, max_points: int, seed: int) -> Path:
    """Where a computed 2-D map of an embedding set is cached."""
    return settings.runs_dir / "maps" / f"set-{embedding_set_id}-{method}-n{max_points}-s{seed}.npz"


def compute_map(embedding_set: EmbeddingSetInfo, settings: Settings, method: str = "tsne",
                max_points: int = DEFAULT_MAX_POINTS, seed: int = 0, perplexity: float = 30.0) -> Path:
    """Compute a 2-D map of a sample of the set and cache it (frame ids + coordinates); returns the file."""
    if method not in MAP_METHODS:
        raise ExploreError(f"map method: {method!r} is not one of {', '.join(MAP_METHODS)}")
    vectors, frame_ids = sample_vectors(embedding_set, settings, max_points, seed)
    coords = pca_2d(vectors) if method == "pca" else tsne_2d(vectors, perplexity, seed)
    buffer = io.BytesIO()
    np.savez(buffer, frame_ids=frame_ids, coords=coords)
    path = map_cache_path(settings, embedding_set.id, method, max_points, seed)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def cached_map(settings: Settings, embedding_set_id: int, method: str, max_points: int, seed: int
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """(frame ids, coordinates) of a cached map, or None when it was not computed yet."""
    path = map_cache_path(settings, embedding_set_id, method, max_points, seed)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["frame_ids"].astype(np.int64), data["coords"].astype(np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ExploreError(f"{path}: unreadable cached map ({exc}); compute it again") from None


@dataclass(frozen=True)
class MapPoint:
    """A frame on the 2-D map with everything the colours and tooltips use."""

    frame_id: int
    x: float
    y: float
    video: str
    index: int
    status: str
    thumb_path: str
    uncertainty: float | None
    selection: str
    selection_rank: int | None
    tagged: bool = False


def frame_rows(engine: Engine, frame_ids: Sequence[int]) -> dict[int, tuple[FrameInfo, str]]:
    """{frame id: (frame, video name)} for the given ids (missing ids left out)."""
    with session_scope(engine) as session:
        return footage.frames_with_video_names(session, frame_ids)


def latest_scores(engine: Engine, frame_ids: Sequence[int], name: str) -> dict[int, float]:
    """{frame id: newest value} of one per-frame signal for the given frames."""
    with session_scope(engine) as session:
        return scores.latest_scores_of_frames(session, frame_ids, name)


def selection_ranks(engine: Engine, selection_id: int) -> dict[int, tuple[int, str]]:
    """{frame id: (rank, status)} of a selection run's picks."""
    with session_scope(engine) as session:
        return {i.frame_id: (i.rank, i.status) for i in selections.selection_items(session, selection_id)}


def map_points(engine: Engine, settings: Settings, embedding_set: EmbeddingSetInfo, method: str = "pca",
               max_points: int = DEFAULT_MAX_POINTS, seed: int = 0, signal: str | None = None,
               selection_id: int | None = None, tag_id: int | None = None) -> list[MapPoint] | None:
    """The sampled frames of an embedding set on a 2-D map (None when a t-SNE map is not computed yet); with
    `tag_id`, each point says whether its frame carries that tag."""
    if method == "pca":
        vectors, frame_ids = sample_vectors(embedding_set, settings, max_points, seed)
        coords = pca_2d(vectors)
    elif method == "tsne":
        cached = cached_map(settings, embedding_set.id, method, max_points, seed)
        if cached is None:
            return None
        frame_ids, coords = cached
    else:
        raise ExploreError(f"map method: {method!r} is not one of {', '.join(MAP_METHODS)}")
    with session_scope(engine) as session:
        rows = footage.frames_with_video_names(session, frame_ids)
        statuses = annotation_store.frame_statuses(session, list(rows))
        tagged = tag_store.frames_carrying(session, tag_id, list(rows)) if tag_id is not None else set()
    values = latest_scores(engine, list(rows), signal) if signal else {}
    picks = selection_ranks(engine, selection_id) if selection_id is not None else {}
    points = []
    for frame_id, (x, y) in zip(frame_ids.tolist(), coords.tolist()):
        if frame_id not in rows:
            continue
        frame, video_name = rows[frame_id]
        rank, picked = picks.get(frame_id, (None, "not picked"))
        points.append(MapPoint(frame_id, float(x), float(y), video_name, frame.index, statuses[frame_id],
                               frame.thumb_path, values.get(frame_id), picked, rank, frame_id in tagged))
    return points


def _box_corners(box: dict) -> tuple[float, float, float, float] | None:
    """(x0, x1, y0, y1) sorted, of a box ({"x": [a, b], "y": [c, d]}); None when it is not one."""
    try:
        (x0, x1), (y0, y1) = sorted(map(float, box["x"])), sorted(map(float, box["y"]))
    except (KeyError, TypeError, ValueError):
        return None
    return x0, x1, y0, y1


def points_in_box(points: list[MapPoint], box: dict) -> list[MapPoint]:
    """The map points inside a box selection ({"x": [a, b], "y": [c, d]} as the chart reports it)."""
    corners = _box_corners(box)
    if corners is None:
        return []
    x0, x1, y0, y1 = corners
    return [p for p in points if x0 <= p.x <= x1 and y0 <= p.y <= y1]


def points_in_lasso(points: list[MapPoint], lasso: dict) -> list[MapPoint]:
    """The map points inside a lasso ({"x": [...], "y": [...]}: the vertices of the drawn polygon)."""
    from matplotlib.path import Path as Polygon

    try:
        vertices = np.column_stack([np.asarray(lasso["x"], dtype=float), np.asarray(lasso["y"], dtype=float)])
    except (KeyError, TypeError, ValueError):
        return []
    if len(vertices) < 3 or not points or not np.isfinite(vertices).all():
        return []
    inside = Polygon(vertices).contains_points(np.array([(p.x, p.y) for p in points]))
    return [p for p, keep in zip(points, inside.tolist()) if keep]


@dataclass(frozen=True)
class MapSelection:
    """What a selection on the map picked: one clicked frame to open, or the frames gathered by lasso, box or
    several clicks (in map order), and how they were gathered."""

    clicked: int | None
    gathered: list[MapPoint]
    how: str


def _picked_frame_ids(picked: list) -> list[int]:
    """Frame ids of a chart event's points (each point's customdata starts with its frame id)."""
    ids = []
    for point in picked:
        data = point.get("customdata") if isinstance(point, dict) else None
        value = data[0] if isinstance(data, list) and data else data
        if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
            ids.append(int(value))
    return ids


def read_map_selection(points: list[MapPoint], selection: dict | None) -> MapSelection:
    """The frames a Plotly selection event picked on the map ({"points", "box", "lasso"} as Streamlit reports
    it): points inside any lasso or box, or the points clicked; frames not on the map are ignored."""
    selection = selection if isinstance(selection, dict) else {}
    boxes = [b for b in selection.get("box") or [] if isinstance(b, dict)]
    lassos = [a for a in selection.get("lasso") or [] if isinstance(a, dict)]
    by_id = {p.frame_id: p for p in points}
    picked = [f for f in _picked_frame_ids(selection.get("points") or []) if f in by_id]
    if boxes or lassos:
        chosen = set(picked)
        for box in boxes:
            chosen.update(p.frame_id for p in points_in_box(points, box))
        for lasso in lassos:
            chosen.update(p.frame_id for p in points_in_lasso(points, lasso))
        how = " and ".join(word for word, shapes in (("lasso", lassos), ("box", boxes)) if shapes)
        return MapSelection(None, [p for p in points if p.frame_id in chosen], how)
    if len(picked) == 1:
        return MapSelection(picked[0], [], "click")
    chosen = set(picked)
    return MapSelection(None, [p for p in points if p.frame_id in chosen], "clicks" if chosen else "")


def score_names(engine: Engine, project_id: int) -> list[str]:
    """Per-frame signals recorded for a project's frames."""
    with session_scope(engine) as session:
        return scores.score_names(session, project_id)


# ---------------------------------------------------------------- similar frames (FAISS)


def similarity_index(embedding_set: EmbeddingSetInfo, settings: Settings):
    """The FAISS index (cosine) of an embedding set, stored next to its vectors and rebuilt when they change."""
    from segloop.platform.services.embedding import load_embedding_set
    from segloop.selectors.index import IndexConfig, VectorIndex, fingerprint_array, fingerprint_file, read_meta

    vectors_path = resolve_inside(settings.data_dir, embedding_set.vectors_path)
    index_path = vectors_path.with_name(vectors_path.stem + "-cosine.faiss")
    vectors, frame_ids = load_embedding_set(embedding_set, settings)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    config = IndexConfig(metric="ip")
    fingerprint = fingerprint_file(vectors_path)
    meta = read_meta(index_path)
    if (meta is not None and index_path.exists() and meta["fingerprint"] == fingerprint
            and meta["frame_ids_fingerprint"] == fingerprint_array(frame_ids)
            and meta["settings"] == config.build_settings()):
        return VectorIndex.load(index_path, config, vectors=vectors)
    index = VectorIndex.build(vectors, frame_ids, config, fingerprint=fingerprint)
    index.save(index_path)
    return index


def similar_frames(index, frame_id: int, k: int = 12, engine: Engine | None = None, other_videos: bool = False
                   ) -> list[tuple[int, float]]:
    """(frame id, cosine similarity) of the k frames most like `frame_id`, most similar first; with `other_videos`
    (and the engine to look videos up) only frames of other videos than the frame's own."""
    from segloop.selectors.index import VectorIndexError

    total = max(len(index) - 1, 0)
    wanted = min(k, total)
    while True:
        try:
            found = index.search_by_id(np.array([frame_id]), max(wanted, 1))
        except VectorIndexError as exc:
            raise ExploreError(f"frame {frame_id}: not in this embedding set ({exc})") from None
        pairs = [(int(f), float(s)) for f, s in zip(found.frame_ids[0], found.scores[0]) if f >= 0]
        if other_videos and engine is not None:
            rows = frame_rows(engine, [frame_id] + [f for f, _ in pairs])
            own = rows[frame_id][0].video_id if frame_id in rows else None
            pairs = [(f, s) for f, s in pairs if f in rows and rows[f][0].video_id != own]
        if len(pairs) >= k or wanted >= total:
            return pairs[:k]
        wanted = min(wanted * 4, total)


def queue_frames(engine: Engine, project_id: int, frame_ids: Sequence[int], reason: str, *,
                 actor: Actor | None = None) -> SelectionInfo:
    """Queue hand-picked frames for labeling: a selection run ('manual') with the frames in the given order."""
    if not frame_ids:
        raise ExploreError("no frame chosen: draw a lasso or a box around some points first")
    access.require(engine, actor, "label", project_id)
    frame_ids = list(dict.fromkeys(int(f) for f in frame_ids))  # a frame chosen twice is queued once
    with session_scope(engine) as session:
        footage.require_project_frames(session, projects.get_project_by_id(session, project_id), frame_ids)
        return selections.add_selection(session, project_id, "manual", len(frame_ids),
                                        [(f, 1.0, reason) for f in frame_ids])


# ---------------------------------------------------------------- selection review


def project_selections(engine: Engine, project_id: int) -> list[SelectionInfo]:
    """A project's selection runs, newest first."""
    with session_scope(engine) as session:
        return selections.list_selections(session, project_id)


@dataclass(frozen=True)
class ReviewItem:
    """A pick of a selection run with what the reviewer sees."""

    rank: int
    frame: FrameInfo
    video_name: str
    score: float
    reason: str
    status: str


@dataclass(frozen=True)
class ReviewPage:
    """One page of a run's picks, the run's pick count and its counts per status."""

    items: list[ReviewItem]
    total: int
    by_status: dict[str, int]


def review_page(engine: Engine, selection_id: int, offset: int = 0, limit: int = 24) -> ReviewPage:
    """One page of a selection run's picks in rank order, with frames and video names."""
    with session_scope(engine) as session:
        selections.get_selection(session, selection_id)
        counts = selections.count_items_by_status(session, selection_id)
        rows = selections.picks_with_frames(session, selection_id, offset, limit)
    items = [ReviewItem(item.rank, frame, name, float(item.score), item.reason, item.status)
             for item, frame, name in rows]
    return ReviewPage(items, sum(counts.values()), counts)


def review_picks(engine: Engine, selection_id: int, accepted: Sequence[int], rejected: Sequence[int] = ()) -> int:
    """Accept some picks of a run and reject others (both by frame id); returns how many changed."""
    overlap = set(accepted) & set(rejected)
    if overlap:
        raise ExploreError(f"selection {selection_id}: frames {sorted(overlap)} are both accepted and rejected")
    with session_scope(engine) as session:
        selections.get_selection(session, selection_id)
        changed = selections.set_item_status(session, selection_id, list(accepted), "accepted") if accepted else 0
        if rejected:
            changed += selections.set_item_status(session, selection_id, list(rejected), "rejected")
    return changed


def accept_all(engine: Engine, selection_id: int) -> int:
    """Accept every pick of a run that is not accepted yet; returns how many changed."""
    with session_scope(engine) as session:
        frame_ids = selections.picked_frame_ids(session, selection_id, except_status="accepted")
    return review_picks(engine, selection_id, frame_ids)


# ---------------------------------------------------------------- metrics per model and sequence


@dataclass(frozen=True)
class MetricRow:
    """One metric value of one sequence under one model."""

    sequence: str
    model: str
    metric: str
    value: float
    job_id: int | None


def model_label(job: JobInfo | None, checkpoint_id: int | None, backbones: dict[int, str]) -> str:
    """A short name of the model that produced a metric: checkpoint, or the job's method and backbone."""
    if checkpoint_id is not None:
        return f"checkpoint {checkpoint_id} ({backbones.get(checkpoint_id, '?')})"
    if job is None:
        return "unknown model"
    params = job.params or {}
    method = params.get("method")
    backbone = params.get("backbone")
    if params.get("checkpoint"):
        backbone = f"{backbone} + {Path(str(params['checkpoint'])).name}"
    if method == "backbone" or (method is None and backbone):
        return f"{job.kind}: {backbone}"
    return f"{job.kind}: {method or job.kind}"


def metric_rows(engine: Engine, project_id: int | None = None, scope: str = "video", limit: int = 20_000
                ) -> list[MetricRow]:
    """Per-sequence metric values (newest `limit` rows) with the model that produced each."""
    with session_scope(engine) as session:
        newest = metrics.newest_metrics(session, scope, project_id, limit)
        backbones = {c.id: f"{c.kind}, {c.backbone}" for c in artifacts.list_checkpoints(session, project_id)}
    jobs = {j.id: j for j in jobs_by_id(engine, sorted({m.job_id for m in newest if m.job_id is not None}))}
    return [MetricRow(m.scope_key, model_label(jobs.get(m.job_id), m.checkpoint_id, backbones), m.name,
                      float(m.value), m.job_id) for m in reversed(newest)]


def metric_table(rows: Sequence[MetricRow], metric: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(models, table rows): one row per sequence with the newest value of `metric` per model, plus a mean row."""
    latest: dict[tuple[str, str], float] = {}
    for row in rows:
        if row.metric == metric:
            latest[(row.sequence, row.model)] = row.value
    models = sorted({m for _, m in latest})
    sequences = sorted({s for s, _ in latest})
    table = [{"sequence": s, **{m: latest.get((s, m)) for m in models}} for s in sequences]
    if table:
        means = {}
        for model in models:
            values = [latest[(s, model)] for s in sequences if (s, model) in latest]
            means[model] = float(np.mean(values)) if values else None
        table.append({"sequence": "mean", **means})
    return models, table


def overall_table(rows: Sequence[MetricRow]) -> tuple[list[str], list[dict[str, Any]]]:
    """(metric names, table rows): one row per model with the newest value of each metric."""
    latest: dict[str, dict[str, float]] = {}
    for row in rows:
        latest.setdefault(row.model, {})[row.metric] = row.value
    names = sorted({m for values in latest.values() for m in values})
    return names, [{"model": model, **{n: values.get(n) for n in names}} for model, values in sorted(latest.items())]


# ---------------------------------------------------------------- benchmark curves


@dataclass(frozen=True)
class BenchCurve:
    """A benchmark result file shown as curves: points (series, x, y) aggregated over seeds."""

    path: Path
    kind: str
    title: str
    x_label: str
    y_label: str
    points: list[dict[str, Any]]
    ceiling: float | None = None


def _mean_points(results: list[dict], series: str, x: str, y: str) -> list[dict[str, Any]]:
    """Mean, min, max and count of y per (series, x)."""
    grouped: dict[tuple[str, float], list[float]] = {}
    for item in results:
        try:
            key = (str(item[series]), float(item[x]))
            value = float(item[y])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(value):
            grouped.setdefault(key, []).append(value)
    return [{"series": s, "x": xv, "y": float(np.mean(v)), "low": float(np.min(v)), "high": float(np.max(v)),
             "runs": len(v)} for (s, xv), v in sorted(grouped.items())]


def parse_bench(path: Path) -> BenchCurve | None:
    """An active-learning or keyframe benchmark file as curves; None for other benchmark files."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExploreError(f"{path}: not a readable JSON benchmark file ({exc})") from None
    results = document.get("results") if isinstance(document, dict) else None
    if not isinstance(results, list) or not results or not all(isinstance(r, dict) for r in results):
        return None
    first = results[0]
    if {"strategy", "value"} <= set(first) and ("labeled_frames" in first or "budget" in first):
        x = "labeled_frames" if "labeled_frames" in first else "budget"
        metric = str(document.get("metric", "value"))
        ceiling = document.get("ceiling")
        return BenchCurve(path, "active_learning", f"{document.get('task', 'active learning')}: {metric}",
                          x.replace("_", " "), metric, _mean_points(results, "strategy", x, "value"),
                          float(ceiling) if isinstance(ceiling, (int, float)) else None)
    if {"strategy", "budget", "J&F"} <= set(first):
        return BenchCurve(path, "keyframes", "keyframe selection: J&F of propagation", "keyframes (budget)", "J&F",
                          _mean_points(results, "strategy", "budget", "J&F"))
    return None


def bench_files(data_dir: Path) -> list[Path]:
    """Benchmark JSON files under the data dir, newest first."""
    folder = Path(data_dir) / "bench"
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)


# ---------------------------------------------------------------- predicted vs human masks


def videos_with_predictions(engine: Engine, project_id: int) -> list[tuple[int, str, int]]:
    """(video id, name, frames with predicted masks) of a project's videos that have any."""
    with session_scope(engine) as session:
        return annotation_store.videos_with_sources(session, project_id, PREDICTED_SOURCES)


def predicted_frames(engine: Engine, video_id: int, offset: int = 0, limit: int = 12, only_with_human: bool = False
                     ) -> tuple[list[tuple[FrameInfo, bool]], int]:
    """(page of (frame, has a human mask too), total) of a video's frames with predicted masks (optionally only
    those that also have a human mask)."""
    with session_scope(engine) as session:
        frames, total = annotation_store.frames_with_sources(
            session, video_id, PREDICTED_SOURCES, also=HUMAN_SOURCES if only_with_human else None,
            offset=offset, limit=limit)
        with_human = annotation_store.frames_having_sources(session, [f.id for f in frames], HUMAN_SOURCES)
    return [(f, f.id in with_human) for f in frames], total


@dataclass(frozen=True)
class MaskComparison:
    """A frame's newest predicted masks next to its newest human masks, with IoU per object."""

    frame: FrameInfo
    height: int
    width: int
    predicted: np.ndarray
    human: np.ndarray | None
    iou: dict[int, float]


def mask_iou(predicted: np.ndarray, truth: np.ndarray) -> dict[int, float]:
    """IoU per object id present in either label map."""
    return object_ious(predicted, truth)


def compare_masks(engine: Engine, frame_id: int) -> MaskComparison:
    """The newest predicted and human label maps of a frame, and their IoU per object."""
    with session_scope(engine) as session:
        frame = footage.get_frame(session, frame_id)
        video = footage.get_video(session, frame.video_id)
        predicted = annotation_store.latest_annotations(session, frame_id, PREDICTED_SOURCES)
        human = annotation_store.latest_annotations(session, frame_id, HUMAN_SOURCES)
    height, width = video.stored_height, video.stored_width
    predicted_map = annotation_store.label_map(predicted, height, width)
    human_map = annotation_store.label_map(human, height, width) if human else None
    iou = mask_iou(predicted_map, human_map) if human_map is not None else {}
    return MaskComparison(frame, height, width, predicted_map, human_map, iou)
