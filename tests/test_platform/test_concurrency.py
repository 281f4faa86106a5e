"""Real processes against one data dir: concurrent ingests (fresh and migrated), and ingests or job
processes killed with SIGKILL / SIGTERM mid-way; the next run leaves no staging folder behind."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from segloop.platform.db.engine import session_scope
from segloop.platform.db.orm import Frame, Video

from ..conftest import REPO_ROOT, SEGLOOP, run_segloop

STAGING_WAIT_SECONDS = 120
WAL_RACE_ROUNDS = 30
WAL_RACE_PROCESSES = 4


def _videos_and_frames(engine) -> tuple[list[str], int]:
    """(stored video hashes, frame rows)."""
    with session_scope(engine) as session:
        return (list(session.scalars(select(Video.sha256).order_by(Video.id))),
                int(session.scalar(select(func.count()).select_from(Frame))))


def _staging(settings) -> list[Path]:
    """Staging folders under frames/."""
    return sorted(settings.frames_dir.glob(".tmp-*")) if settings.frames_dir.exists() else []


def _start(*args: str, **popen) -> subprocess.Popen:
    """Start the real CLI in the background with the test's environment."""
    return subprocess.Popen([*SEGLOOP, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=REPO_ROOT, env=dict(os.environ), **popen)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic mp4 long enough (120 frames at 480x360) to be killed while it is being ingested."""
    from segloop.platform.media.synth import SynthOptions, synthesize

    root = tmp_path_factory.mktemp("long")
    synthesize(root, SynthOptions(videos=1, frames=120, width=480, height=360, seed=3))
    return next((root / "videos").glob("*.mp4"))


def _wait_for_staging(settings, process: subprocess.Popen, min_files: int = 5) -> Path:
    """The staging folder once it holds `min_files` frames (fails if the process ends first)."""
    deadline = time.monotonic() + STAGING_WAIT_SECONDS
    while time.monotonic() < deadline:
        for folder in _staging(settings):
            if len(list(folder.glob("*.jpg"))) >= min_files:
                return folder
        if process.poll() is not None:
            pytest.fail(f"the process ended before staging anything:\n{process.stdout.read()}")
        time.sleep(0.05)
    pytest.fail("no staging folder appeared")


def _first_write_at_barrier(url: str, barrier, results) -> None:
    """Open `url` with segloop's engine when every racer is ready, write once, report the journal mode or the error."""
    from segloop.platform.db.engine import make_engine

    barrier.wait()
    try:
        with make_engine(url).begin() as connection:
            connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS race (x INTEGER)")
            results.put(connection.exec_driver_sql("PRAGMA journal_mode").scalar())
    except Exception as exc:  # reported to the test, which prints it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_sqlite_file_at_once_all_switch_it_to_wal(tmp_path: Path) -> None:
    """Processes whose first connections to a new database file start at the same instant all succeed in WAL mode
    (SQLite fails one of two simultaneous switches at once, busy timeout or not: without the retry 26 and 35 of 400
    such connections failed, and this test failed 9 runs of 10)."""
    context = multiprocessing.get_context("fork")
    outcomes = []
    for round_index in range(WAL_RACE_ROUNDS):
        url = f"sqlite:///{tmp_path / f'race-{round_index}.db'}"
        barrier, results = context.Barrier(WAL_RACE_PROCESSES), context.Queue()
        racers = [context.Process(target=_first_write_at_barrier, args=(url, barrier, results))
                  for _ in range(WAL_RACE_PROCESSES)]
        for racer in racers:
            racer.start()
        outcomes += [results.get(timeout=120) for _ in racers]
        for racer in racers:
            racer.join(timeout=120)
    assert outcomes == ["wal"] * len(outcomes), sorted(set(outcomes))


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "migrated"])
def test_concurrent_ingests_store_each_video_once(fresh: bool, synth_root: Path, long_video: Path,
                                                  settings) -> None:
    """Two `segloop ingest` of the same inputs at once (SQLite and PostgreSQL): both exit 0 without a traceback,
    each video stored once; on a fresh data dir / empty database both also race to create the schema."""
    from segloop.platform.db.engine import get_engine
    from segloop.platform.db.migrate import upgrade

    engine = get_engine(settings)
    if not fresh:
        upgrade(engine)
    inputs = [str(long_video), *map(str, sorted((synth_root / "videos").glob("*.mp4")))]
    processes = [_start("ingest", *inputs, "--project", "race") for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output
        assert "Traceback" not in output and "already exists" not in output, output
    joined = "\n".join(outputs)
    assert joined.count("already ingested") == len(inputs), joined  # each input once by each process
    hashes, frames = _videos_and_frames(engine)
    assert len(hashes) == len(set(hashes)) == len(inputs)
    assert frames == 120 + 2 * 12
    assert len([p for p in settings.frames_dir.iterdir()]) == len(inputs)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_ingest_leaves_no_staging_after_the_next_run(how: signal.Signals, long_video: Path,
                                                            sqlite) -> None:
    """An ingest killed while writing frames: SIGTERM removes its staging at once (like Ctrl-C); after SIGKILL
    the next ingest removes it; no row was committed either way, and the next run stores the video once."""
    settings, engine = sqlite
    process = _start("ingest", str(long_video), "--project", "kill")
    staging = _wait_for_staging(settings, process)
    process.send_signal(how)
    output = process.communicate(timeout=120)[0]
    assert process.returncode != 0
    assert "Traceback" not in output, output
    if how == signal.SIGTERM:
        assert not staging.exists()
    else:
        assert staging.exists()  # what a killed process leaves behind ...
    assert _videos_and_frames(engine) == ([], 0)
    result = run_segloop("ingest", str(long_video), "--project", "kill")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _staging(settings) == []  # ... and the next run cleans up
    hashes, frames = _videos_and_frames(engine)
    assert len(hashes) == 1 and frames == 120
    assert len(list(settings.frames_dir.iterdir())) == 1


def test_staging_committed_before_a_kill_is_moved_into_place(long_video: Path, sqlite) -> None:
    """A staging folder whose video row was committed (killed between commit and rename) is renamed into place
    by the next run instead of being removed."""
    from segloop.platform.media.ingest import IngestOptions, clean_stale_staging, ingest_paths

    settings, engine = sqlite
    report = ingest_paths([long_video], IngestOptions(project="p"), settings)
    stored = next(p for p in settings.frames_dir.iterdir())
    stored.rename(settings.frames_dir / f".tmp-{stored.name}")  # as if killed right after the commit
    orphan = settings.frames_dir / ".tmp-orphan-123"
    orphan.mkdir()
    assert clean_stale_staging(settings) == (1, 1)
    assert sorted(p.name for p in settings.frames_dir.iterdir()) == [stored.name]
    assert len(list(stored.glob("*.jpg"))) == report.frames == 120


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_worker_killed_mid_job_leaves_no_staging_after_the_next_run(how: signal.Signals, long_video: Path,
                                                                    sqlite) -> None:
    """SIGKILL of the worker (its job process exits as an orphan) or SIGTERM of the job process (what cancel
    sends) while an ingest job stages frames: once the next worker ran, no staging folder is left."""
    from segloop.platform.db.stores import jobs as job_store

    settings, engine = sqlite
    submitted = run_segloop("jobs", "submit", "ingest", "--params",
                            f'{{"paths": ["{long_video}"], "project": "jobkill"}}')
    assert submitted.returncode == 0, submitted.stderr
    worker = _start("worker", "--max-jobs", "1", start_new_session=True)
    _wait_for_staging(settings, worker)
    with session_scope(engine) as session:
        job = job_store.list_jobs(session, limit=1)[0]
    if how == signal.SIGKILL:
        worker.kill()
    else:
        children = subprocess.run(["pgrep", "-f", f"segloop.platform.jobs.runner {job.id}"],
                                  capture_output=True, text=True).stdout.split()
        assert children, "the job process was not found"
        for pid in children:
            os.kill(int(pid), signal.SIGTERM)
    worker.communicate(timeout=120)
    deadline = time.monotonic() + 30
    while subprocess.run(["pgrep", "-f", f"segloop.platform.jobs.runner {job.id}"],
                         capture_output=True).returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.2)  # the orphaned job process notices its worker is gone
    if how == signal.SIGTERM:
        assert _staging(settings) == []  # the interrupted job removed its own staging folder
    after = run_segloop("worker", "--exit-when-idle", env={"SEGLOOP_STALE_AFTER_SECONDS": "3600"})
    assert after.returncode == 0, after.stdout + after.stderr
    assert _staging(settings) == []
    hashes, frames = _videos_and_frames(engine)  # an orphaned job may finish before it notices its worker is gone
    assert len(hashes) <= 1 and frames == 120 * len(hashes)
    assert len(list(settings.frames_dir.iterdir())) == len(hashes)  # and every stored video has its folder
