"""Stores on a real migrated SQLite database: annotations with optimistic locking, jobs queue claims."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from segloop.platform.db.engine import session_scope
from segloop.platform.db.entities import NewFrame, NewVideo
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, projects
from segloop.platform.db.stores import jobs as job_store
from segloop.platform.db.stores.annotations import ConflictError


@pytest.fixture
def frame_id(engine) -> int:
    """One video with one 4x6 frame."""
    with session_scope(engine) as session:
        project = projects.get_or_create_project(session, "p")
        video = footage.add_video(session, project.id, NewVideo(
            name="v", source_path="/x/v.mp4", source_kind="video", sha256="0" * 64, fps=24.0, sample_fps=None,
            source_frame_count=1, width=6, height=4, stored_width=6, stored_height=4, duration=1 / 24, codec="h264",
            storage_dir="frames/v", frames=[NewFrame(0, 0, 0.0, "frames/v/00000.jpg", "frames/v/t.jpg", -5, 0)]))
        return footage.list_frames(session, video.id)[0].id


def _mask(value: int) -> np.ndarray:
    """A 4x6 mask with `value` pixels set."""
    mask = np.zeros((4, 6), bool)
    mask.reshape(-1)[:value] = True
    return mask


def test_annotation_versions_and_stale_save(engine, frame_id: int) -> None:
    """Saves from the current version succeed; a save from a stale version is refused, nothing overwritten."""
    with session_scope(engine) as session:
        first = annotation_store.save_annotation(session, frame_id, 1, _mask(3), "manual", expected_version=0)
        second = annotation_store.save_annotation(session, frame_id, 1, _mask(5), "manual", expected_version=1)
    assert (first.version, second.version, second.area) == (1, 2, 5)
    with pytest.raises(ConflictError, match="you edited version 1, but version 2 was saved"):
        with session_scope(engine) as session:
            annotation_store.save_annotation(session, frame_id, 1, _mask(7), "manual", expected_version=1)
    with session_scope(engine) as session:
        latest = annotation_store.latest_annotations(session, frame_id)
    assert [(a.version, a.area) for a in latest] == [(2, 5)]
    np.testing.assert_array_equal(annotation_store.annotation_mask(latest[0]), _mask(5))


def test_concurrent_saves_of_the_same_version_one_wins(engine, frame_id: int) -> None:
    """Two editors saving from version 0 at once: exactly one new version, the other gets a conflict.

    On PostgreSQL both transactions read version 0 before either writes (the unique key decides); SQLite
    transactions take the write lock at BEGIN, so there the second one reads version 1 and is refused."""
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    overlap = engine.dialect.name == "postgresql"

    def save(area: int) -> None:
        try:
            if not overlap:
                barrier.wait()
            with session_scope(engine) as session:
                annotation_store.latest_version(session, frame_id, 2)
                if overlap:
                    barrier.wait()
                annotation_store.save_annotation(session, frame_id, 2, _mask(area), "manual", expected_version=0)
            outcomes.append("saved")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=save, args=(a,)) for a in (4, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "saved"]
    with session_scope(engine) as session:
        assert annotation_store.latest_version(session, frame_id, 2) == 1


def test_concurrent_imports_and_new_classes_both_succeed(engine, frame_id: int) -> None:
    """Two imports appending a version of one object, or creating one class, at once: on PostgreSQL one failed with
    a traceback (the unique key); an append now follows the version the other saved, a class found is shared."""
    from segloop.platform.core.errors import user_message

    barrier, outcomes, overlap = threading.Barrier(2, timeout=60), [], engine.dialect.name == "postgresql"

    def append_and_add_class(area: int) -> None:
        if not overlap:  # SQLite transactions take the write lock at BEGIN: they run one after the other
            barrier.wait()
        with session_scope(engine) as session:
            annotation_store.latest_version(session, frame_id, 3)  # both read before either writes (PostgreSQL)
            projects.list_label_classes(session, 1)
            if overlap:
                barrier.wait()
            saved = annotation_store.save_annotation(session, frame_id, 3, _mask(area), "imported")
            outcomes.append((saved.version, projects.get_or_create_label_class(session, 1, "car").id))

    threads = [threading.Thread(target=append_and_add_class, args=(a,)) for a in (4, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v for v, _ in outcomes) == [1, 2] and len({c for _, c in outcomes}) == 1, outcomes
    assert user_message(ConflictError("frame 1 object 1: another save of version 2 won; reload")) is not None


def test_annotation_input_is_validated(engine, frame_id: int) -> None:
    """Unknown sources, statuses, object ids and frames are refused with the field named."""
    with session_scope(engine) as session:
        with pytest.raises(ValueError, match="annotation source"):
            annotation_store.save_annotation(session, frame_id, 1, _mask(1), "guess")
        with pytest.raises(ValueError, match="object_id: 0 out of range"):
            annotation_store.save_annotation(session, frame_id, 0, _mask(1), "manual")
        with pytest.raises(LookupError, match="frame 999 does not exist"):
            annotation_store.save_annotation(session, 999, 1, _mask(1), "manual")


def test_job_claims_are_exclusive(engine) -> None:
    """Many threads claiming at once: each job is claimed exactly once."""
    with session_scope(engine) as session:
        ids = [job_store.submit_job(session, "ingest", {"paths": ["x"]}).id for _ in range(12)]
    claimed: list[int] = []
    lock = threading.Lock()

    def claim(worker: str) -> None:
        while True:
            with session_scope(engine) as session:
                job = job_store.claim_next_job(session, worker)
            if job is None:
                return
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == ids


def test_job_lifecycle_cancel_retry_and_stale(engine) -> None:
    """Queued cancel is immediate; a job without heartbeat is re-queued while attempts remain, then failed."""
    with session_scope(engine) as session:
        a = job_store.submit_job(session, "ingest", {}).id
        b = job_store.submit_job(session, "ingest", {}, max_attempts=2).id
        assert job_store.request_cancel(session, a).status == "cancelled"
        claimed = job_store.claim_next_job(session, "w")
        assert claimed.id == b and claimed.attempts == 1
        assert job_store.reap_stale_jobs(session, stale_after_seconds=3600) == []
        assert job_store.reap_stale_jobs(session, stale_after_seconds=-1) == [b]
        requeued = job_store.get_job(session, b)
        assert (requeued.status, requeued.worker_id) == ("queued", None) and "re-queued" in requeued.message
        assert job_store.claim_next_job(session, "w2").attempts == 2
        assert job_store.reap_stale_jobs(session, stale_after_seconds=-1) == [b]
        failed = job_store.get_job(session, b)
        assert (failed.status, failed.retryable) == ("failed", True) and "gave up after 2 attempts" in failed.error
        assert job_store.retry_job(session, b).status == "queued"
        with pytest.raises(ValueError, match="only failed or cancelled"):
            job_store.retry_job(session, b)
        assert job_store.claim_next_job(session, "w3").attempts == 3
        assert job_store.get_job(session, b).max_attempts == 3 + 2  # a manual retry gives a fresh allowance


def test_a_run_writes_to_its_job_only_while_the_claim_is_its_own(engine) -> None:
    """A worker taken for lost (its heartbeat lapsed: paused, partitioned) must not overwrite the run that replaced
    it: its heartbeat answers LOST and its result is not recorded (the stale run's result used to become the job's,
    while both ran at once)."""
    with session_scope(engine) as session:
        job_id = job_store.submit_job(session, "ingest", {}).id
        first = job_store.Claim.of(job_store.claim_next_job(session, "a"))
        assert job_store.heartbeat(session, first) == job_store.RUNNING
        job_store.reap_stale_jobs(session, stale_after_seconds=-1)
        second = job_store.Claim.of(job_store.claim_next_job(session, "b"))
        assert job_store.heartbeat(session, first) == job_store.LOST
        job_store.report_progress(session, first, 0.9, "stale")
        assert not job_store.finish_job(session, first, {"run": "first"})
        assert not job_store.fail_job(session, first, "stale", retryable=True)
        assert job_store.release_job(session, first, "stopped") is None
        assert job_store.get_job(session, job_id).message == "started"
        assert job_store.finish_job(session, second, {"run": "second"})
        assert job_store.heartbeat(session, second) == job_store.RUNNING  # settled by itself: its process is exiting
        done = job_store.get_job(session, job_id)
        assert (done.status, done.result, done.worker_id, done.attempts) == ("succeeded", {"run": "second"}, "b", 2)


def test_a_cancel_outlives_a_lost_worker(engine) -> None:
    """A job whose cancel was requested while its worker was dead is cancelled when reaped, never run again (it was
    re-queued and run to success); a cancel of a job whose worker is already lost takes effect at once."""
    with session_scope(engine) as session:
        a = job_store.submit_job(session, "ingest", {}).id
        job_store.claim_next_job(session, "w")
        assert job_store.request_cancel(session, a, stale_after_seconds=3600).status == "running"
        assert job_store.reap_stale_jobs(session, stale_after_seconds=-1) == [a]
        assert job_store.get_job(session, a).status == "cancelled"
        assert job_store.claim_next_job(session, "w2") is None
        b = job_store.submit_job(session, "ingest", {}).id
        job_store.claim_next_job(session, "w2")
        cancelled = job_store.request_cancel(session, b, stale_after_seconds=-1)
        assert (cancelled.status, cancelled.message) == ("cancelled", "cancelled (its worker was lost)")


def test_a_stopped_run_is_released_cancelled_requeued_or_failed(engine) -> None:
    """A worker that stops mid-job (Ctrl-C) gives the job back: re-queued while attempts remain, failed after, and
    cancelled when that was requested (it was left 'running' until another worker reaped it)."""
    with session_scope(engine) as session:
        job_id = job_store.submit_job(session, "ingest", {}, max_attempts=2).id
        claim = job_store.Claim.of(job_store.claim_next_job(session, "w"))
        assert job_store.release_job(session, claim, "its worker was stopped") == "queued"
        claim = job_store.Claim.of(job_store.claim_next_job(session, "w"))
        assert job_store.release_job(session, claim, "its worker was stopped") == "failed"
        assert "its worker was stopped; gave up after 2 attempts" in job_store.get_job(session, job_id).error
        job_store.retry_job(session, job_id)
        claim = job_store.Claim.of(job_store.claim_next_job(session, "w"))
        job_store.request_cancel(session, job_id)
        assert job_store.release_job(session, claim, "its worker was stopped") == "cancelled"
        job_store.retry_job(session, job_id)
        claim = job_store.Claim.of(job_store.claim_next_job(session, "w"))
        job_store.request_cancel(session, job_id)
        job_store.fail_job(session, claim, "DataLoader worker killed by signal", retryable=True)
        job_store.settle_cancelled(session, claim)
        settled = job_store.get_job(session, job_id)
        assert (settled.status, settled.error) == ("cancelled", None)


def test_frame_scores_newest_value_wins(engine, frame_id: int) -> None:
    """Signals are appended per run; readers get the newest value per frame."""
    from segloop.platform.db.stores import scores

    with session_scope(engine) as session:
        project_id = projects.get_project(session, "p").id
        scores.add_frame_scores(session, "vos_confidence", {frame_id: 0.25})
        scores.add_frame_scores(session, "vos_confidence", {frame_id: 0.75})
        scores.add_frame_scores(session, "entropy", {frame_id: 1.5})
        assert scores.latest_frame_scores(session, project_id, "vos_confidence") == {frame_id: 0.75}
        assert scores.score_names(session, project_id) == ["entropy", "vos_confidence"]
        assert scores.latest_frame_scores(session, project_id, "missing") == {}
