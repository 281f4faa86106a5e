"""The job system with real processes: `segloop worker` subprocesses, a real SQLite queue."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segloop.platform.core.errors import ValidationError
from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import jobs as job_store
from segloop.platform.jobs.registry import validate_params
from segloop.platform.services.jobs import submit_job

PLUGIN = str(Path(__file__).resolve().parents[1] / "job_plugins.py")
SEGLOOP = [sys.executable, "-m", "segloop.platform.cli"]


@pytest.fixture
def job_env(data_dir: Path, engine, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for worker subprocesses: test plugins, fast heartbeats."""
    monkeypatch.setenv("SEGLOOP_JOB_PLUGINS", PLUGIN)
    env = dict(os.environ, SEGLOOP_JOB_PLUGINS=PLUGIN, SEGLOOP_HEARTBEAT_SECONDS="0.2",
               SEGLOOP_STALE_AFTER_SECONDS="2", SEGLOOP_DATA_DIR=str(data_dir))
    return env


def _submit(engine, kind: str, params: dict) -> int:
    """Check and queue a job the way every caller does."""
    return submit_job(engine, kind, params).id


def _job(engine, job_id: int):
    """The job's current row."""
    with session_scope(engine) as session:
        return job_store.get_job(session, job_id)


def _wait_for(predicate, timeout: float = 60.0) -> None:
    """Poll until `predicate()` is true (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def test_params_are_validated_with_field_names() -> None:
    """Unknown fields, wrong types and unknown kinds are refused before queueing."""
    with pytest.raises(ValidationError, match="ingest params: bogus: unknown field"):
        validate_params("ingest", {"paths": ["a"], "bogus": 1})
    with pytest.raises(ValidationError, match="ingest params: fps: expected a number"):
        validate_params("ingest", {"paths": ["a"], "fps": "fast"})
    with pytest.raises(ValidationError, match="ingest params: paths\\[0\\]: expected a string"):
        validate_params("ingest", {"paths": [3]})
    with pytest.raises(ValidationError, match="job kind 'nope' is unknown"):
        validate_params("nope", {})
    assert validate_params("ingest", {"paths": ["a"], "fps": 2})["fps"] == 2.0


def test_strategy_parameters_are_checked_when_a_job_is_submitted(engine, tmp_path: Path) -> None:
    """A select or loop_round job whose strategy parameters are unknown, of the wrong type or out of their limits is
    refused at submission naming the field (before: queued, then failed in the worker with a TypeError)."""
    from segloop.platform.db.stores import projects

    with session_scope(engine) as session:
        projects.get_or_create_project(session, "p")
    refusals = [
        ("select", {"project": "p", "strategy": "random", "params": {"seed": "x"}},
         "select params: params: random: seed must be an integer, got 'x'"),
        ("select", {"project": "p", "strategy": "random", "params": {"bogus": 1}},
         r"select params: params: strategy 'random': unknown parameter\(s\) \['bogus'\]"),
        ("loop_round", {"project": "p", "strategy": "cluster", "strategy_params": {"niter": 0}},
         "loop_round params: strategy_params: cluster: niter must be >= 1, got 0"),
        ("select", {"project": "p", "strategy": "keyframes", "params": {"video_id": 999}},  # queued before
         "select params: params: video 999 does not exist"),
    ]
    for kind, params, message in refusals:
        with pytest.raises(ValidationError, match=message):
            _submit(engine, kind, params)
    with session_scope(engine) as session:
        assert job_store.list_jobs(session) == []
    assert _job(engine, _submit(engine, "select", {"project": "p", "strategy": "random", "params": {"seed": 3}}))


def test_listing_jobs_refuses_an_unknown_status_or_a_limit_below_one(engine, cli, tmp_path: Path) -> None:
    """`jobs list --status` must name a job status (before: any text gave an empty table and exit 0)."""
    queued = _submit(engine, "ingest", {"paths": [str(tmp_path)]})
    with session_scope(engine) as session:
        assert [j.id for j in job_store.list_jobs(session, status="queued")] == [queued]
        assert job_store.list_jobs(session, status="failed") == []
        with pytest.raises(ValidationError, match="'queud' is not a job status .*queued, running, succeeded"):
            job_store.list_jobs(session, status="queud")
        with pytest.raises(ValidationError, match="limit must be at least 1"):
            job_store.list_jobs(session, limit=0)
        assert [j.id for j in job_store.list_jobs(session, limit=10**23)] == [queued]  # no overflow in the driver
        assert job_store.list_jobs(session, offset=10**23) == []
    result = cli("jobs", "list", "--status", "queud")
    assert result.exit_code == 1 and "is not a job status" in result.output and "Traceback" not in result.output
    result = cli("jobs", "list", "--limit", str(10**23))
    assert result.exit_code == 0 and f" {queued} " in result.output and "Traceback" not in result.output


def test_a_key_given_twice_is_refused_not_overwritten(engine, cli) -> None:
    """`--params '{"budget": 5, "budget": 6}'` queued a budget of 6 and `select --param seed=1 --param seed=2` ran with
    seed 2, silently; both are refused naming the key, and the Jobs form's JSON field is refused by the spec."""
    from segloop.platform.services.forms import json_value

    result = cli("jobs", "submit", "select", "--params", '{"project": "p", "budget": 5, "budget": 6}')
    assert result.exit_code == 2 and "not valid JSON (key 'budget' is given twice)" in result.output, result.output
    result = cli("select", "--project", "p", "--strategy", "random", "--param", "seed=1", "--param", "seed=2")
    assert result.exit_code == 2 and "--param: 'seed' is given twice" in result.output, result.output
    assert json_value('{"seed": 1, "seed": 2}') == '{"seed": 1, "seed": 2}'  # left as text: not a mapping
    assert json_value('{"seed": 1, "nested": {"seed": 2}}') == {"seed": 1, "nested": {"seed": 2}}
    with session_scope(engine) as session:
        assert job_store.list_jobs(session) == []


def test_an_integer_beyond_64_bits_is_refused_at_submission_not_at_run_time(engine, cli) -> None:
    """A budget of 10**23 was queued, then failed in the worker on the database driver's overflow (and the CLI's
    `select --budget` printed that traceback); it is refused where it is given, naming the field and the range."""
    for submit in (lambda: cli("jobs", "submit", "select", "--params", '{"project": "p", "budget": 1' + "0" * 23 + "}"),
                   lambda: cli("select", "--project", "p", "--budget", str(10**23))):
        result = submit()
        assert result.exit_code == 1 and "budget: " in result.output, result.output
        assert "is out of range (integers lie between -9223372036854775808 and 9223372036854775807)" in result.output
        assert "Traceback" not in result.output
    with session_scope(engine) as session:
        assert job_store.list_jobs(session) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--kind", "ingest", "--kind", "ingset"], "job kind 'ingset' is unknown; known kinds: embed"),
    (["--poll", "0"], "poll: must be between 0.01 and 86400 seconds, got 0"),
    (["--poll", "inf"], "poll: must be between 0.01 and 86400 seconds, got inf"),
    (["--poll", "1e-300"], "poll: must be between 0.01 and 86400 seconds, got 1e-300"),
    (["--poll", "1e308"], "poll: must be between 0.01 and 86400 seconds, got 1e+308"),
    (["--max-jobs", "0"], "max-jobs: must be at least 1"),
])
def test_worker_refuses_options_it_could_never_work_under(tmp_path: Path, args, message) -> None:
    """A misspelt --kind used to poll forever for jobs no one can queue; a zero poll spun; nothing is created."""
    data_dir = tmp_path / "data"
    result = subprocess.run([*SEGLOOP, "worker", *args, "--exit-when-idle"], capture_output=True, text=True,
                            env=dict(os.environ, SEGLOOP_DATA_DIR=str(data_dir)), timeout=120)
    assert result.returncode == 1 and message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr and not data_dir.exists()


def test_worker_runs_an_ingest_job_with_log_and_progress(job_env, engine, synth_root: Path, data_dir: Path) -> None:
    """An ingest job submitted through the CLI is run by a worker process to success."""
    submitted = subprocess.run([*SEGLOOP, "jobs", "submit", "ingest", "--project", "j", "--params",
                                json.dumps({"paths": [str(synth_root / "videos")]})],
                               env=job_env, capture_output=True, text=True, check=True)
    job_id = int(submitted.stdout.split()[2])
    subprocess.run([*SEGLOOP, "worker", "--exit-when-idle"], env=job_env, check=True, capture_output=True, timeout=300)
    job = _job(engine, job_id)
    assert job.status == "succeeded", job.error
    assert job.result["frames"] == 24 and job.progress == 1.0 and job.attempts == 1
    assert Path(job.log_path).read_text().count("ingested:") == 2
    shown = subprocess.run([*SEGLOOP, "jobs", "show", str(job_id)], env=job_env, capture_output=True, text=True)
    assert "succeeded" in shown.stdout and "log: " in shown.stdout and "log tail" not in shown.stdout
    shown = subprocess.run([*SEGLOOP, "jobs", "show", str(job_id), "--log-lines", "5"], env=job_env,
                           capture_output=True, text=True)
    assert "log tail" in shown.stdout and "ingested:" in shown.stdout


def test_failed_ingest_job_is_not_retryable(job_env, engine, tmp_path: Path) -> None:
    """Bad input fails the job with the reason and no automatic retry."""
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    job_id = _submit(engine, "ingest", {"paths": [str(empty)]})
    subprocess.run([*SEGLOOP, "worker", "--exit-when-idle"], env=job_env, check=True, capture_output=True, timeout=120)
    job = _job(engine, job_id)
    assert job.status == "failed" and not job.retryable
    assert "empty.mp4: empty file" in job.error


def test_crashed_job_process_is_failed_retryable(job_env, engine) -> None:
    """A job process that dies without a result is marked failed and retryable by its worker."""
    job_id = _submit(engine, "test-crash", {"code": 5})
    subprocess.run([*SEGLOOP, "worker", "--exit-when-idle"], env=job_env, check=True, capture_output=True, timeout=120)
    job = _job(engine, job_id)
    assert (job.status, job.retryable) == ("failed", True)
    assert "exited with code 5" in job.error


def test_unexpected_handler_error_is_one_line_on_the_row_and_in_the_log(job_env, engine, cli) -> None:
    """A handler that raises: the row carries '<kind> job failed: <first line>' (no class name, no traceback);
    the traceback stays in the job's log; `jobs show` and `jobs list` print the one line."""
    job_id = _submit(engine, "test-fail", {})
    subprocess.run([*SEGLOOP, "worker", "--exit-when-idle"], env=job_env, check=True, capture_output=True, timeout=120)
    job = _job(engine, job_id)
    assert (job.status, job.retryable, job.error) == ("failed", True, "test-fail job failed: the disk is full")
    log = Path(job.log_path).read_text()
    assert "Traceback (most recent call last)" in log and "RuntimeError: the disk is full" in log
    shown = cli("jobs", "show", str(job_id), "--log-lines", "0").output
    assert "error: test-fail job failed: the disk is full" in shown and "RuntimeError" not in shown
    assert "disk is full" in cli("jobs", "list").output


def test_a_job_whose_project_went_missing_is_not_retried_as_if_the_failure_were_passing(job_env, engine) -> None:
    """A row deleted after submission (the project) fails the job for good, like any other input that is gone (it
    was marked retryable: NotFoundError is not a ValueError)."""
    job_id = _submit(engine, "test-fail", {"message": "project 'gone' does not exist", "missing": True})
    subprocess.run([*SEGLOOP, "worker", "--exit-when-idle"], env=job_env, check=True, capture_output=True, timeout=120)
    job = _job(engine, job_id)
    assert (job.status, job.retryable, job.error) == ("failed", False, "project 'gone' does not exist")


def test_a_job_failed_by_the_operating_system_names_the_reason_not_the_servers_path(tmp_path: Path) -> None:
    """A file the system could not read or write (a missing frame, a full disk) fails the job with the system's
    reason and no path (before: '<kind> job failed: [Errno 28] No space left on device: '/srv/...'')."""
    import errno

    from segloop.platform.jobs.runner import failure_message

    with pytest.raises(OSError) as missing:
        (tmp_path / "frames" / "00001.jpg").read_bytes()
    assert failure_message("embed", missing.value) == "could not read or write a file: no such file or directory"
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "frames" / "00002.jpg"))
    assert failure_message("ingest", full) == "could not read or write a file: no space left on device"
    assert failure_message("ingest", FileNotFoundError("upload.mp4 is gone")) == "upload.mp4 is gone"


@pytest.mark.parametrize("fail_on_stop", [False, True])
def test_cancel_stops_a_running_job(fail_on_stop: bool, job_env, engine) -> None:
    """`segloop jobs cancel` on a running job makes its worker stop it; it ends cancelled, with no traceback in its
    log, even when the stop surfaces as an error (pretrain's DataLoader workers die with the SIGTERM: it ended
    'failed', retryable, with 'DataLoader worker (pid ...) is killed')."""
    job_id = _submit(engine, "test-sleep", {"seconds": 60, "steps": 600, "fail_on_stop": fail_on_stop})
    worker = subprocess.Popen([*SEGLOOP, "worker", "--max-jobs", "1"], env=job_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _job(engine, job_id).progress > 0)
        subprocess.run([*SEGLOOP, "jobs", "cancel", str(job_id)], env=job_env, check=True, capture_output=True)
        worker.wait(timeout=60)
    finally:
        worker.kill()
    job = _job(engine, job_id)
    assert (job.status, job.error) == ("cancelled", None)
    assert "Traceback" not in Path(job.log_path).read_text()


def test_killed_worker_job_is_requeued_and_resumed_by_another_worker(job_env, engine, tmp_path: Path) -> None:
    """SIGKILL a worker mid-job: its job process ends too, the job goes stale, another worker re-runs it once."""
    marker = tmp_path / "runs.txt"
    job_id = _submit(engine, "test-sleep", {"seconds": 60, "steps": 600, "marker": str(marker)})
    worker = subprocess.Popen([*SEGLOOP, "worker"], env=job_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: _job(engine, job_id).progress > 0)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    _wait_for(lambda: len(marker.read_text().splitlines()) == 1 and _job_process_gone(marker))
    assert _job(engine, job_id).status == "running"
    time.sleep(2.5)
    subprocess.run([*SEGLOOP, "worker", "--exit-when-idle"], env=job_env, check=True, capture_output=True, timeout=60)
    done = _job(engine, job_id)
    assert (done.status, done.attempts) == ("succeeded", 2)
    assert len(marker.read_text().splitlines()) == 2


def _job_process_gone(marker: Path) -> bool:
    """Whether the job process recorded in the marker has exited (it must not outlive its worker)."""
    return _gone(_pids(marker)[0])


def _pids(marker: Path) -> list[int]:
    """The pids of the job processes that ran a test-sleep job (one line per run)."""
    return [int(line) for line in marker.read_text().splitlines()] if marker.exists() else []


def _gone(pid: int) -> bool:
    """Whether a process has exited."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_two_workers_run_every_job_exactly_once(job_env, engine, tmp_path: Path) -> None:
    """Two worker processes drain a queue of 10 jobs: each job runs once, by one of them."""
    markers = [tmp_path / f"job-{i}.txt" for i in range(10)]
    ids = [_submit(engine, "test-sleep", {"seconds": 0.2, "steps": 2, "marker": str(m)}) for m in markers]
    workers = [subprocess.Popen([*SEGLOOP, "worker", "--exit-when-idle", "--poll", "0.1"], env=job_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    for worker in workers:
        worker.wait(timeout=300)
    assert [len(m.read_text().splitlines()) for m in markers] == [1] * 10
    jobs = [_job(engine, i) for i in ids]
    assert {j.status for j in jobs} == {"succeeded"} and {j.attempts for j in jobs} == {1}


def test_pretrain_embed_select_jobs_chain(job_env, engine, synth_root: Path, data_dir: Path) -> None:
    """A worker runs pretrain, embed (with the new checkpoint) and select jobs on a project, in order."""
    from segloop.platform.core.settings import load_settings
    from segloop.platform.db.stores import selections
    from segloop.platform.media.ingest import IngestOptions, ingest_paths

    ingest_paths([synth_root / "videos"], IngestOptions(project="chain"), load_settings())
    tiny = {"data": {"global_size": 32, "local_size": 16, "clip_size": 32, "num_workers": 0},
            "run": {"batch_size": 2}}
    pretrain_id = _submit(engine, "pretrain", {"project": "chain", "config": tiny, "steps": 2})
    subprocess.run([*SEGLOOP, "worker", "--exit-when-idle"], env=job_env, check=True, capture_output=True, timeout=600)
    pretrained = _job(engine, pretrain_id)
    assert pretrained.status == "succeeded", pretrained.error
    embed_id = _submit(engine, "embed", {"project": "chain", "checkpoint_id": pretrained.result["checkpoint_id"],
                                         "img_size": 32})
    subprocess.run([*SEGLOOP, "worker", "--exit-when-idle"], env=job_env, check=True, capture_output=True, timeout=600)
    embedded = _job(engine, embed_id)
    assert embedded.status == "succeeded", embedded.error
    select_id = _submit(engine, "select", {"project": "chain", "strategy": "kcenter", "budget": 3,
                                           "embedding_set_id": embedded.result["embedding_set_id"]})
    subprocess.run([*SEGLOOP, "worker", "--exit-when-idle"], env=job_env, check=True, capture_output=True, timeout=600)
    selected = _job(engine, select_id)
    assert selected.status == "succeeded", selected.error
    with session_scope(engine) as session:
        run = selections.get_selection(session, selected.result["selection_id"])
        assert run.job_id == select_id and len(selections.selection_items(session, run.id)) == 3


def test_killed_pretrain_job_resumes_from_its_checkpoint(job_env, engine, synth_root: Path, data_dir: Path) -> None:
    """SIGKILL the worker of a running pretrain job after a checkpoint: another worker resumes it, one checkpoint
    row."""
    import json as jsonlib

    from segloop.platform.core.settings import load_settings
    from segloop.platform.db.stores import artifacts
    from segloop.platform.media.ingest import IngestOptions, ingest_paths

    ingest_paths([synth_root / "videos"], IngestOptions(project="resume"), load_settings())
    tiny = {"model": {"head_out_dim": 64, "head_hidden_dim": 32, "head_bottleneck_dim": 16},
            "data": {"global_size": 32, "local_size": 16, "clip_size": 32, "num_workers": 0},
            "run": {"batch_size": 2, "checkpoint_every": 2}}
    job_id = _submit(engine, "pretrain", {"project": "resume", "config": tiny, "steps": 40})
    run_dir = data_dir / "runs" / "pretrain" / "resume" / f"job-{job_id}"
    worker = subprocess.Popen([*SEGLOOP, "worker"], env=job_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (run_dir / "checkpoint.pth").is_file(), timeout=300)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    time.sleep(2.5)
    subprocess.run([*SEGLOOP, "worker", "--exit-when-idle"], env=job_env, check=True, capture_output=True, timeout=600)
    job = _job(engine, job_id)
    assert (job.status, job.attempts) == ("succeeded", 2), job.error
    assert "resuming from" in Path(job.log_path).read_text()
    steps = [jsonlib.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    assert steps == list(range(1, 41))
    with session_scope(engine) as session:
        rows = [c for c in artifacts.list_checkpoints(session) if c.job_id == job_id]
    assert len(rows) == 1 and rows[0].step == 40


def test_ctrl_c_on_a_worker_gives_its_job_back(job_env, engine, tmp_path: Path) -> None:
    """Ctrl-C on a busy worker stops the job's process, puts the job back in the queue and exits 130 (it exited 0
    and left the job 'running' until another worker reaped it, and a cancel asked meanwhile was ignored)."""
    marker = tmp_path / "runs.txt"
    job_id = _submit(engine, "test-sleep", {"seconds": 60, "steps": 600, "marker": str(marker)})
    worker = subprocess.Popen([*SEGLOOP, "worker"], env=job_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    _wait_for(lambda: _job(engine, job_id).progress > 0)
    worker.send_signal(signal.SIGINT)
    output, _ = worker.communicate(timeout=60)
    job = _job(engine, job_id)
    assert worker.returncode == 130 and "Traceback" not in output, output
    assert (job.status, job.worker_id) == ("queued", None) and "its worker was stopped" in job.message
    _wait_for(lambda: _gone(_pids(marker)[0]), timeout=15)
    log = Path(job.log_path).read_text()
    assert "stopped by its worker" in log and "Traceback" not in log


def test_a_worker_taken_for_lost_stops_its_run_and_the_new_run_s_result_stands(job_env, engine,
                                                                              tmp_path: Path) -> None:
    """A worker paused past the stale period (SIGSTOP; a network partition) loses its job to another worker; when
    it wakes, its heartbeat finds the job is no longer its own and it stops its run: one result, the new run's
    (both ran to the end and the stale run's result was kept)."""
    marker = tmp_path / "runs.txt"
    job_id = _submit(engine, "test-sleep", {"seconds": 8, "steps": 1, "marker": str(marker), "resume": False})
    first = subprocess.Popen([*SEGLOOP, "worker", "--exit-when-idle"], env=job_env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: len(_pids(marker)) == 1)
    first.send_signal(signal.SIGSTOP)
    second = subprocess.Popen([*SEGLOOP, "worker", "--max-jobs", "1", "--poll", "0.1"], env=job_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: len(_pids(marker)) == 2, timeout=30)
    finally:
        first.send_signal(signal.SIGCONT)
    output, _ = first.communicate(timeout=60)
    second.wait(timeout=60)
    stale_run, new_run = _pids(marker)
    done = _job(engine, job_id)
    assert (done.status, done.attempts, done.result["pid"]) == ("succeeded", 2, new_run), output
    assert "is no longer its own" in output and _gone(stale_run)


def test_sigterm_stops_an_idle_worker_at_once_and_a_busy_one_after_its_job(job_env, engine) -> None:
    """SIGTERM on an idle worker polling every 60 s took up to the poll to act; now it exits at once. A busy worker
    says it will stop after the job, finishes it, and exits."""
    idle = subprocess.Popen([*SEGLOOP, "worker", "--poll", "60"], env=job_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    time.sleep(3)
    started = time.monotonic()
    idle.send_signal(signal.SIGTERM)
    idle.communicate(timeout=30)
    assert idle.returncode == 0 and time.monotonic() - started < 10
    job_id = _submit(engine, "test-sleep", {"seconds": 3, "steps": 30})
    busy = subprocess.Popen([*SEGLOOP, "worker", "--poll", "60"], env=job_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: _job(engine, job_id).progress > 0)
    busy.send_signal(signal.SIGTERM)
    output, _ = busy.communicate(timeout=60)
    assert busy.returncode == 0 and f"stopping after job {job_id} ends" in output
    assert _job(engine, job_id).status == "succeeded"


def test_a_worker_claims_only_the_kinds_it_can_run(job_env, engine) -> None:
    """A worker without the plugin that defines a job's kind leaves the job queued for one that has it (it claimed
    the job and failed it for good: 'job kind ... is unknown')."""
    job_id = _submit(engine, "test-sleep", {"seconds": 0.1, "steps": 1})
    bare = {key: value for key, value in job_env.items() if key != "SEGLOOP_JOB_PLUGINS"}
    subprocess.run([*SEGLOOP, "worker", "--exit-when-idle"], env=bare, check=True, capture_output=True, timeout=120)
    assert (_job(engine, job_id).status, _job(engine, job_id).attempts) == ("queued", 0)
    subprocess.run([*SEGLOOP, "worker", "--exit-when-idle"], env=job_env, check=True, capture_output=True,
                   timeout=120)
    assert _job(engine, job_id).status == "succeeded"


def test_a_worker_that_cannot_write_job_logs_gives_the_job_back_and_says_why(job_env, engine,
                                                                            data_dir: Path) -> None:
    """A logs folder that cannot be written left the claimed job 'running' and the worker crashed with the path's
    error; now the job is back in the queue and the worker exits 1 saying why."""
    job_id = _submit(engine, "test-sleep", {"seconds": 0.1, "steps": 1})
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "logs").write_text("a file where the logs folder should be")
    result = subprocess.run([*SEGLOOP, "worker", "--exit-when-idle"], env=job_env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "cannot write job logs in" in result.stderr, result.stderr
    assert f"job {job_id} is back in the queue" in result.stderr and "Traceback" not in result.stderr
    assert _job(engine, job_id).status == "queued"


def test_a_worker_whose_database_file_is_deleted_stops_saying_so(database_url, job_env, data_dir: Path) -> None:
    """Deleting the SQLite file under a polling worker left it polling the deleted file's open handle forever (jobs
    queued in a restored file were never seen); it stops and says why."""
    if database_url is not None:
        pytest.skip("a database file is SQLite's")
    worker = subprocess.Popen([*SEGLOOP, "worker", "--poll", "0.1"], env=job_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (data_dir / "segloop.db").exists())
    time.sleep(1)
    for name in ("segloop.db", "segloop.db-wal", "segloop.db-shm"):
        (data_dir / name).unlink(missing_ok=True)
    _, errors = worker.communicate(timeout=30)
    assert worker.returncode == 1 and "segloop.db is gone (deleted or moved); the worker stops" in errors
    assert "Traceback" not in errors
