"""Stored file names never escape the data dir; uploads are size-limited and written atomically; stored files
and exports follow the umask; read-only commands work on a database this user cannot write."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from segloop.platform.core.storage import (
    StorageError,
    check_upload_name,
    read_torch_dict,
    read_torch_file,
    resolve_inside,
    safe_name,
    save_upload,
)


@pytest.mark.parametrize("name", ["../../etc/passwd.mp4", "..\\..\\x.mp4", "/abs/path.mp4", "C:evil.mp4", "a\x00.mp4"])
def test_escaping_upload_names_are_refused(name: str) -> None:
    """Traversal, absolute and drive-qualified names are refused with the name quoted."""
    with pytest.raises(StorageError, match="escape|NUL"):
        check_upload_name(name)


def test_safe_names() -> None:
    """Unicode is kept, separators and odd characters are replaced, long names are cut keeping the extension."""
    assert safe_name("clip one.mp4") == "clip_one.mp4"
    assert safe_name("vidéo-été.mov") == "vidéo-été.mov"
    long = safe_name("x" * 500 + ".mp4")
    assert len(long) <= 120 and long.endswith(".mp4")
    with pytest.raises(StorageError, match="no usable characters"):
        safe_name("...")
    # A stem of symbols only lost its extension (`🎬.mp4` became `mp4`, then "not a video file").
    assert [safe_name(n) for n in ("🎬.mp4", "!.mp4", "#.MOV", ".hidden")] == ["file.mp4", "file.mp4", "file.MOV",
                                                                               "hidden"]


def test_resolve_inside(tmp_path: Path) -> None:
    """Relative paths inside the root resolve; anything outside is refused."""
    assert resolve_inside(tmp_path, "a/b.jpg") == (tmp_path / "a/b.jpg").resolve()
    with pytest.raises(StorageError, match="escapes the data dir"):
        resolve_inside(tmp_path, "../outside.jpg")


def test_save_upload(tmp_path: Path) -> None:
    """An upload is stored under a unique safe name; oversize uploads leave no file."""
    path = save_upload(tmp_path, "my clip.mp4", b"data", max_bytes=10)
    assert path.parent == tmp_path.resolve() and path.name.endswith("my_clip.mp4") and path.read_bytes() == b"data"
    with pytest.raises(StorageError, match="over the upload limit"):
        save_upload(tmp_path, "big.mp4", b"x" * 11, max_bytes=10)
    assert len(list(tmp_path.iterdir())) == 1


def _run_cli(*args: str, umask: int | None = None) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (optionally under another umask), with the test's environment."""
    return subprocess.run([sys.executable, "-m", "segloop.platform.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300,
                          preexec_fn=None if umask is None else (lambda: os.umask(umask)))


def _mode(path: Path) -> int:
    """Permission bits of a path."""
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_stored_frames_and_exports_follow_the_umask(umask: int, synth_root: Path, sqlite, tmp_path: Path) -> None:
    """Frame folders, frames, COCO files and DAVIS exports get 0777/0666 minus the umask (not 0700/0600)."""
    settings, _ = sqlite
    assert _run_cli("ingest", str(synth_root), "--project", "perm", umask=umask).returncode == 0
    stored = next(settings.frames_dir.iterdir())
    assert _mode(stored) == 0o777 & ~umask
    assert _mode(next(stored.glob("*.jpg"))) == 0o666 & ~umask
    for fmt, out in (("coco", tmp_path / "a.json"), ("davis", tmp_path / "d")):
        result = _run_cli("export", "--project", "perm", "--format", fmt, str(out), umask=umask)
        assert result.returncode == 0, result.stderr
    assert _mode(tmp_path / "a.json") == 0o666 & ~umask
    davis_files = [p for p in (tmp_path / "d").rglob("*") if p.is_file()]
    assert davis_files and {_mode(p) for p in davis_files} == {0o666 & ~umask}
    assert {_mode(p) for p in (tmp_path / "d").rglob("*") if p.is_dir()} == {0o777 & ~umask}


@contextmanager
def _read_only(path: Path):
    """Make a file unwritable for this user: immutable for root (chattr +i), mode 0444 otherwise."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("running as root and chattr +i is not available: cannot make the database read-only")
        undo = ["chattr", "-i", str(path)]
    else:
        path.chmod(0o444)
        undo = ["chmod", "644", str(path)]
    try:
        yield
    finally:
        subprocess.run(undo, check=True)


def test_read_only_commands_work_on_a_read_only_database(synth_root: Path, sqlite, tmp_path: Path) -> None:
    """`jobs list` and `export` work when the database file cannot be written; a write says so in one line."""
    settings, engine = sqlite
    assert _run_cli("ingest", str(synth_root), "--project", "ro").returncode == 0
    assert _run_cli("jobs", "submit", "ingest", "--params", json.dumps({"paths": [str(synth_root)]})).returncode == 0
    engine.dispose()
    with _read_only(settings.data_dir / "segloop.db"):
        listed = _run_cli("jobs", "list")
        assert listed.returncode == 0 and "ingest" in listed.stdout and "queued" in listed.stdout, listed.stderr
        exported = _run_cli("export", "--project", "ro", "--format", "coco", str(tmp_path / "ro.json"))
        assert exported.returncode == 0 and "exported" in exported.stdout, exported.stderr
        assert json.loads((tmp_path / "ro.json").read_text())["annotations"]
        refused = _run_cli("jobs", "cancel", "1")
        assert refused.returncode == 1 and "readonly database" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr


def test_unreadable_torch_files_are_named_without_the_loader_s_words(tmp_path: Path) -> None:
    """A truncated, empty or text file given where segloop expects a torch file is refused naming the file and what
    it should hold, in the caller's error type, never with pickle/zip internals (before, e.g. 'cannot read dense
    encoder: 174812789'); a resume state that cannot be read is a fresh start."""
    import torch

    good = tmp_path / "good.pth"
    torch.save({"step": 3}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:100])
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    text = tmp_path / "text.pth"
    text.write_text("junk\n")
    assert read_torch_file(good, "training state") == {"step": 3}

    class OwnError(ValueError):
        pass

    for bad in (truncated, empty, text):
        with pytest.raises(OwnError, match=rf"^{bad}: cannot read dense encoder: the file is truncated or not a "
                                           r"PyTorch file$"):
            read_torch_file(bad, "dense encoder", OwnError)
        with pytest.raises(StorageError):
            read_torch_file(bad, "model weights")
        assert read_torch_dict(bad) == {}
    assert read_torch_dict(good) == {"step": 3}


def test_json_output_never_holds_numbers_json_cannot(tmp_path: Path) -> None:
    """NaN and infinities were written as `NaN` / `Infinity` (files other readers reject): they are null."""
    import json
    import math

    from segloop.platform.core.storage import write_json

    path = write_json(tmp_path / "r.json", {"value": math.nan, "rows": [1.5, -math.inf, {"c": math.inf}], "n": 2})
    assert json.loads(path.read_text()) == {"value": None, "rows": [1.5, None, {"c": None}], "n": 2}
