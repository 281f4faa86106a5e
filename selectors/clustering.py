"""Cluster-balanced selection: FAISS k-means, then picks per cluster in proportion to its size."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segloop.selectors.baselines import allocate_proportionally
from segloop.selectors.constraints import Constraints, ConstraintTracker
from segloop.selectors.registry import MAX_SEED, Rule, register
from segloop.selectors.types import CandidatePool, Pick, SelectorError


@dataclass
class Clustering:
    """k-means result: centroids (k, D), cluster of every vector, squared distance to its centroid."""

    centroids: np.ndarray
    assignment: np.ndarray
    distances: np.ndarray

    @property
    def count(self) -> int:
        """Number of clusters."""
        return int(self.centroids.shape[0])


def kmeans(vectors: np.ndarray, clusters: int, seed: int = 0, niter: int = 20) -> Clustering:
    """FAISS k-means (k-means++ init, GPU when present) of (N, D) vectors into min(clusters, N) clusters."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise SelectorError(f"kmeans: expected a non-empty (N, D) array, got shape {vectors.shape}")
    if clusters < 1:
        raise SelectorError(f"kmeans: number of clusters must be >= 1, got {clusters}")
    clusters = min(int(clusters), vectors.shape[0])
    if clusters == 1:
        centroids = vectors.mean(axis=0, keepdims=True)
    else:
        model = faiss.Kmeans(
            vectors.shape[1], clusters, niter=niter, seed=seed, verbose=False,
            min_points_per_centroid=1, gpu=faiss.get_num_gpus() > 0,
            init_method=faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS,
        )
        model.train(vectors)
        centroids = model.centroids
    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    distances = np.empty(vectors.shape[0], dtype=np.float32)
    assignment = np.empty(vectors.shape[0], dtype=np.int64)
    for start in range(0, vectors.shape[0], 65536):
        d2, nearest = index.search(vectors[start:start + 65536], 1)
        distances[start:start + d2.shape[0]] = d2[:, 0]
        assignment[start:start + d2.shape[0]] = nearest[:, 0]
    return Clustering(np.asarray(centroids, dtype=np.float32), assignment, distances)


def cluster_scope(pool: CandidatePool, tracker: ConstraintTracker) -> np.ndarray:
    """Rows that shape the clusters: in-scope frames that are eligible, labeled or selected."""
    return np.flatnonzero(tracker.in_scope & (tracker.eligible | pool.labeled | pool.selected))


def cluster_shares(
    sizes: np.ndarray, covered: np.ndarray, available: np.ndarray, budget: int
) -> np.ndarray:
    """Picks per cluster: each cluster's fair share of (budget + covered) minus what it already has."""
    total = sizes.sum()
    deficit = np.maximum(sizes / max(total, 1) * (budget + covered.sum()) - covered, 0.0)
    return allocate_proportionally(deficit, budget, available)


@register("cluster", n_clusters=Rule(low=1, special=(-1,)), seed=Rule(low=0, high=MAX_SEED), niter=Rule(low=1))
def cluster(
    pool: CandidatePool, constraints: Constraints, *, n_clusters: int = -1, seed: int = 0, niter: int = 20
) -> list[Pick]:
    """Cold start / balance: k-means, then picks per cluster in proportion to its size, most central first.

    `n_clusters` -1 means one cluster per budgeted pick. Clusters already holding labeled or
    selected frames get correspondingly fewer picks. Budget that constraints leave unspent is
    filled round-robin over clusters, largest first.
    """
    tracker = ConstraintTracker(pool, constraints)
    if tracker.done:
        return []
    rows = cluster_scope(pool, tracker)
    wanted = constraints.budget if n_clusters == -1 else n_clusters
    result = kmeans(pool.embeddings[rows], wanted, seed=seed, niter=niter)
    distance = np.sqrt(np.maximum(result.distances, 0.0))
    members, member_distance = [], []
    for c in range(result.count):
        local = np.flatnonzero(result.assignment == c)
        local = local[np.argsort(distance[local], kind="stable")]
        members.append(rows[local])
        member_distance.append(distance[local])
    sizes = np.array([m.size for m in members], dtype=np.float64)
    covered = np.array([(pool.labeled[m] | pool.selected[m]).sum() for m in members], dtype=np.float64)
    available = np.array([tracker.eligible[m].sum() for m in members], dtype=np.int64)
    shares = cluster_shares(sizes, covered, available, constraints.budget)
    cursor = np.zeros(result.count, dtype=np.int64)
    picked = np.zeros(result.count, dtype=np.int64)

    def take_next(c: int) -> bool:
        """Take the most central still-eligible frame of cluster c; False when it has none."""
        while cursor[c] < members[c].size:
            row, d = int(members[c][cursor[c]]), float(member_distance[c][cursor[c]])
            cursor[c] += 1
            if tracker.eligible[row]:
                picked[c] += 1
                tracker.record(
                    row, d,
                    f"cluster {c + 1}/{result.count} ({int(sizes[c])} frames, {int(covered[c])} covered): "
                    f"pick {picked[c]}, d to centroid={d:.4g}",
                )
                return True
        return False

    largest_first = [int(c) for c in np.argsort(-sizes, kind="stable")]
    for c in largest_first:
        for _ in range(int(shares[c])):
            if tracker.done or not take_next(c):
                break
    while not tracker.done:
        progressed = False
        for c in largest_first:
            if tracker.done:
                break
            progressed |= take_next(c)
        if not progressed:
            break
    return tracker.picks()
