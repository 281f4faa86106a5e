"""Ingest on real decoding (decord, PyAV-written mp4s, DAVIS folders) into a real SQLite database."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from segloop.platform.core.davis import DavisLayout
from segloop.platform.core.masks import read_mask
from segloop.platform.db.engine import session_scope
from segloop.platform.db.orm import Annotation, Frame, Video
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, projects
from segloop.platform.media.ingest import (
    IngestOptions,
    dhash64,
    group_near_duplicates,
    hamming64,
    ingest_paths,
    sample_indices,
    stored_size,
)


def _counts(engine) -> tuple[int, int, int]:
    """(videos, frames, annotations) rows in the database."""
    with session_scope(engine) as session:
        return tuple(int(session.scalar(select(func.count()).select_from(m))) for m in (Video, Frame, Annotation))


def _stored_dirs(settings) -> list[Path]:
    """Folders under the frames dir (temporary staging folders included)."""
    return sorted(settings.frames_dir.iterdir()) if settings.frames_dir.exists() else []


def test_sample_indices_and_sizes() -> None:
    """Sampling keeps every frame by default and evenly spaced ones at a lower rate."""
    assert sample_indices(10, 24.0, None) == list(range(10))
    assert sample_indices(48, 24.0, 6.0) == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44]
    assert sample_indices(5, 10.0, 30.0) == [0, 1, 2, 3, 4]
    assert stored_size(854, 480, None) == (854, 480)
    assert stored_size(854, 480, 427) == (427, 240)
    assert stored_size(100, 50, 200) == (100, 50)


def test_near_duplicate_grouping() -> None:
    """Identical frames share a group; a different frame starts a new one."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    ha, hb = dhash64(a), dhash64(b)
    assert hamming64(ha, ha) == 0 and hamming64(ha, hb) > 10
    assert group_near_duplicates([ha, ha, ha, hb, hb, ha], max_bits=4) == [0, 0, 0, 1, 1, 2]
    assert -(1 << 63) <= ha < (1 << 63)


def test_ingest_synthetic_videos(synth_root: Path, settings, engine) -> None:
    """Every frame stored as JPEG + thumbnail, rows recorded, metadata right."""
    report = ingest_paths([synth_root / "videos"], IngestOptions(project="p"), settings)
    assert not report.failed
    assert report.frames == 24
    with session_scope(engine) as session:
        project = projects.get_project(session, "p")
        videos = footage.list_videos(session, project.id)
        assert [v.name for v in videos] == ["synth-007-000", "synth-007-001"]
        video = videos[0]
        assert (video.frame_count, video.width, video.height, video.codec) == (12, 96, 64, "h264")
        assert video.fps == pytest.approx(24.0)
        frames = footage.list_frames(session, video.id)
    assert [f.index for f in frames] == list(range(12))
    for frame in frames:
        assert (settings.data_dir / frame.image_path).is_file()
        assert (settings.data_dir / frame.thumb_path).is_file()
    assert not any(p.name.startswith(".tmp-") for p in _stored_dirs(settings))


def test_reingest_is_a_no_op(synth_root: Path, settings, engine) -> None:
    """The same content again adds no rows and no files, also under another path."""
    ingest_paths([synth_root / "videos"], IngestOptions(project="p"), settings)
    before, dirs = _counts(engine), _stored_dirs(settings)
    copy = settings.data_dir.parent / "copy.mp4"
    shutil.copy(synth_root / "videos" / "synth-007-000.mp4", copy)
    report = ingest_paths([synth_root / "videos", copy], IngestOptions(project="p"), settings)
    assert [o.status for o in report.outcomes] == ["skipped", "skipped", "skipped"]
    assert _counts(engine) == before
    assert _stored_dirs(settings) == dirs


def test_odd_file_names_are_stored_inside_the_data_dir(synth_root: Path, settings, engine, tmp_path: Path) -> None:
    """Names made of dots, spaces, shell characters or unicode never shape a path outside the frames dir."""
    names = ["...mp4", "rm -rf ;$(x).mp4", "über clip é.mp4"]
    for index, name in enumerate(names):
        data = (synth_root / "videos" / f"synth-007-00{index % 2}.mp4").read_bytes() + bytes(index)
        (tmp_path / name).write_bytes(data)
    report = ingest_paths([tmp_path / n for n in names], IngestOptions(project="n"), settings)
    assert [o.status for o in report.outcomes] == ["ingested"] * 3, [o.message for o in report.outcomes]
    frames_root = settings.frames_dir.resolve()
    with session_scope(engine) as session:
        for video in footage.list_videos(session, projects.get_project(session, "n").id):
            stored = (settings.data_dir / video.storage_dir).resolve()
            assert stored.parent == frames_root and stored.is_dir()


def test_davis_layout_imports_palette_masks_exactly(synth_root: Path, settings, engine) -> None:
    """A DAVIS root with palette masks: one annotation per object per frame, equal to the PNGs."""
    report = ingest_paths([synth_root], IngestOptions(project="d"), settings)
    assert not report.failed and report.frames == 24
    with session_scope(engine) as session:
        project = projects.get_project(session, "d")
        video = footage.get_video_by_name(session, project.id, "synth-007-001")
        assert video.source_kind == "frames"
        frames = footage.list_frames(session, video.id)
        for frame in frames:
            expected = read_mask(DavisLayout(synth_root).mask_path("synth-007-001", frame.index))
            stored = annotation_store.latest_annotations(session, frame.id)
            assert {a.object_id for a in stored} == set(np.unique(expected).tolist()) - {0}
            assert all(a.source == "imported" for a in stored)
            np.testing.assert_array_equal(annotation_store.label_map(stored, 64, 96), expected)


def test_fps_sampling_and_max_side(synth_root: Path, settings, engine) -> None:
    """--fps keeps evenly spaced frames, --max-side shrinks frames and masks alike."""
    report = ingest_paths([synth_root], IngestOptions(project="s", fps=8.0, max_side=48), settings)
    assert not report.failed
    with session_scope(engine) as session:
        video = footage.list_videos(session, projects.get_project(session, "s").id)[0]
        frames = footage.list_frames(session, video.id)
        assert [f.source_index for f in frames] == [0, 3, 6, 9]
        assert (video.stored_width, video.stored_height) == (48, 32)
        annotations = annotation_store.latest_annotations(session, frames[1].id)
    assert annotation_store.annotation_mask(annotations[0]).shape == (32, 48)


def test_bad_inputs_fail_cleanly_next_to_a_good_video(synth_root: Path, settings, engine, tmp_path: Path) -> None:
    """Truncated mp4, text renamed .mp4, empty file: three clear errors, the good video fully ingested."""
    good = synth_root / "videos" / "synth-007-000.mp4"
    data = good.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    report = ingest_paths([truncated, text, good, empty], IngestOptions(project="b"), settings)
    by_name = {Path(o.source).name: o for o in report.outcomes}
    assert by_name["synth-007-000.mp4"].status == "ingested"
    assert by_name["synth-007-000.mp4"].frames == 12
    for name in ("truncated.mp4", "notes.mp4", "empty.mp4"):
        assert by_name[name].status == "failed"
        assert name in by_name[name].message
    assert "empty file" in by_name["empty.mp4"].message
    assert "truncated or corrupt MP4/MOV file" in by_name["truncated.mp4"].message
    assert "not a video" in by_name["notes.mp4"].message
    assert _counts(engine) == (1, 12, 0)
    assert len(_stored_dirs(settings)) == 1


def test_truncated_faststart_mp4_is_refused(synth_root: Path, settings, engine, tmp_path: Path) -> None:
    """An mp4 with its index first but frames cut off: decodable prefix is not silently ingested."""
    import av

    from segloop.platform.media.synth import SynthOptions, render_video

    frames, _ = render_video(SynthOptions(frames=30, width=96, height=64), 0)
    whole = tmp_path / "fast.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    report = ingest_paths([cut], IngestOptions(project="t"), settings)
    assert report.failed and "cut.mp4: truncated" in report.failed[0].message
    assert _counts(engine) == (0, 0, 0)


def test_cli_bad_inputs_exit_non_zero(synth_root: Path, cli, tmp_path: Path) -> None:
    """The CLI prints an error naming each bad file and exits 1; the good video is in the DB."""
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    other = tmp_path / "readme.txt"
    other.write_text("hello")
    result = cli("ingest", str(synth_root / "videos" / "synth-007-001.mp4"), str(empty), str(other),
                             str(tmp_path / "missing.mp4"))
    assert result.exit_code == 1
    assert "empty.mp4: empty file" in result.output
    assert "readme.txt: not a video file" in result.output
    assert "missing.mp4: does not exist" in result.output
    assert "videos ingested: 1" in result.output


def test_a_masks_option_that_matches_nothing_is_refused_before_any_ingest(synth_root: Path, cli, engine, settings,
                                                                         tmp_path: Path) -> None:
    """`--masks` that is not a folder, or a folder with no sub-folder named after an input, is refused up front
    (before: the videos were ingested with 0 masks and exit 0, the masks silently ignored); a job is refused at
    submission; with the right folder the masks come in."""
    from segloop.platform.core.errors import ValidationError
    from segloop.platform.services.jobs import submit_job

    not_folder = tmp_path / "masks.zip"
    not_folder.write_bytes(b"zip")
    unrelated = tmp_path / "other"
    (unrelated / "someone-else").mkdir(parents=True)
    videos = str(synth_root / "videos")
    for masks, message in ((not_folder, f"masks: {not_folder} is not a folder"),
                           (tmp_path / "missing", f"masks: {tmp_path / 'missing'} is not a folder"),
                           (unrelated, f"masks: {unrelated} holds no folder named after an input (expected e.g. "
                                       f"{unrelated / 'synth-007-000'}/00000.png)")):
        result = cli("ingest", videos, "--project", "mk", "--masks", str(masks))
        assert result.exit_code == 1 and message in result.output, result.output
    assert _counts(engine) == (0, 0, 0) and _stored_dirs(settings) == []
    with pytest.raises(ValidationError, match=f"ingest params: masks: {not_folder} is not a folder"):
        submit_job(engine, "ingest", {"paths": [videos], "masks": str(not_folder)})
    for project, masks in (("mk", synth_root / "Annotations" / "480p"), ("mk-root", synth_root),
                           ("mk-annotations", synth_root / "Annotations")):  # the last two: refused before
        result = cli("ingest", videos, "--project", project, "--masks", str(masks))
        assert result.exit_code == 0 and "masks: 60" in result.output, result.output


def test_mask_count_and_size_mismatch_are_refused(synth_root: Path, settings, engine, tmp_path: Path) -> None:
    """A mask folder whose count or size does not match the frames fails that input only."""
    root = tmp_path / "davis"
    shutil.copytree(synth_root / "JPEGImages", root / "JPEGImages")
    shutil.copytree(synth_root / "Annotations", root / "Annotations")
    DavisLayout(root).mask_path("synth-007-000", 11).unlink()
    bad_size = DavisLayout(root).mask_path("synth-007-001", 3)
    from segloop.platform.core.masks import write_mask

    write_mask(bad_size, np.zeros((10, 10), np.uint8))
    report = ingest_paths([root], IngestOptions(project="m"), settings)
    messages = {Path(o.source).name: o.message for o in report.failed}
    assert "11 mask files for 12 frames" in messages["synth-007-000"]
    assert "00003.png: mask is 10x10" in messages["synth-007-001"]
    assert _counts(engine) == (0, 0, 0)
    assert _stored_dirs(settings) == []


def test_shared_sample_videos_give_190_frames(davis_sample: Path, settings, engine) -> None:
    """The four DAVIS mp4s: 50 + 40 + 60 + 40 frames."""
    report = ingest_paths([davis_sample / "videos"], IngestOptions(project="davis"), settings)
    assert not report.failed
    assert sorted(o.frames for o in report.outcomes) == [40, 40, 50, 60]
    assert _counts(engine) == (4, 190, 0)


def test_shared_sample_frame_folders_give_190_frames_and_masks(davis_sample: Path, settings, engine) -> None:
    """The DAVIS-layout folders: 190 frames and 190 imported (0/255) masks."""
    report = ingest_paths([davis_sample], IngestOptions(project="davis"), settings)
    assert not report.failed
    assert _counts(engine) == (4, 190, 190)
