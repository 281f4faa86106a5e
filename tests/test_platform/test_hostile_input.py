"""Hostile input: every case ends in a clear error or success, never a traceback, hang or half-written state.

Property-based (hypothesis) over what users control: video containers, mask PNGs, uploaded file names,
job parameters, pretraining YAML configs and CLI arguments. Real decoding, real SQLite.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import func, select

from segloop.platform.core.masks import MaskError, read_mask
from segloop.platform.core.storage import StorageError, check_upload_name, save_upload
from segloop.platform.db.engine import session_scope
from segloop.platform.db.orm import Annotation, Frame, Video
from segloop.platform.jobs.registry import JobParamsError, kinds, validate_params
from segloop.platform.media.ingest import IngestOptions, ingest_paths

FUZZ = hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW_FUZZ = hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _rows(engine) -> tuple[int, int, int]:
    """(videos, frames, annotations) in the DB."""
    with session_scope(engine) as session:
        return tuple(int(session.scalar(select(func.count()).select_from(m))) for m in (Video, Frame, Annotation))


def _assert_consistent(engine, settings) -> None:
    """Every video row has its frames folder with one JPEG per frame row; no staging folders left."""
    with session_scope(engine) as session:
        videos = session.execute(select(Video.storage_dir, Video.frame_count)).all()
    for storage_dir, count in videos:
        assert len(list((settings.data_dir / storage_dir).glob("*.jpg"))) == count
    if settings.frames_dir.exists():
        assert not [p for p in settings.frames_dir.iterdir() if p.name.startswith(".tmp-")]
        assert len(list(settings.frames_dir.iterdir())) == len(videos)


@pytest.fixture
def sqlite_only(database_url) -> None:
    """The fuzz cases exercise input handling; one database backend is enough."""
    if database_url is not None:
        pytest.skip("input fuzzing runs on SQLite only")


@SLOW_FUZZ
@given(data=st.binary(min_size=1, max_size=4096), suffix=st.sampled_from([".mp4", ".mov", ".mkv", ".avi", ".webm"]))
def test_random_bytes_as_video(sqlite_only, data: bytes, suffix: str, settings, engine, tmp_path_factory) -> None:
    """Random bytes under a video extension: a failure naming the file, nothing stored."""
    path = tmp_path_factory.mktemp("rand") / f"clip{suffix}"
    path.write_bytes(data)
    report = ingest_paths([path], IngestOptions(project="fuzz"), settings)
    assert [o.status for o in report.outcomes] == ["failed"]
    assert str(path) in report.outcomes[0].message
    assert _rows(engine) == (0, 0, 0)
    _assert_consistent(engine, settings)


@SLOW_FUZZ
@given(fraction=st.floats(min_value=0.0, max_value=1.0), faststart=st.booleans())
def test_truncated_videos(sqlite_only, fraction: float, faststart: bool, synth_root: Path, settings, engine,
                          tmp_path_factory) -> None:
    """An mp4 cut at any offset is either fully ingested (all frames present) or refused; the DB stays consistent."""
    import av

    from segloop.platform.media.synth import SynthOptions, render_video

    frames, _ = render_video(SynthOptions(frames=8, width=64, height=48), 0)
    folder = tmp_path_factory.mktemp("cut")
    whole = folder / "whole.mp4"
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(whole), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    data = whole.read_bytes()
    path = folder / "cut.mp4"
    path.write_bytes(data[: int(len(data) * fraction)])
    report = ingest_paths([path], IngestOptions(project="fuzz"), settings)
    outcome = report.outcomes[0]
    if outcome.status == "ingested":
        assert outcome.frames == 8
    else:
        assert outcome.status in ("failed", "skipped") and str(path) in outcome.message
    _assert_consistent(engine, settings)


def test_oversized_frames_are_refused(sqlite_only, synth_root: Path, settings, engine) -> None:
    """Frames above the pixel limit are refused before anything is stored."""
    report = ingest_paths([synth_root / "videos" / "synth-007-000.mp4"],
                          IngestOptions(project="fuzz", max_pixels=1000), settings)
    assert "exceed the limit of 1000 pixels" in report.failed[0].message
    assert _rows(engine) == (0, 0, 0)


mask_arrays = st.one_of(
    st.tuples(st.sampled_from(["L", "P"]), st.integers(1, 40), st.integers(1, 40)),
    st.tuples(st.just("RGB"), st.integers(1, 20), st.integers(1, 20)),
    st.tuples(st.just("I"), st.integers(1, 20), st.integers(1, 20)),
)


@FUZZ
@given(spec=mask_arrays, seed=st.integers(0, 2**16), corrupt=st.booleans())
def test_mask_pngs(spec, seed: int, corrupt: bool, tmp_path_factory) -> None:
    """Any PNG (wrong mode, ids out of range, corrupt bytes) reads as a uint8 label map or raises MaskError."""
    mode, height, width = spec
    rng = np.random.default_rng(seed)
    path = tmp_path_factory.mktemp("mask") / "m.png"
    if mode == "RGB":
        image = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), mode="RGB")
    elif mode == "I":
        image = Image.fromarray(rng.integers(0, 65535, (height, width)).astype(np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 255, (height, width), dtype=np.uint8), mode=mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2] if corrupt else data)
    try:
        labels = read_mask(path)
    except MaskError as exc:
        assert str(path) in str(exc)
        return
    assert labels.dtype == np.uint8 and labels.shape == (height, width)


@FUZZ
@given(name=st.text(min_size=0, max_size=300))
def test_upload_names(name: str, tmp_path_factory) -> None:
    """An uploaded name is refused or stored as one plain file inside the upload folder."""
    folder = tmp_path_factory.mktemp("up")
    try:
        safe = check_upload_name(name)
    except StorageError as exc:
        assert repr(name)[:20] in str(exc) or "file name" in str(exc)
        return
    assert "/" not in safe and "\\" not in safe and not safe.startswith(".") and 0 < len(safe) <= 120
    stored = save_upload(folder, name, b"x", max_bytes=10)
    assert stored.parent == folder.resolve() and stored.read_bytes() == b"x"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


@FUZZ
@given(kind=st.sampled_from(sorted(kinds()) + ["nope"]), params=st.dictionaries(
    st.sampled_from(["paths", "project", "fps", "max_side", "video_ids", "budget", "strategy", "config", "x"]),
    json_values, max_size=5))
def test_job_params(kind: str, params: dict) -> None:
    """Arbitrary JSON params are validated into the kind's schema or refused with the field named."""
    try:
        clean = validate_params(kind, params)
    except JobParamsError as exc:
        assert kind in str(exc)
        return
    json.dumps(clean)


@FUZZ
@given(overrides=st.dictionaries(st.sampled_from(["data", "model", "loss", "optim", "run", "bogus"]),
                                 st.dictionaries(st.text(max_size=15), json_values, max_size=3), max_size=3))
def test_pretrain_yaml_configs(overrides: dict, tmp_path_factory) -> None:
    """A YAML config with unknown keys or wrong types gives a ConfigError naming the key, never a traceback."""
    import yaml

    from segloop.pretrain.config import ConfigError, load_config

    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(yaml.safe_dump(overrides))
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc)


cli_words = st.sampled_from(["ingest", "select", "jobs", "submit", "show", "cancel", "export", "import", "eval",
                             "vos", "propagate", "--project", "--fps", "--budget", "--strategy", "--format", "--params",
                             "-1", "0", "nan", "x", "{}", "[", "../..", "/dev/null", "coco", "davis", "kcenter", ""])


@FUZZ
@given(args=st.lists(cli_words, min_size=1, max_size=6))
def test_cli_arguments(sqlite_only, args: list[str], cli) -> None:
    """Random command lines end with a message and exit code 0, 1 or 2, never an uncaught exception."""
    try:
        result = cli(*args)
    except SystemExit as exc:
        assert exc.code in (0, 1, 2)
        return
    assert result.exit_code in (0, 1, 2), result.output
    assert "Traceback" not in result.output


DISK_FULL_SCRIPT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from segloop.platform.cli import main
sys.argv = ["segloop", "ingest", *sys.argv[2:], "--project", "full"]
main()
"""


@pytest.mark.parametrize("limit", [20_000, 60_000])
def test_disk_full_during_ingest(sqlite_only, limit: int, synth_root: Path, settings, engine) -> None:
    """Writes failing for lack of space (a real file-size limit) give a clear error and leave the DB consistent."""
    import subprocess
    import sys

    videos = [str(p) for p in sorted((synth_root / "videos").glob("*.mp4"))]
    result = subprocess.run([sys.executable, "-c", DISK_FULL_SCRIPT, str(limit), *videos],
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert "File too large" in output or "disk" in output.lower() or "database error" in output
    _assert_consistent(engine, settings)


def test_data_dir_that_is_a_file(sqlite_only, synth_root: Path, settings, engine) -> None:
    """An unusable frames folder fails each input with the path named; nothing half-written."""
    settings.frames_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.frames_dir.write_text("not a folder")
    report = ingest_paths([synth_root / "videos"], IngestOptions(project="ro"), settings)
    assert len(report.failed) == 2 and all("frames" in o.message for o in report.failed)
    assert _rows(engine) == (0, 0, 0)
