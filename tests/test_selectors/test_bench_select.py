"""`segloop bench select` on tiny sizes: it runs, prints its tables and writes complete JSON."""
from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from segloop.platform.bench.select import command, naive_kcenter, synthetic_embeddings
from segloop.selectors.diversity import kcenter_greedy


def test_naive_reference_agrees_with_kcenter_greedy():
    """The benchmark's naive baseline computes the same traversal as kcenter_greedy."""
    vectors = synthetic_embeddings(500, 8, seed=1)
    assert naive_kcenter(vectors, 15) == kcenter_greedy(vectors, 15).tolist()


def test_synthetic_embeddings_are_unit_norm_and_streams_differ():
    """Generated vectors are unit norm; another stream gives other points."""
    first = synthetic_embeddings(300, 6, seed=2)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(first, synthetic_embeddings(300, 6, seed=2, stream=1))


def test_bench_command_writes_json(tmp_path, monkeypatch):
    """A tiny run prints the tables and saves every figure the report needs."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    out = tmp_path / "select.json"
    result = CliRunner().invoke(command, [
        "--n", "2000", "--dim", "16", "--budget", "20", "--naive-picks", "5", "--full-picks", "5", "--torch-picks", "0",
        "--sizes", "2000", "--queries", "50", "--json", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert "k-center greedy" in result.output and "recall@10" in result.output
    payload = json.loads(out.read_text())
    kcenter = payload["kcenter"]
    assert kcenter["n"] == 2000 and kcenter["budget"] == 20
    assert kcenter["naive_agrees_on_measured_picks"] is True and kcenter["deterministic"] is True
    assert kcenter["full_numpy_agrees_on_measured_picks"] is True
    assert kcenter["peak_traced_ratio"] < 2.0
    search = payload["search"]
    assert [row["recall_at_10"] for row in search][0] == 1.0
    assert len(search) == 4 and all(row["qps"] > 0 for row in search)
    assert all(0.0 <= row["recall_at_10"] <= 1.0 for row in search)


def test_bench_rejects_bad_sizes():
    """Unparseable or too small sizes are a usage error naming --sizes."""
    result = CliRunner().invoke(command, ["--sizes", "abc"])
    assert result.exit_code != 0 and "--sizes" in result.output
