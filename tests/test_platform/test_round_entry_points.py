"""`segloop demo`, `segloop loop round`, the loop_round job and `segloop bench active-learning` run one round function.

Each entry point runs for real (CLI in-process, the job through the runner, the benchmark's own harness) on the
same synthetic frames in its own data dir, with the backbone's random init seeded alike. The demo, the CLI and the
job run without ground truth (the round stops after selecting, waiting for humans: no training, so the test stays
short); the benchmark plays the annotator. All four must embed, select and record the same picks, and the
benchmark's labels must be exactly its picks.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from segloop.platform.core.davis import DavisLayout
from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.db.engine import get_engine, session_scope

from ..conftest import invoke_segloop

BUDGET = 4


def _seeded() -> None:
    """The same random-init backbone in every entry point (embeddings decide the picks)."""
    import torch

    torch.manual_seed(0)


def _cli(*args: str):
    """Run `segloop` in-process; the command must succeed."""
    result = invoke_segloop(*args)
    assert result.exit_code == 0, result.output
    return result


def _use_data_dir(monkeypatch: pytest.MonkeyPatch, path: Path) -> Settings:
    """Point every segloop call of the test at a fresh data dir (SQLite under it)."""
    monkeypatch.setenv("SEGLOOP_DATA_DIR", str(path))
    monkeypatch.delenv("SEGLOOP_DATABASE_URL", raising=False)
    return load_settings()


def _awaiting_round(settings: Settings, project: str) -> list[tuple[str, int]]:
    """The picks, as (video, frame index), of the project's only selection run: a round waiting for labels."""
    from segloop.platform.db.stores import artifacts, footage, projects, selections
    from segloop.platform.services.selection import labeled_frame_ids

    with session_scope(get_engine(settings)) as session:
        info = projects.get_project(session, project)
        (run,) = selections.list_selections(session, info.id)
        assert (run.strategy, run.budget) == ("kcenter", BUDGET)
        assert not labeled_frame_ids(session, info.id) and not artifacts.list_checkpoints(session, info.id)
        keys = []
        for item in selections.selection_items(session, run.id):
            frame = footage.get_frame(session, item.frame_id)
            keys.append((footage.get_video(session, frame.video_id).name, frame.index))
    return sorted(keys)


def test_demo_cli_job_and_bench_share_the_round(synth_root: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Same frames, seed and strategy: the same picks through all four entry points; the bench labels exactly them."""
    from segloop.platform.bench.active_learning import ALOptions, run_benchmark
    from segloop.platform.db.migrate import ensure_db
    from segloop.platform.db.stores import jobs as job_store
    from segloop.platform.jobs.registry import validate_params
    from segloop.platform.jobs.runner import run_job

    frames = DavisLayout(synth_root).images_dir

    settings = _use_data_dir(monkeypatch, tmp_path / "demo")
    _seeded()
    result = _cli("demo", "--footage", str(frames), "--pretrain-minutes", "0", "--budget", str(BUDGET))
    assert "label the picked frames on the Label page" in result.output
    demo = _awaiting_round(settings, "demo")

    settings = _use_data_dir(monkeypatch, tmp_path / "cli")
    _cli("ingest", str(frames), "--project", "p")
    _seeded()
    result = _cli("loop", "round", "--project", "p", "--budget", str(BUDGET))
    assert "awaiting labels" in result.output
    cli = _awaiting_round(settings, "p")

    settings = _use_data_dir(monkeypatch, tmp_path / "job")
    _cli("ingest", str(frames), "--project", "p")
    with session_scope(ensure_db()) as session:
        job_id = job_store.submit_job(session, "loop_round", validate_params(
            "loop_round", {"project": "p", "budget": BUDGET})).id
    with session_scope(ensure_db()) as session:
        assert job_store.claim_next_job(session, "test-worker").id == job_id
    _seeded()
    assert run_job(job_id) == 0
    with session_scope(ensure_db()) as session:
        assert job_store.get_job(session, job_id).result["status"] == "awaiting labels"
    job = _awaiting_round(settings, "p")

    _use_data_dir(monkeypatch, tmp_path / "bench")
    _seeded()
    document = run_benchmark(synth_root, ALOptions(strategies=["kcenter"], budgets=[str(BUDGET)], seeds=1,
                                                   short_side=64, min_steps=10, ceiling_folds=0),
                             work_dir=tmp_path / "bench-work")
    (row,) = document["results"]
    bench = sorted(tuple(key) for key in row["picked"])

    assert len(cli) == BUDGET
    assert demo == cli
    assert job == cli
    assert bench == cli and row["labeled_frames"] == BUDGET
