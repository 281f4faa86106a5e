"""Typicality: representative frames, scored by kNN density (inverse mean distance to the k nearest)."""
from __future__ import annotations

import numpy as np

from segloop.selectors.clustering import cluster_scope, kmeans
from segloop.selectors.constraints import Constraints, ConstraintTracker
from segloop.selectors.index import IndexConfig, VectorIndex, knn_graph
from segloop.selectors.registry import MAX_SEED, Rule, register
from segloop.selectors.types import CandidatePool, Pick, SelectorError

DENSITY_EPSILON = 1e-12
KNN_IVF_THRESHOLD = 50_000
"""From this many frames on, the kNN graph (one query per frame) uses IVF-PQ with exact re-ranking."""


def knn_typicality(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(typicality, mean kNN distance) per row: typicality = 1 / mean distance to its k nearest others.

    The neighbours come from an exact FAISS L2 index, or from IVF-PQ with exact re-ranking from
    KNN_IVF_THRESHOLD rows on, searched in batches (no N x N matrix). k is capped at N - 1; a single
    row gets typicality 0.
    """
    if k < 1:
        raise SelectorError(f"typicality: k must be >= 1, got {k}")
    size = vectors.shape[0]
    if size < 2:
        return np.zeros(size), np.full(size, np.inf)
    k = min(k, size - 1)
    index = VectorIndex.build(vectors, config=IndexConfig(metric="l2", kind="auto", ivf_threshold=KNN_IVF_THRESHOLD))
    distances, _ = knn_graph(vectors, k, index=index)
    finite = np.where(np.isfinite(distances), distances, np.nan)
    mean_distance = np.nanmean(finite, axis=1)
    mean_distance = np.where(np.isnan(mean_distance), np.inf, mean_distance)
    return 1.0 / (mean_distance + DENSITY_EPSILON), mean_distance


@register("typicality", k=Rule(low=1), n_clusters=Rule(low=-1), seed=Rule(low=0, high=MAX_SEED))
def typicality(
    pool: CandidatePool, constraints: Constraints, *, k: int = 20, n_clusters: int = -1, seed: int = 0
) -> list[Pick]:
    """Representative frames: the densest (most typical) frames, one per k-means cluster in turn.

    Density is computed among the in-scope frames. `n_clusters` -1 means one cluster per budgeted
    pick (TypiClust-style: the most typical frame of each cluster, clusters with the fewest labeled
    frames and then the largest first, repeated round-robin); 0 ranks all frames by typicality alone.
    """
    tracker = ConstraintTracker(pool, constraints)
    if tracker.done:
        return []
    rows = cluster_scope(pool, tracker)
    typical_local, mean_distance_local = knn_typicality(pool.embeddings[rows], k)
    scores = np.zeros(pool.size)
    scores[rows] = typical_local
    mean_distance = np.full(pool.size, np.inf)
    mean_distance[rows] = mean_distance_local
    if n_clusters == 0:
        order = rows[np.argsort(-typical_local, kind="stable")]
        return tracker.take_in_order(
            order, scores, lambda row: f"typical: mean {k}-NN distance {mean_distance[row]:.4g}"
        )
    wanted = constraints.budget if n_clusters == -1 else n_clusters
    clusters = kmeans(pool.embeddings[rows], wanted, seed=seed)
    _round_robin(pool, tracker, rows, clusters.assignment, clusters.count, scores, mean_distance, k)
    return tracker.picks()


def _round_robin(
    pool: CandidatePool, tracker: ConstraintTracker, rows: np.ndarray, assignment: np.ndarray,
    count: int, scores: np.ndarray, mean_distance: np.ndarray, k: int,
) -> None:
    """Take each cluster's most typical eligible frame in turn until the tracker is done."""
    members = []
    for c in range(count):
        in_cluster = rows[assignment == c]
        members.append(in_cluster[np.argsort(-scores[in_cluster], kind="stable")])
    covered = np.array([(pool.labeled[m] | pool.selected[m]).sum() for m in members])
    sizes = np.array([m.size for m in members])
    visit = [int(c) for c in np.lexsort((-sizes, covered))]
    cursor = np.zeros(count, dtype=np.int64)
    while not tracker.done:
        progressed = False
        for c in visit:
            if tracker.done:
                break
            while cursor[c] < members[c].size:
                row = int(members[c][cursor[c]])
                cursor[c] += 1
                if tracker.eligible[row]:
                    tracker.record(
                        row, float(scores[row]),
                        f"most typical left in cluster {c + 1}/{count} ({sizes[c]} frames, {covered[c]} covered): "
                        f"mean {k}-NN distance {mean_distance[row]:.4g}",
                    )
                    progressed = True
                    break
        if not progressed:
            break
