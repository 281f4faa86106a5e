"""Stored file names never escape the data dir; uploads are size-limited and written atomically."""
from __future__ import annotations

from pathlib import Path

import pytest

from segloop.platform.core.storage import StorageError, check_upload_name, resolve_inside, safe_name, save_upload


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
