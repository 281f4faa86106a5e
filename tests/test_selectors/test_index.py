"""The FAISS index wrapper on real FAISS: exactness, persistence, rebuild rules, IVF-PQ recall, kNN graphs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from segloop.selectors.index import (
    IndexConfig,
    VectorIndex,
    VectorIndexError,
    default_index_path,
    default_nlist,
    default_pq_m,
    fingerprint_file,
    knn_graph,
    load_or_build,
)


def unit_vectors(size: int, dim: int, seed: int = 0) -> np.ndarray:
    """Random L2-normalised float32 vectors."""
    vectors = np.random.default_rng(seed).standard_normal((size, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def clustered_vectors(size: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    """Unit vectors drawn around a few random centres (structure that IVF-PQ can exploit)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, size)] + 0.35 * rng.standard_normal((size, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_flat_search_matches_numpy():
    """Exact inner-product search returns the NumPy top-k with ids mapped to frame ids."""
    vectors = unit_vectors(500, 16)
    ids = np.arange(500) * 10 + 3
    index = VectorIndex.build(vectors, ids)
    assert index.kind == "flat" and len(index) == 500 and not index.on_gpu
    queries = unit_vectors(7, 16, seed=1)
    found = index.search(queries, 5)
    expected = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(found.rows, expected)
    np.testing.assert_array_equal(found.frame_ids, ids[expected])
    np.testing.assert_allclose(found.scores, np.take_along_axis(queries @ vectors.T, expected, axis=1), rtol=1e-5)


def test_l2_metric_returns_squared_distances():
    """With metric l2 the scores are squared Euclidean distances, nearest first."""
    vectors = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]], dtype=np.float32)
    index = VectorIndex.build(vectors, config=IndexConfig(metric="l2"))
    found = index.search(np.array([[0.0, 0.0]], dtype=np.float32), 3)
    assert found.rows.tolist() == [[0, 2, 1]]
    np.testing.assert_allclose(found.scores, [[0.0, 1.0, 25.0]])


def test_search_by_id_excludes_itself():
    """"More frames like this one" never returns the frame itself, and finds its planted twin first."""
    vectors = unit_vectors(200, 8)
    vectors[17] = vectors[4] + 1e-3
    vectors[17] /= np.linalg.norm(vectors[17])
    ids = np.arange(200) + 1000
    index = VectorIndex.build(vectors, ids)
    found = index.search_by_id([1004, 1017, 1100], 5)
    assert found.frame_ids.shape == (3, 5)
    for own, row in zip([1004, 1017, 1100], found.frame_ids):
        assert own not in row.tolist()
    assert found.frame_ids[0, 0] == 1017 and found.frame_ids[1, 0] == 1004
    with_self = index.search_by_id([1100], 3, exclude_self=False)
    assert with_self.frame_ids[0, 0] == 1100
    with pytest.raises(VectorIndexError, match="99"):
        index.search_by_id([99], 3)


def test_k_larger_than_index_is_padded():
    """Asking for more neighbours than vectors pads with -1."""
    index = VectorIndex.build(unit_vectors(3, 4))
    found = index.search(unit_vectors(2, 4, seed=5), 5)
    assert (found.rows[:, 3:] == -1).all() and (found.frame_ids[:, 3:] == -1).all()
    assert sorted(found.rows[0, :3].tolist()) == [0, 1, 2]


def test_save_load_round_trip(tmp_path):
    """A saved index loads back with the same ids, kind and search results; files are complete."""
    vectors = unit_vectors(300, 12)
    ids = np.arange(300)[::-1] * 2
    index = VectorIndex.build(vectors, ids, fingerprint="abc")
    path = tmp_path / "emb.faiss"
    index.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.faiss", "emb.faiss.ids.npy", "emb.faiss.json"]
    loaded = VectorIndex.load(path)
    assert loaded.kind == "flat" and loaded.fingerprint == "abc"
    np.testing.assert_array_equal(loaded.frame_ids, ids)
    queries = unit_vectors(4, 12, seed=2)
    np.testing.assert_array_equal(loaded.search(queries, 6).frame_ids, index.search(queries, 6).frame_ids)
    np.testing.assert_array_equal(loaded.search_by_id([ids[3]], 4).frame_ids, index.search_by_id([ids[3]], 4).frame_ids)


def test_load_missing_index_is_a_clear_error(tmp_path):
    """Loading a path without an index names the path."""
    with pytest.raises(VectorIndexError, match="no index metadata"):
        VectorIndex.load(tmp_path / "missing.faiss")


def test_rebuild_only_when_vectors_change(tmp_path):
    """load_or_build reuses the stored index until the vectors file, ids or build settings change."""
    vectors_path = tmp_path / "set.npy"
    np.save(vectors_path, unit_vectors(400, 8))
    index_path = default_index_path(vectors_path)
    assert index_path == tmp_path / "set.faiss"
    index, rebuilt = load_or_build(vectors_path)
    assert rebuilt and index_path.exists()
    stamp = index_path.stat().st_mtime_ns
    meta = json.loads((tmp_path / "set.faiss.json").read_text())
    assert meta["fingerprint"] == fingerprint_file(vectors_path)

    again, rebuilt = load_or_build(vectors_path)
    assert not rebuilt and index_path.stat().st_mtime_ns == stamp
    assert again.vectors is not None and len(again) == 400

    _, rebuilt = load_or_build(vectors_path, frame_ids=np.arange(400) + 5)
    assert rebuilt
    _, rebuilt = load_or_build(vectors_path, frame_ids=np.arange(400) + 5)
    assert not rebuilt
    _, rebuilt = load_or_build(vectors_path, frame_ids=np.arange(400) + 5, config=IndexConfig(metric="l2"))
    assert rebuilt

    changed = unit_vectors(400, 8)
    changed[0] = -changed[0]
    np.save(vectors_path, changed)
    index, rebuilt = load_or_build(vectors_path, frame_ids=np.arange(400) + 5, config=IndexConfig(metric="l2"))
    assert rebuilt
    assert index.search(changed[:1], 1).frame_ids[0, 0] == 5


def test_search_settings_do_not_force_a_rebuild(tmp_path):
    """nprobe and rerank are search-time settings: changing them reuses the stored index."""
    vectors_path = tmp_path / "set.npy"
    np.save(vectors_path, clustered_vectors(3000, 16, 10))
    config = IndexConfig(kind="ivfpq", nlist=16, pq_m=4, pq_bits=4)
    _, rebuilt = load_or_build(vectors_path, config=config)
    assert rebuilt
    index, rebuilt = load_or_build(
        vectors_path, config=IndexConfig(kind="ivfpq", nlist=16, pq_m=4, pq_bits=4, nprobe=3, rerank=2)
    )
    assert not rebuilt and index.kind == "ivfpq" and index.nprobe == 3


def test_bad_vectors_file_is_named(tmp_path):
    """A missing or wrongly typed vectors file is reported with its path."""
    with pytest.raises(VectorIndexError, match="does not exist"):
        load_or_build(tmp_path / "none.npy")
    np.save(tmp_path / "ints.npy", np.zeros((4, 2), dtype=np.int32))
    with pytest.raises(VectorIndexError, match="float32"):
        load_or_build(tmp_path / "ints.npy")


def test_ivfpq_recall_sanity():
    """IVF-PQ on structured data: recall@10 vs exact well above chance, and re-ranking helps."""
    vectors = clustered_vectors(6000, 32, 20)
    queries = clustered_vectors(100, 32, 20, seed=9)
    exact = VectorIndex.build(vectors).search(queries, 10).rows
    approx = VectorIndex.build(vectors, config=IndexConfig(kind="ivfpq", nlist=40, nprobe=8, rerank=1))
    assert approx.kind == "ivfpq"
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx.search(queries, 10).rows, exact)])
    reranked = VectorIndex(approx.cpu_index, approx.frame_ids, IndexConfig(kind="ivfpq", nprobe=8, rerank=4), "ivfpq",
                           vectors=vectors)
    recall_rerank = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(reranked.search(queries, 10).rows, exact)])
    assert recall > 0.3
    assert recall_rerank >= recall and recall_rerank > 0.6


def test_auto_kind_switches_at_threshold():
    """kind 'auto' is exact below ivf_threshold and IVF-PQ at or above it."""
    vectors = clustered_vectors(2000, 16, 8)
    assert VectorIndex.build(vectors[:999], config=IndexConfig(ivf_threshold=1000)).kind == "flat"
    assert VectorIndex.build(vectors[:1000], config=IndexConfig(ivf_threshold=1000, nlist=8, pq_bits=4)).kind == "ivfpq"


def test_default_ivf_parameters():
    """nlist about 4 sqrt(N) with at least 39 training points per cell; pq_m a divisor near D / 4."""
    assert default_nlist(100_000) == 1264
    assert default_nlist(1000) == 25
    assert default_pq_m(384) == 96
    assert default_pq_m(30) == 6
    assert default_pq_m(7) == 1


def test_knn_graph_matches_brute_force():
    """Batched kNN graph equals the brute-force one, excludes self, and works from an IP index too."""
    vectors = unit_vectors(150, 6, seed=3)
    distances, rows = knn_graph(vectors, 4, batch=32)
    full = np.sqrt(((vectors[:, None].astype(np.float64) - vectors[None]) ** 2).sum(-1))
    np.fill_diagonal(full, np.inf)
    expected = np.argsort(full, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(distances, np.take_along_axis(full, expected, axis=1), atol=1e-3)
    ip_distances, ip_rows = knn_graph(vectors, 4, index=VectorIndex.build(vectors), batch=50)
    np.testing.assert_array_equal(ip_rows, expected)
    np.testing.assert_allclose(ip_distances, distances, atol=1e-3)


def test_knn_graph_on_tiny_sets_pads():
    """Two vectors and k = 3: one real neighbour each, the rest padded."""
    distances, rows = knn_graph(np.array([[0.0], [2.0]], dtype=np.float32), 3)
    assert rows.tolist() == [[1, -1, -1], [0, -1, -1]]
    assert distances[0, 0] == pytest.approx(2.0) and np.isinf(distances[0, 1])
