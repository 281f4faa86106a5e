"""A damaged SQLite file (truncated, garbage, empty beside stored frames) is named with what to do, on every
command, with exit code 1 and no traceback; nothing is re-created over it."""
from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import run_segloop

COMMANDS = [("jobs", "list"), ("ingest", "nothing.mp4"), ("export", "--project", "p", "--format", "coco", "out.json"),
            ("db", "current")]


def _damage(db: Path, how: str) -> None:
    """Truncate the database, overwrite it with garbage, or empty it."""
    data = db.read_bytes()
    if how == "truncated":
        db.write_bytes(data[: len(data) // 3])
    elif how == "garbage":
        db.write_bytes(bytes(range(256)) * 40)
    else:
        db.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_damaged_database_is_named_on_every_command(how: str, synth_root: Path, sqlite, tmp_path: Path) -> None:
    """Each command exits 1 with one line naming segloop.db, what is wrong, and 'backup'; the file is left as is."""
    from segloop.platform.media.ingest import IngestOptions, ingest_paths

    settings, engine = sqlite
    assert not ingest_paths([synth_root / "videos"], IngestOptions(project="p"), settings).failed
    engine.dispose()
    db = settings.data_dir / "segloop.db"
    for side in ("segloop.db-wal", "segloop.db-shm"):
        (settings.data_dir / side).unlink(missing_ok=True)
    _damage(db, how)
    damaged = db.read_bytes()
    expected = {"truncated": "truncated", "garbage": "not a SQLite database", "empty": "empty (0 bytes)"}[how]
    for command in COMMANDS:
        result = run_segloop(*command, cwd=tmp_path)
        output = result.stdout + result.stderr
        assert result.returncode == 1, (command, output)
        assert "Traceback" not in output, output
        assert str(db) in output and expected in output and "backup" in output, (command, output)
        if how == "empty":
            assert "2 stored video folders" in output
    assert db.read_bytes() == damaged


def test_empty_database_without_frames_is_a_fresh_start(sqlite) -> None:
    """A zero-byte database with no stored frames is simply migrated (nothing would be orphaned)."""
    settings, engine = sqlite
    engine.dispose()
    (settings.data_dir / "segloop.db").write_bytes(b"")
    for side in ("segloop.db-wal", "segloop.db-shm"):
        (settings.data_dir / side).unlink(missing_ok=True)
    result = run_segloop("jobs", "list")
    assert result.returncode == 0, result.stderr


def test_a_database_that_cannot_hold_data_is_refused_by_name(data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """A folder where segloop.db should be read "unable to open database file"; SEGLOOP_DATABASE_URL=sqlite:// (in
    memory) ingested, reported success and lost every row at exit (frames left orphaned). Both are refused."""
    (data_dir / "segloop.db").mkdir(parents=True)
    result = run_segloop("jobs", "list")
    assert result.returncode == 1 and f"{data_dir / 'segloop.db'}: is a folder" in result.stderr, result.stderr
    (data_dir / "segloop.db").rmdir()
    for url in ("sqlite://", "sqlite:///:memory:"):
        monkeypatch.setenv("SEGLOOP_DATABASE_URL", url)
        result = run_segloop("ingest", "--project", "p", str(tmp_path))
        assert result.returncode == 1 and "an in-memory SQLite database is lost" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not (data_dir / "frames").exists()
