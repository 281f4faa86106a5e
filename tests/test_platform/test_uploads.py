"""Uploads: safe storage, safe zip extraction (no path traversal, no links), one ingest job per file."""
from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import jobs as job_store
from segloop.platform.services import uploads


def zip_bytes(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A zip archive with the given members (and symbolic-link members)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            bundle.writestr(info, target)
    return buffer.getvalue()


def davis_zip(synth_root: Path, wrapper: str = "shoot") -> bytes:
    """A zip of the synthetic DAVIS root's first sequence (frames and masks) inside one wrapper folder."""
    members = {}
    for kind in ("JPEGImages", "Annotations"):
        seq = sorted((synth_root / kind / "480p").iterdir())[0]
        for file in sorted(seq.iterdir()):
            members[f"{wrapper}/{kind}/480p/{seq.name}/{file.name}"] = file.read_bytes()
    return zip_bytes(members)


@pytest.mark.parametrize("member", ["../evil.mp4", "a/../../evil.mp4", "/abs/evil.mp4", "C:/evil.mp4", "a\\..\\..\\x"])
def test_zip_with_path_traversal_is_refused(file_settings, member: str) -> None:
    """A member that would land outside the unpack folder refuses the whole archive, and nothing is written."""
    with pytest.raises(uploads.UploadError, match="escape the unpack folder"):
        uploads.store_upload(file_settings, "footage.zip", zip_bytes({"ok/x.mp4": b"x", member: b"x"}))
    assert not (file_settings.data_dir / "evil.mp4").exists()
    assert list(file_settings.uploads_dir.iterdir()) == []


def test_zip_with_symlink_is_refused(file_settings) -> None:
    """Symbolic-link members are refused (they could point anywhere)."""
    with pytest.raises(uploads.UploadError, match="symbolic link"):
        uploads.store_upload(file_settings, "links.zip", zip_bytes({"a.mp4": b"x"}, {"b.mp4": "/etc/passwd"}))


def test_bad_uploads_get_clear_errors(file_settings) -> None:
    """Wrong extension, a damaged zip, an empty zip and an over-limit file each name the file and reason."""
    with pytest.raises(uploads.UploadError, match="notes.txt: unsupported file type .txt"):
        uploads.store_upload(file_settings, "notes.txt", b"hello")
    with pytest.raises(uploads.UploadError, match="broken.zip: not a readable zip archive"):
        uploads.store_upload(file_settings, "broken.zip", b"PK\x03\x04 definitely not a zip")
    with pytest.raises(uploads.UploadError, match="empty.zip: the zip archive is empty"):
        uploads.store_upload(file_settings, "empty.zip", zip_bytes({}))
    with pytest.raises(uploads.UploadError, match="big.mp4.*over the upload limit of 10 bytes"):
        uploads.store_upload(file_settings, "big.mp4", b"x" * 11, uploads.UploadLimits(max_bytes=10))
    with pytest.raises(uploads.UploadError, match="text.zip: archive holds no videos"):
        uploads.store_upload(file_settings, "text.zip", zip_bytes({"readme.txt": b"hi"}))
    with pytest.raises(uploads.UploadError, match="bomb.zip: unpacks to"):
        uploads.store_upload(file_settings, "bomb.zip", zip_bytes({"a.mp4": b"0" * 1000}),
                             uploads.UploadLimits(max_unpacked_bytes=100))


def test_davis_zip_unpacks_to_its_root(file_settings, synth_root: Path) -> None:
    """A zip with one wrapper folder holding JPEGImages/Annotations unpacks to that DAVIS root."""
    root = uploads.store_upload(file_settings, "shoot.zip", davis_zip(synth_root))
    assert root.name == "shoot" and (root / "JPEGImages" / "480p").is_dir()
    assert file_settings.uploads_dir.resolve() in root.resolve().parents
    assert not list(file_settings.uploads_dir.rglob("*.zip"))


def test_upload_and_queue_makes_one_ingest_job_per_good_file(engine, settings, synth_root: Path) -> None:
    """A video and a DAVIS zip become two queued ingest jobs of the project; a bad file only gets an error."""
    video = sorted((synth_root / "videos").iterdir())[0]
    outcomes = uploads.upload_and_queue(
        engine, settings, [(video.name, video.read_bytes()), ("shoot.zip", davis_zip(synth_root)), ("x.gif", b"GIF")],
        uploads.IngestRequest(project="uploads", max_side=64))
    assert [o.error is None for o in outcomes] == [True, True, False]
    assert "x.gif: unsupported file type .gif" in outcomes[2].error
    with session_scope(engine) as session:
        jobs = [job_store.get_job(session, o.job_id) for o in outcomes[:2]]
    assert [j.kind for j in jobs] == ["ingest", "ingest"] and {j.status for j in jobs} == {"queued"}
    assert jobs[0].params["project"] == "uploads" and jobs[0].params["max_side"] == 64
    assert Path(jobs[0].params["paths"][0]).read_bytes() == video.read_bytes()
    assert Path(jobs[0].params["paths"][0]).name == video.name
    assert Path(jobs[1].params["paths"][0]).name == "shoot"


def test_an_upload_the_server_cannot_store_is_refused_without_its_path(engine, settings, synth_root: Path) -> None:
    """When the uploads folder cannot be written (here: a file stands where it should be; a full disk alike), each
    upload gets the system's reason and no server path, nothing is queued, and the page keeps running (before: an
    uncaught NotADirectoryError naming the server's folder)."""
    settings.uploads_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.uploads_dir.write_text("not a folder")
    video = sorted((synth_root / "videos").iterdir())[0]
    outcomes = uploads.upload_and_queue(engine, settings, [(video.name, video.read_bytes()),
                                                           ("shoot.zip", davis_zip(synth_root))])
    assert [o.error for o in outcomes] == [f"{video.name}: could not read or write a file: not a directory",
                                           "shoot.zip: could not read or write a file: not a directory"]
    assert all(str(settings.data_dir) not in o.error for o in outcomes)
    with session_scope(engine) as session:
        assert job_store.list_jobs(session) == []


def test_ingest_jobs_of_uploads_name_files_as_uploaded(engine, settings, synth_root: Path) -> None:
    """An uploaded file's ingest job failed naming the server's upload folder (`<data dir>/uploads/<id>/x.mp4: not
    a video`), and a duplicate upload succeeded with 0 frames and no word; both name the file as uploaded now."""
    from segloop.platform.jobs.kinds.pipeline import run_ingest
    from segloop.platform.media.ingest import IngestError
    from segloop.platform.services.params import IngestParams

    class Context:  # what a job sees of its runner
        def progress(self, fraction: float, message: str = "") -> None:
            """Progress is not under test."""

        def log(self, message: str) -> None:
            """The log is not under test."""

    video = sorted((synth_root / "videos").iterdir())[0]
    outcomes = uploads.upload_and_queue(
        engine, settings, [(video.name, video.read_bytes()), ("again.mp4", video.read_bytes()),
                           ("broken.mp4", b"not a video at all")], uploads.IngestRequest(project="up", max_side=64))
    with session_scope(engine) as session:
        params = [job_store.get_job(session, o.job_id).params for o in outcomes]
    assert run_ingest(IngestParams(**params[0]), Context())["frames"] > 0
    again = run_ingest(IngestParams(**params[1]), Context())
    assert again["frames"] == 0 and again["skipped"] == [f"again.mp4: already ingested as video 1 ({video.stem})"]
    with pytest.raises(IngestError) as failed:
        run_ingest(IngestParams(**params[2]), Context())
    assert str(failed.value).startswith("broken.mp4: ") and str(settings.data_dir) not in str(failed.value)
    for members in ({"junk/readme.txt": b"hi"}, {"readme.txt": b"hi"}):
        with pytest.raises(uploads.UploadError) as refused:
            uploads.store_upload(settings, "junk.zip", zip_bytes(members))
        assert "junk.zip: archive holds no videos" in str(refused.value)
        assert str(settings.data_dir) not in str(refused.value), refused.value


def test_ingest_form_helpers(file_settings, tmp_path: Path) -> None:
    """Form paths are checked for existence; defaults fall back to the uploads folder when it has files."""
    with pytest.raises(uploads.UploadError, match="enter at least one"):
        uploads.check_ingest_paths(["  ", ""])
    with pytest.raises(uploads.UploadError, match="nope.mp4 does not exist"):
        uploads.check_ingest_paths([str(tmp_path / "nope.mp4")])
    assert uploads.check_ingest_paths([f" {tmp_path} "]) == [str(tmp_path)]
    file_settings.uploads_dir.mkdir(parents=True)
    (file_settings.uploads_dir / "a.mp4").write_bytes(b"x")
    defaults = uploads.default_ingest_paths(file_settings)
    assert len(defaults) == 1 and Path(defaults[0]).is_dir()
