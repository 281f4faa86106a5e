"""Library services: filters by video, label status and near-duplicate group; pages; job log tails."""
from __future__ import annotations

from collections import Counter
from datetime import UTC
from pathlib import Path

import pytest

from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import footage
from segloop.platform.db.stores import jobs as job_store
from segloop.platform.services import labeling, library


def label(engine, frame_id: int, status: str, size: int = 3) -> None:
    """Save a small square object-1 mask on a frame with a status."""
    loaded = labeling.load_frame_labels(engine, frame_id)
    labels = loaded.labels.copy()
    labels[:size, :size] = 1
    labeling.save_frame_labels(engine, frame_id, labels, loaded.versions, status=status)


def test_label_status_filters_and_counts(engine, footage_project) -> None:
    """One frame per status; each filter finds exactly its frames, and the page shows the statuses."""
    video_id = footage_project.video_ids[0]
    with session_scope(engine) as session:
        frames = footage.list_frames(session, video_id)
    label(engine, frames[0].id, "draft")
    label(engine, frames[1].id, "submitted")
    label(engine, frames[2].id, "reviewed")
    base = library.FrameFilter(project_id=footage_project.project_id, video_id=video_id)
    counts = {s: library.count_filtered_frames(engine, library.FrameFilter(footage_project.project_id, video_id, s))
              for s in library.LABEL_FILTERS}
    assert counts == {"any": 12, "unlabeled": 9, "labeled": 3, "draft": 1, "submitted": 1, "reviewed": 1}
    page = library.browse_frames(engine, base, 0, 4)
    assert [(f.frame.index, f.status) for f in page] == [(0, "draft"), (1, "submitted"), (2, "reviewed"),
                                                          (3, "unlabeled")]
    project_id = footage_project.project_id
    reviewed = library.browse_frames(engine, library.FrameFilter(project_id, video_id, "reviewed"), 0, 10)
    assert [f.frame.index for f in reviewed] == [2]
    # A newer draft version of the reviewed frame makes it a draft frame again.
    label(engine, frames[2].id, "draft", size=4)
    assert library.count_filtered_frames(engine, library.FrameFilter(project_id, video_id, "draft")) == 2


def test_project_wide_paging_and_duplicate_groups(engine, footage_project) -> None:
    """All videos page in video then frame order; a duplicate-group filter keeps only that group's frames."""
    everything = library.FrameFilter(project_id=footage_project.project_id)
    assert library.count_filtered_frames(engine, everything) == 24
    second_page = library.browse_frames(engine, everything, 1, 10)
    assert [(f.video_name.endswith("000"), f.frame.index) for f in second_page][:2] == [(True, 10), (True, 11)]
    assert second_page[2].frame.video_id == footage_project.video_ids[1] and second_page[2].frame.index == 0
    video_id = footage_project.video_ids[0]
    with session_scope(engine) as session:
        frames = footage.list_frames(session, video_id)
    groups = library.duplicate_groups(engine, video_id)
    sizes = Counter(f.dup_group for f in frames)
    assert groups == sorted(((g, n) for g, n in sizes.items() if n > 1), key=lambda gn: (-gn[1], gn[0]))
    group = frames[5].dup_group
    flt = library.FrameFilter(footage_project.project_id, video_id, "any", group)
    assert {f.frame.id for f in library.browse_frames(engine, flt, 0, 50)} == {f.id for f in frames
                                                                                  if f.dup_group == group}
    with pytest.raises(library.LibraryError, match="choose a video first"):
        library.count_filtered_frames(engine, library.FrameFilter(footage_project.project_id, None, "any", group))
    with pytest.raises(library.LibraryError, match="label status: 'done'"):
        library.count_filtered_frames(engine, library.FrameFilter(footage_project.project_id, None, "done"))


def test_frame_detail_lists_newest_masks(engine, footage_project) -> None:
    """The viewer's detail has the frame's newest mask per object and its status."""
    with session_scope(engine) as session:
        frame = footage.list_frames(session, footage_project.video_ids[1], limit=1)[0]
    label(engine, frame.id, "draft")
    label(engine, frame.id, "submitted")
    detail = library.frame_detail(engine, frame.id)
    assert [(a.object_id, a.version, a.status) for a in detail.annotations] == [(1, 1, "submitted")]
    assert detail.status == "submitted" and detail.video.id == footage_project.video_ids[1]


def test_job_log_tail_reads_the_end(file_settings, tmp_path: Path) -> None:
    """Only the last lines come back, and a partial first line of the read window is dropped."""
    from dataclasses import replace
    from datetime import datetime

    from segloop.platform.db.entities import JobInfo

    log = tmp_path / "job.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    job = JobInfo(1, "ingest", {}, "running", 0.5, "", str(log), None, None, 1, 3, None, False, False, {}, None,
                  datetime.now(UTC), None, None)
    assert library.job_log_tail(file_settings.data_dir, job, max_lines=3) == "line 997\nline 998\nline 999"
    tail = library.job_log_tail(file_settings.data_dir, job, max_lines=10_000, max_bytes=20)
    assert tail == "line 998\nline 999"
    assert library.job_log_tail(file_settings.data_dir, replace(job, log_path=None)) == ""
    assert library.job_log_tail(file_settings.data_dir, replace(job, log_path=str(tmp_path / "none.log"))) == ""


def test_cancel_and_retry_services(engine) -> None:
    """Cancelling a queued job cancels it; retry queues it again; retrying a queued job is refused."""
    with session_scope(engine) as session:
        job = job_store.submit_job(session, "ingest", {"paths": ["x"]})
    assert library.cancel_job(engine, job.id).status == "cancelled"
    assert library.retry_job(engine, job.id).status == "queued"
    with pytest.raises(ValueError, match="only failed or cancelled"):
        library.retry_job(engine, job.id)
    assert [j.id for j in library.jobs_by_id(engine, [job.id, 99999])] == [job.id]
