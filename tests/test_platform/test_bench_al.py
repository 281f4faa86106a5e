"""Active-learning and keyframe benchmarks on the tiny synthetic root: JSON schema, budgets, plot."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from segloop.platform.bench.active_learning import ALOptions, BenchError, parse_budget, run_benchmark

from ..conftest import invoke_segloop as _cli  # the benchmarks need no database


def test_parse_budget() -> None:
    """Percentages of all frames (at least one frame) or absolute counts; nonsense is named."""
    assert parse_budget("2%", 190) == ("2%", 4)
    assert parse_budget("1%", 24) == ("1%", 1)
    assert parse_budget("5", 24) == ("5", 5)
    with pytest.raises(BenchError, match="--budgets"):
        parse_budget("two", 24)
    for everything in ("100%", "24", "99"):  # nothing left to score: the result was NaN, written as such in the JSON
        with pytest.raises(BenchError, match=rf"--budgets: '{everything}' labels all 24 frames of the root"):
            parse_budget(everything, 24)


@pytest.mark.parametrize("folds", [1, 25])
def test_a_ceiling_that_cannot_be_cross_validated_is_refused_before_any_work(synth_root: Path, tmp_path: Path,
                                                                               folds: int) -> None:
    """1 fold was skipped without a word, more folds than frames gave a NaN ceiling after the whole run."""
    with pytest.raises(BenchError, match=rf"--ceiling-folds: {folds} folds of 24 frames cannot"):
        run_benchmark(synth_root, ALOptions(strategies=["random"], budgets=["1"], seeds=1, ceiling_folds=folds),
                      tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_active_learning_json_schema_and_plot(synth_root: Path, data_dir: Path, tmp_path: Path) -> None:
    """Two strategies, one budget, one seed: one result row each, a ceiling, a PNG plot."""
    out, png = tmp_path / "al.json", tmp_path / "al.png"
    result = _cli("bench", "active-learning", str(synth_root), "--strategies", "random,hybrid", "--budgets", "20%",
                  "--seeds", "1", "--short-side", "64", "--min-steps", "40", "--ceiling-folds", "2",
                  "--json", str(out), "--plot", str(png))
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert document["task"] == "vss" and document["metric"] == "mIoU"
    assert 0.0 <= document["ceiling"] <= 1.0
    rows = document["results"]
    assert [(r["strategy"], r["budget"], r["seed"], r["labeled_frames"]) for r in rows] == [
        ("random", "20%", 0, 5), ("hybrid", "20%", 0, 5)]
    assert all(0.0 <= r["value"] <= 1.0 for r in rows)
    assert "round 2" in rows[1]["how"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_active_learning_vos_task(synth_root: Path) -> None:
    """The VOS task propagates the picked frames per video and reports J&F."""
    document = run_benchmark(synth_root, ALOptions(task="vos", strategies=["uniform"], budgets=["4"], seeds=1,
                                                   short_side=64, min_steps=10, prop_short_side=64, prop_radius=3,
                                                   ceiling_folds=0))
    assert document["metric"] == "J&F" and document["ceiling"] is None
    assert document["results"][0]["labeled_frames"] == 4 and 0.0 <= document["results"][0]["value"] <= 1.0


def test_keyframes_json_schema(synth_root: Path, data_dir: Path, tmp_path: Path) -> None:
    """Per strategy and K: J&F over the sequences and per sequence; K frames picked per video."""
    out = tmp_path / "kf.json"
    result = _cli("bench", "keyframes", str(synth_root), "--budgets", "1,2", "--short-side", "64", "--radius", "3",
                  "--refine", "--refine-steps", "5", "--json", str(out))
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    rows = document["results"]
    assert [(r["strategy"], r["budget"]) for r in rows] == [
        (s, k) for k in (1, 2) for s in ("first", "uniform", "keyframes")]
    for row in rows:
        assert set(row["sequences"]) == {"synth-007-000", "synth-007-001"}
        assert 0.0 <= row["J&F"] <= 1.0 and 0.0 <= row["J&F_refined"] <= 1.0
        assert all(len(picks) == row["budget"] for picks in row["keyframes"].values())
    assert rows[0]["keyframes"]["synth-007-000"] == [0] and rows[4]["keyframes"]["synth-007-000"] == [0, 6]


def test_keyframes_with_the_memory_model(synth_root: Path, data_dir: Path, tmp_path: Path) -> None:
    """--memory trains the memory VOS model per strategy and K (the steps asked for) and scores its masks."""
    out = tmp_path / "kf.json"
    result = _cli("bench", "keyframes", str(synth_root), "--budgets", "2", "--strategies", "uniform,keyframes",
                  "--short-side", "64", "--radius", "3", "--memory", "--memory-steps", "3", "--json", str(out))
    assert result.exit_code == 0, result.output
    assert result.output.count("memory VOS model: 3 steps") == 2 and "J&F memory model" in result.output
    for row in json.loads(out.read_text())["results"]:
        assert set(row["sequences_memory"]) == {"synth-007-000", "synth-007-001"}
        assert all(0.0 <= value <= 1.0 for value in row["sequences_memory"].values())
        assert row["J&F_memory"] == pytest.approx(sum(row["sequences_memory"].values()) / 2)


def test_bad_root_is_named(tmp_path: Path) -> None:
    """A folder without the DAVIS layout is refused with its path."""
    with pytest.raises(BenchError, match="DAVIS-layout"):
        run_benchmark(tmp_path, ALOptions(strategies=["random"], budgets=["1"], seeds=1))


@pytest.mark.parametrize(("options", "message"), [
    (ALOptions(strategies=["random", "nope"]), "--strategies: strategy 'nope' is unknown; known strategies: "),
    (ALOptions(first_round="nope"), "--first-round: strategy 'nope' is unknown; known strategies: "),
])
def test_an_unknown_strategy_is_refused_naming_its_option(tmp_path: Path, options, message) -> None:
    """Which option holds the unknown name is said (the first round's was reported as if it were a strategy)."""
    with pytest.raises(BenchError, match=f"^{message}"):
        run_benchmark(tmp_path, options)
