"""FAISS similarity index over an embedding set: exact below a size threshold, IVF-PQ above it.

The index lives next to the embedding set (`<vectors>.faiss` plus `<vectors>.faiss.json` with the
fingerprint of the vectors file and `<vectors>.faiss.ids.npy` with the frame ids) and is rebuilt
only when the vectors, the ids or the index settings change. Searches run on GPU (sharded across
all GPUs) when `faiss.get_num_gpus() > 0`, otherwise on CPU; all searches are batched.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segloop.platform.core.storage import atomic_path
from segloop.selectors.types import SelectorError, all_finite

INDEX_FORMAT_VERSION = 1
HASH_CHUNK_BYTES = 1 << 24
RERANK_QUERIES = 256
"""Queries re-ranked at once: bounds the (queries, candidates, D) gather to a few tens of MiB."""


class VectorIndexError(SelectorError):
    """An index file or index request that cannot be used; the message names it and why."""


@dataclass(frozen=True)
class IndexConfig:
    """How to index a vector set. `metric`: 'ip' (inner product; cosine on unit vectors) or 'l2'.

    `kind`: 'auto' (exact below `ivf_threshold` vectors, IVF-PQ at or above), 'flat' or 'ivfpq'.
    `nlist`: IVF cells (0 = about 4 * sqrt(N)); `pq_m`: PQ sub-quantizers (0 = D / 4 rounded to a
    divisor of D); `nprobe`: cells visited per query; `rerank`: re-score IVF-PQ's top k * rerank
    candidates with the exact vectors when they are at hand (1 = off). `gpu`: 'auto', 'never'.
    """

    metric: str = "ip"
    kind: str = "auto"
    ivf_threshold: int = 200_000
    nlist: int = 0
    pq_m: int = 0
    pq_bits: int = 8
    nprobe: int = 16
    rerank: int = 4
    train_size: int = 100_000
    search_batch: int = 4096
    seed: int = 0
    gpu: str = "auto"

    def __post_init__(self) -> None:
        """Reject settings FAISS cannot honour, naming the field."""
        if self.metric not in ("ip", "l2"):
            raise VectorIndexError(f"IndexConfig.metric: expected 'ip' or 'l2', got {self.metric!r}")
        if self.kind not in ("auto", "flat", "ivfpq"):
            raise VectorIndexError(f"IndexConfig.kind: expected auto, flat or ivfpq, got {self.kind!r}")
        if self.gpu not in ("auto", "never"):
            raise VectorIndexError(f"IndexConfig.gpu: expected 'auto' or 'never', got {self.gpu!r}")
        for name in ("nprobe", "rerank", "train_size", "search_batch", "pq_bits"):
            if getattr(self, name) < 1:
                raise VectorIndexError(f"IndexConfig.{name}: must be >= 1, got {getattr(self, name)}")

    def build_settings(self) -> dict[str, Any]:
        """The settings that shape the stored index (search-time ones excluded)."""
        return {k: v for k, v in asdict(self).items() if k not in ("nprobe", "rerank", "search_batch", "gpu")}


@dataclass
class SearchResult:
    """k nearest neighbours per query: scores (similarity for 'ip', squared distance for 'l2'),
    frame ids and row positions; -1 where fewer than k neighbours exist."""

    scores: np.ndarray
    frame_ids: np.ndarray
    rows: np.ndarray


def fingerprint_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 16 MiB chunks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(HASH_CHUNK_BYTES):
                digest.update(chunk)
    except FileNotFoundError:
        raise VectorIndexError(f"{path}: vectors file does not exist") from None
    return digest.hexdigest()


def fingerprint_array(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    flat = array.reshape(-1).view(np.uint8)
    for start in range(0, flat.size, HASH_CHUNK_BYTES):
        digest.update(flat[start:start + HASH_CHUNK_BYTES])
    return digest.hexdigest()


def _faiss():
    """The faiss module (imported lazily: it is heavy)."""
    import faiss

    return faiss


def _metric(faiss, metric: str) -> int:
    """FAISS metric constant for 'ip' / 'l2'."""
    return faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2


def default_nlist(size: int) -> int:
    """IVF cell count for `size` vectors: about 4 * sqrt(N), at least 1, at most N / 39."""
    return int(max(1, min(4 * round(np.sqrt(size)), size // 39)))


def default_pq_m(dim: int) -> int:
    """PQ sub-quantizer count: the divisor of `dim` closest to dim / 4 (4 dims per code byte)."""
    target = max(1, dim // 4)
    divisors = [m for m in range(1, dim + 1) if dim % m == 0]
    return min(divisors, key=lambda m: (abs(m - target), m))


def _check_vectors(vectors: np.ndarray, what: str = "vectors") -> np.ndarray:
    """Vectors as a finite, C-contiguous float32 (N, D) array."""
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[1] == 0:
        raise VectorIndexError(f"{what}: expected a 2-D (N, D) float array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise VectorIndexError(f"{what}: expected floats, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not all_finite(array):
        raise VectorIndexError(f"{what}: contains NaN or infinite values")
    return array


class VectorIndex:
    """A FAISS index whose positions map to frame ids, with optional access to the exact vectors."""

    def __init__(
        self, index: Any, frame_ids: np.ndarray, config: IndexConfig, kind: str,
        vectors: np.ndarray | None = None, fingerprint: str | None = None,
    ) -> None:
        """Wrap a CPU FAISS index (moved to GPU when available and allowed)."""
        self.cpu_index = index
        self.frame_ids = np.asarray(frame_ids, dtype=np.int64)
        self.config = config
        self.kind = kind
        self.vectors = vectors
        self.fingerprint = fingerprint
        self._id_order: np.ndarray | None = None
        self._gpu_resources: list[Any] = []
        self.index = self._to_device(index)
        self.set_nprobe(config.nprobe)

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.cpu_index.d)

    @property
    def on_gpu(self) -> bool:
        """True when searches run on GPU."""
        return self.index is not self.cpu_index

    def __len__(self) -> int:
        """Number of indexed vectors."""
        return int(self.cpu_index.ntotal)

    def _to_device(self, index: Any) -> Any:
        """The index cloned onto all GPUs (sharded) when there are any and the config allows it.

        IVF-PQ uses float16 lookup tables on GPU (needed for 48+ sub-quantizers); exact indexes keep
        float32 vectors. If cloning fails, searches stay on CPU with a warning.
        """
        faiss = _faiss()
        if self.config.gpu == "never" or faiss.get_num_gpus() == 0:
            return index
        try:
            if faiss.get_num_gpus() == 1:
                options = faiss.GpuClonerOptions()
                options.useFloat16 = self.kind == "ivfpq"
                resources = faiss.StandardGpuResources()
                self._gpu_resources.append(resources)
                return faiss.index_cpu_to_gpu(resources, 0, index, options)
            options = faiss.GpuMultipleClonerOptions()
            options.shard = True
            options.useFloat16 = self.kind == "ivfpq"
            return faiss.index_cpu_to_all_gpus(index, co=options)
        except RuntimeError as exc:
            warnings.warn(f"FAISS GPU clone failed, searching on CPU: {exc}", RuntimeWarning, stacklevel=2)
            return index

    def set_nprobe(self, nprobe: int) -> None:
        """Cells visited per query for IVF indexes (ignored by exact ones)."""
        if self.kind != "ivfpq":
            return
        faiss = _faiss()
        space = faiss.GpuParameterSpace() if self.on_gpu else faiss.ParameterSpace()
        space.set_index_parameter(self.index, "nprobe", int(nprobe))
        self.nprobe = int(nprobe)

    @classmethod
    def build(
        cls, vectors: np.ndarray, frame_ids: np.ndarray | None = None, config: IndexConfig = IndexConfig(),
        fingerprint: str | None = None,
    ) -> VectorIndex:
        """Build an exact or IVF-PQ index over `vectors` (frame ids default to row positions)."""
        vectors = _check_vectors(vectors)
        size, dim = vectors.shape
        ids = np.arange(size, dtype=np.int64) if frame_ids is None else np.asarray(frame_ids, dtype=np.int64)
        if ids.shape != (size,):
            raise VectorIndexError(f"frame_ids: expected shape ({size},), got {ids.shape}")
        if np.unique(ids).size != size:
            raise VectorIndexError("frame_ids: frame ids must be unique")
        kind = config.kind
        if kind == "auto":
            kind = "ivfpq" if size >= config.ivf_threshold else "flat"
        index = _build_flat(vectors, config) if kind == "flat" else _build_ivfpq(vectors, config)
        return cls(index, ids, config, kind, vectors=vectors, fingerprint=fingerprint)

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """The k nearest indexed vectors of each query, batched."""
        queries = _check_vectors(queries, "queries")
        if queries.shape[1] != self.dim:
            raise VectorIndexError(f"queries: dimension {queries.shape[1]} does not match the index ({self.dim})")
        if k < 1:
            raise VectorIndexError(f"k: must be >= 1, got {k}")
        fetch = k * self.config.rerank if (self.kind == "ivfpq" and self.vectors is not None) else k
        fetch = min(fetch, max(len(self), 1))
        scores = np.empty((queries.shape[0], k), dtype=np.float32)
        rows = np.empty((queries.shape[0], k), dtype=np.int64)
        for start in range(0, queries.shape[0], self.config.search_batch):
            batch = queries[start:start + self.config.search_batch]
            found_scores, found_rows = self.index.search(batch, fetch)
            if fetch != k or found_rows.shape[1] < k:
                found_scores, found_rows = self._finish(batch, found_scores, found_rows, k)
            scores[start:start + batch.shape[0]] = found_scores
            rows[start:start + batch.shape[0]] = found_rows
        frame_ids = np.where(rows >= 0, self.frame_ids[np.maximum(rows, 0)], -1)
        return SearchResult(scores, frame_ids, rows)

    def _finish(
        self, queries: np.ndarray, scores: np.ndarray, rows: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Re-score candidates exactly when vectors are at hand, then keep the best k (padded with -1)."""
        if self.vectors is not None and self.kind == "ivfpq":
            scores = np.empty(rows.shape, dtype=np.float32)
            for start in range(0, rows.shape[0], RERANK_QUERIES):
                part = slice(start, start + RERANK_QUERIES)
                scores[part] = self._exact_scores(queries[part], rows[part])
            rank_key = -scores if self.config.metric == "ip" else scores
            rank_key = np.where(rows >= 0, rank_key, np.inf)
            order = np.argsort(rank_key, axis=1, kind="stable")
            scores = np.take_along_axis(scores, order, axis=1)
            rows = np.take_along_axis(rows, order, axis=1)
            scores = np.where(rows >= 0, scores, np.nan)
        if rows.shape[1] < k:
            pad = k - rows.shape[1]
            rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=np.nan)
        return scores[:, :k].astype(np.float32), rows[:, :k]

    def _exact_scores(self, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact similarity ('ip') or squared distance ('l2') between each query and its candidate rows."""
        candidates = np.asarray(self.vectors[np.maximum(rows, 0)], dtype=np.float32)
        similarity = np.einsum("qkd,qd->qk", candidates, queries)
        if self.config.metric == "ip":
            return similarity
        return (np.einsum("qkd,qkd->qk", candidates, candidates) - 2.0 * similarity
                + np.einsum("qd,qd->q", queries, queries)[:, None])

    def vectors_of(self, frame_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, vectors) of indexed frame ids (exact vectors when at hand, else reconstructed)."""
        wanted = np.atleast_1d(np.asarray(frame_ids, dtype=np.int64))
        if self._id_order is None:
            self._id_order = np.argsort(self.frame_ids, kind="stable")
        sorted_ids = self.frame_ids[self._id_order]
        positions = np.minimum(np.searchsorted(sorted_ids, wanted), max(len(sorted_ids) - 1, 0))
        found = sorted_ids[positions] == wanted if len(sorted_ids) else np.zeros(wanted.shape, dtype=bool)
        if not np.all(found):
            raise VectorIndexError(f"frame ids not in the index: {wanted[~found][:10].tolist()}")
        rows = self._id_order[positions]
        if self.vectors is not None:
            return rows, np.ascontiguousarray(self.vectors[rows], dtype=np.float32)
        if self.kind == "ivfpq":
            _faiss().extract_index_ivf(self.cpu_index).make_direct_map()
        return rows, np.stack([self.cpu_index.reconstruct(int(r)) for r in rows]).astype(np.float32)

    def search_by_id(self, frame_ids: np.ndarray, k: int, exclude_self: bool = True) -> SearchResult:
        """The k frames most similar to each given frame ("more frames like this one")."""
        frame_ids = np.atleast_1d(np.asarray(frame_ids, dtype=np.int64))
        rows, queries = self.vectors_of(frame_ids)
        if not exclude_self:
            return self.search(queries, k)
        found = self.search(queries, k + 1)
        return _drop_rows(found, rows, k, self.frame_ids)

    def save(self, path: str | os.PathLike) -> None:
        """Write the index, its frame ids and its metadata next to each other, each atomically."""
        faiss = _faiss()
        path = Path(path)
        with atomic_path(path) as temp:
            faiss.write_index(self.cpu_index, str(temp))
        with atomic_path(_ids_path(path)) as temp:
            _save_npy(temp, self.frame_ids)
        meta = {
            "format": INDEX_FORMAT_VERSION,
            "kind": self.kind,
            "size": len(self),
            "dim": self.dim,
            "fingerprint": self.fingerprint,
            "frame_ids_fingerprint": fingerprint_array(self.frame_ids),
            "settings": self.config.build_settings(),
        }
        with atomic_path(_meta_path(path)) as temp:
            temp.write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(
        cls, path: str | os.PathLike, config: IndexConfig | None = None, vectors: np.ndarray | None = None
    ) -> VectorIndex:
        """Read an index written by `save` (search settings from `config`, exact vectors optional)."""
        faiss = _faiss()
        path = Path(path)
        meta = read_meta(path)
        if meta is None:
            raise VectorIndexError(f"{path}: no index metadata at {_meta_path(path)}")
        try:
            index = faiss.read_index(str(path))
            frame_ids = np.load(_ids_path(path))
        except (RuntimeError, OSError, ValueError) as exc:
            raise VectorIndexError(f"{path}: cannot read the index: {exc}") from None
        stored = IndexConfig(**{**asdict(config or IndexConfig()), **meta["settings"]})
        if index.ntotal != frame_ids.size:
            raise VectorIndexError(f"{path}: index holds {index.ntotal} vectors but {frame_ids.size} frame ids")
        if vectors is not None and vectors.shape != (index.ntotal, index.d):
            raise VectorIndexError(
                f"vectors: shape {vectors.shape} does not match the index ({index.ntotal}, {index.d})")
        return cls(index, frame_ids, stored, meta["kind"], vectors=vectors, fingerprint=meta["fingerprint"])


def _save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """np.save to exactly `path` (no '.npy' appended)."""
    with open(path, "wb") as handle:
        np.save(handle, array)


def _drop_rows(found: SearchResult, rows: np.ndarray, k: int, all_ids: np.ndarray) -> SearchResult:
    """Remove each query's own row from its neighbours and keep k."""
    keep_scores = np.empty((rows.size, k), dtype=np.float32)
    keep_rows = np.empty((rows.size, k), dtype=np.int64)
    for query, own in enumerate(rows):
        mask = found.rows[query] != own
        kept = np.flatnonzero(mask)[:k]
        keep_scores[query] = found.scores[query, kept]
        keep_rows[query] = found.rows[query, kept]
    frame_ids = np.where(keep_rows >= 0, all_ids[np.maximum(keep_rows, 0)], -1)
    return SearchResult(keep_scores, frame_ids, keep_rows)


def _build_flat(vectors: np.ndarray, config: IndexConfig) -> Any:
    """Exact inner-product or L2 index."""
    faiss = _faiss()
    index = faiss.IndexFlatIP(vectors.shape[1]) if config.metric == "ip" else faiss.IndexFlatL2(vectors.shape[1])
    index.add(vectors)
    return index


def ivfpq_min_vectors(size: int, config: IndexConfig) -> int:
    """How many vectors an IVF-PQ index over `size` of them needs to train its coarse and PQ codebooks."""
    return max(config.nlist or default_nlist(size), 1 << config.pq_bits)


def _build_ivfpq(vectors: np.ndarray, config: IndexConfig) -> Any:
    """IVF-PQ index trained on a seeded sample of the vectors."""
    faiss = _faiss()
    size, dim = vectors.shape
    nlist = config.nlist or default_nlist(size)
    pq_m = config.pq_m or default_pq_m(dim)
    if dim % pq_m:
        raise VectorIndexError(f"IndexConfig.pq_m: {pq_m} does not divide the dimension {dim}")
    min_train = ivfpq_min_vectors(size, config)
    if size < min_train:
        raise VectorIndexError(f"IVF-PQ needs at least {min_train} vectors to train "
                               f"(nlist={nlist}, pq_bits={config.pq_bits}); got {size}")
    index = faiss.index_factory(dim, f"IVF{nlist},PQ{pq_m}x{config.pq_bits}", _metric(faiss, config.metric))
    index.do_polysemous_training = False  # only useful for polysemous search, and very slow to train
    for params in (index.cp, index.pq.cp):
        params.seed = config.seed
        params.min_points_per_centroid = 1
    rng = np.random.default_rng(config.seed)
    train = (vectors if size <= config.train_size
             else vectors[np.sort(rng.choice(size, config.train_size, replace=False))])
    index.train(np.ascontiguousarray(train))
    for start in range(0, size, 65536):
        index.add(vectors[start:start + 65536])
    return index


def _ids_path(path: Path) -> Path:
    """Where the frame ids of the index at `path` are stored."""
    return path.with_name(path.name + ".ids.npy")


def _meta_path(path: Path) -> Path:
    """Where the metadata of the index at `path` is stored."""
    return path.with_name(path.name + ".json")


def read_meta(path: str | os.PathLike) -> dict[str, Any] | None:
    """The stored metadata of the index at `path`, or None when absent or unreadable."""
    try:
        meta = json.loads(_meta_path(Path(path)).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if meta.get("format") != INDEX_FORMAT_VERSION:
        return None
    return meta


def default_index_path(vectors_path: str | os.PathLike) -> Path:
    """Index file next to an embedding set: `<name>.faiss` beside `<name>.npy`."""
    vectors_path = Path(vectors_path)
    return vectors_path.with_name(vectors_path.stem + ".faiss")


def load_vectors(vectors_path: str | os.PathLike) -> np.ndarray:
    """A (N, D) float32 embedding set from a .npy file, memory-mapped."""
    try:
        vectors = np.load(vectors_path, mmap_mode="r")
    except FileNotFoundError:
        raise VectorIndexError(f"{vectors_path}: vectors file does not exist") from None
    except ValueError as exc:
        raise VectorIndexError(f"{vectors_path}: not a readable .npy array: {exc}") from None
    if vectors.ndim != 2 or vectors.dtype != np.float32:
        raise VectorIndexError(f"{vectors_path}: expected a (N, D) float32 array, got {vectors.shape} {vectors.dtype}")
    return vectors


def load_or_build(
    vectors_path: str | os.PathLike, frame_ids: np.ndarray | None = None,
    index_path: str | os.PathLike | None = None, config: IndexConfig = IndexConfig(),
) -> tuple[VectorIndex, bool]:
    """(index, rebuilt): the stored index when it matches the vectors file, else a fresh one saved.

    The stored index is reused when the SHA-256 of the vectors file, the frame ids and the build
    settings all match its metadata; otherwise it is rebuilt and written atomically.
    """
    vectors = load_vectors(vectors_path)
    index_path = Path(index_path) if index_path is not None else default_index_path(vectors_path)
    ids = np.arange(vectors.shape[0], dtype=np.int64) if frame_ids is None else np.asarray(frame_ids, dtype=np.int64)
    fingerprint = fingerprint_file(vectors_path)
    meta = read_meta(index_path)
    if (
        meta is not None
        and index_path.exists()
        and meta["fingerprint"] == fingerprint
        and meta["frame_ids_fingerprint"] == fingerprint_array(ids)
        and meta["settings"] == config.build_settings()
    ):
        return VectorIndex.load(index_path, config, vectors=vectors), False
    index = VectorIndex.build(vectors, ids, config, fingerprint=fingerprint)
    index.save(index_path)
    return index, True


def knn_graph(
    vectors: np.ndarray, k: int, index: VectorIndex | None = None, batch: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """(distances, rows): the k nearest other rows of every row with Euclidean distances, batched.

    Uses an exact L2 index over `vectors` unless an index over the same rows is given (inner
    products are converted to distances with the squared norms). Rows with fewer than k neighbours
    are padded with -1 / inf.
    """
    vectors = _check_vectors(vectors)
    size = vectors.shape[0]
    if k < 1:
        raise VectorIndexError(f"k: must be >= 1, got {k}")
    if index is None:
        index = VectorIndex.build(vectors, config=IndexConfig(metric="l2", kind="flat", gpu="auto"))
    elif len(index) != size:
        raise VectorIndexError(f"index: holds {len(index)} vectors but {size} rows were given")
    sq_norms = np.einsum("ij,ij->i", vectors, vectors)
    distances = np.full((size, k), np.inf, dtype=np.float32)
    neighbours = np.full((size, k), -1, dtype=np.int64)
    fetch = min(k + 1, size)
    for start in range(0, size, batch):
        stop = min(start + batch, size)
        found = index.search(vectors[start:stop], fetch)
        d2 = found.scores
        if index.config.metric == "ip":
            d2 = sq_norms[start:stop, None] + sq_norms[np.maximum(found.rows, 0)] - 2.0 * found.scores
        d2 = np.where(found.rows >= 0, np.maximum(d2, 0.0), np.inf)
        own = np.arange(start, stop)[:, None]
        not_self = (found.rows != own) & (found.rows >= 0)
        order = np.argsort(~not_self, axis=1, kind="stable")[:, :k]
        kept_rows = np.take_along_axis(found.rows, order, axis=1)
        kept_d2 = np.take_along_axis(d2, order, axis=1)
        valid = np.take_along_axis(not_self, order, axis=1)
        width = kept_rows.shape[1]
        neighbours[start:stop, :width] = np.where(valid, kept_rows, -1)
        distances[start:stop, :width] = np.where(valid, np.sqrt(kept_d2), np.inf)
    return distances, neighbours
