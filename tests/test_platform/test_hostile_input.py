"""Hostile input: every case ends in a clear error or success, never a traceback, hang or half-written state.

Property-based (hypothesis) over what users control: video containers, mask PNGs, uploaded file names,
job parameters, pretraining YAML configs and CLI arguments. Real decoding, real SQLite.
"""
from __future__ import annotations

import io
import json
import os
from collections import Counter
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
CASES: Counter[str] = Counter()  # generated cases per property test in this run, reported at the end of the module


def count_case(name: str) -> None:
    """Count one generated case of a property test."""
    CASES[name] += 1


@pytest.fixture(scope="module", autouse=True)
def report_case_counts(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """After the module: print how many cases each property test generated (and save them as JSON)."""
    yield
    if not CASES:
        return
    summary = {"total": sum(CASES.values()), **dict(sorted(CASES.items()))}
    path = tmp_path_factory.getbasetemp() / "hostile-input-cases.json"
    path.write_text(json.dumps(summary, indent=2))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nhostile-input property cases this run: {summary['total']} "
                                f"({', '.join(f'{k} {v}' for k, v in CASES.items())}); saved to {path}")
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
    count_case("random_bytes_as_video")
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
    count_case("truncated_videos")
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
    count_case("mask_pngs")
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
    count_case("upload_names")
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
    count_case("job_params")
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
    count_case("pretrain_yaml_configs")
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
    count_case("cli_arguments")
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


# ---------------------------------------------------------------- regressions from issue 15 (each was reproduced)


def test_empty_path_is_refused_not_the_current_folder(sqlite_only, synth_root: Path, settings, engine,
                                                      tmp_path: Path) -> None:
    """`segloop ingest ""` in a folder holding a video fails on the empty path and ingests nothing."""
    import shutil
    import subprocess
    import sys

    shutil.copy(synth_root / "videos" / "synth-007-000.mp4", tmp_path / "here.mp4")
    result = subprocess.run([sys.executable, "-m", "segloop.platform.cli", "ingest", ""], capture_output=True,
                            text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 1 and "empty path" in result.stdout + result.stderr
    assert _rows(engine) == (0, 0, 0)


def test_dot_only_video_name_exports_inside_the_folder(sqlite_only, synth_root: Path, settings, engine,
                                                       tmp_path: Path) -> None:
    """A file called `...mp4` becomes video 'video' (not '..') and its DAVIS export stays inside OUT."""
    import shutil

    from segloop.platform.media.exchange import export_project

    odd = tmp_path / "in" / "...mp4"
    odd.parent.mkdir()
    shutil.copy(synth_root / "videos" / "synth-007-000.mp4", odd)
    report = ingest_paths([odd], IngestOptions(project="dots"), settings)
    assert [o.status for o in report.outcomes] == ["ingested"]
    with session_scope(engine) as session:
        assert session.scalar(select(Video.name)) == "video"
    export_project("dots", "davis", tmp_path / "out", settings)
    assert len(list((tmp_path / "out/JPEGImages/480p/video").glob("*.jpg"))) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out", "segloop-data"]


@pytest.mark.parametrize("job_id", ["99999999999999999999999", "-99999999999999999999999", "9223372036854775808"])
def test_huge_job_ids_are_not_found(sqlite_only, job_id: str, cli) -> None:
    """`jobs show|cancel|retry` with an id beyond 64 bits: 'does not exist', exit 1."""
    for action in ("show", "cancel", "retry"):
        result = cli("jobs", action, "--", job_id)
        assert result.exit_code == 1 and "does not exist" in result.output, result.output


def test_deeply_nested_params_are_refused(sqlite_only, cli) -> None:
    """--params nested 100000 deep (the parser's recursion) and 40 deep (over the limit) are refused by name; so is
    a JSON value that is not an object (null read as 'nested deeper than 32 levels')."""
    for depth in (100_000, 40):
        result = cli("jobs", "submit", "ingest", "--params", "[" * depth + "]" * depth)
        assert result.exit_code == 2 and "--params" in result.output and "nested deeper" in result.output
    for value, kind in (("null", "null"), ("[1]", "a list"), ("7", "a number")):
        result = cli("jobs", "submit", "ingest", "--params", value)
        assert result.exit_code == 2 and f"expected a JSON object of parameters, got {kind}" in result.output


def test_export_to_an_existing_file_or_unwritable_place(sqlite_only, synth_root: Path, settings, engine, cli,
                                                        tmp_path: Path) -> None:
    """Exports onto a file, or below a file (a place no folder can be made), fail with the target path named (not
    the staging file the writer was at)."""
    assert not ingest_paths([synth_root], IngestOptions(project="ex"), settings).failed
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for fmt, out, reason in (("davis", blocker, "exists and is not a folder"),
                             ("coco", blocker, "exists and is not a folder"),
                             ("davis", blocker / "sub", f"cannot write the export ({blocker} is a file, not a folder)"),
                             ("coco", blocker / "sub.json", f"cannot write the export ({blocker} is a file, not a "
                                                            "folder)")):
        result = cli("export", "--project", "ex", "--format", fmt, str(out))
        assert result.exit_code == 1 and f"{out}: {reason}" in result.output, result.output
        assert ".tmp-" not in result.output  # the target is named, not a staging file
    assert blocker.read_text() == "x"


def test_huge_non_video_is_refused_from_its_first_bytes(sqlite_only, settings, engine, tmp_path: Path) -> None:
    """A 5 GB file (sparse) under a video extension is refused as 'not a video' by sniffing, not hashed first."""
    from segloop.platform.media.ingest import Source, sniff_source

    huge = tmp_path / "huge.mp4"
    with open(huge, "wb") as handle:
        handle.truncate(5 * 1024**3)
    with pytest.raises(ValueError, match="not a video"):
        sniff_source(Source("huge", "video", huge))
    report = ingest_paths([huge], IngestOptions(project="huge"), settings)
    assert report.failed[0].message == f"{huge}: not a video: the content is not a recognised video container"


def test_failed_ingest_does_not_create_its_project(sqlite_only, settings, engine, tmp_path: Path) -> None:
    """An ingest whose every input fails leaves no project behind."""
    from segloop.platform.db.orm import Project

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    assert ingest_paths([bad], IngestOptions(project="ghost"), settings).failed
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Project)) == 0


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_fps_is_refused(sqlite_only, value: str, synth_root: Path, cli, engine) -> None:
    """`--fps nan` names the option and the reason instead of failing inside numpy."""
    result = cli("ingest", str(synth_root / "videos"), "--fps", value)
    assert result.exit_code in (1, 2) and "fps" in result.output and "arange" not in result.output, result.output
    assert _rows(engine) == (0, 0, 0)


@pytest.mark.parametrize(("env", "named"), [
    ({"SEGLOOP_STALE_AFTER_SECONDS": "abc"}, "SEGLOOP_STALE_AFTER_SECONDS='abc'"),
    ({"SEGLOOP_HEARTBEAT_SECONDS": "-1"}, "SEGLOOP_HEARTBEAT_SECONDS='-1'"),
    ({"SEGLOOP_STALE_AFTER_SECONDS": "nan"}, "SEGLOOP_STALE_AFTER_SECONDS='nan'"),
    ({"SEGLOOP_STALE_AFTER_SECONDS": "0.5"}, "SEGLOOP_STALE_AFTER_SECONDS=0.5 is too short"),
    ({"SEGLOOP_HEARTBEAT_SECONDS": "10"}, "is too short for SEGLOOP_HEARTBEAT_SECONDS=10"),
    ({"SEGLOOP_STALE_AFTER_SECONDS": "1e12"}, "SEGLOOP_STALE_AFTER_SECONDS='1e12': at most 604800 seconds"),
    ({"SEGLOOP_STALE_AFTER_SECONDS": "1e308"}, "SEGLOOP_STALE_AFTER_SECONDS='1e308': at most 604800 seconds"),
])
def test_bad_timing_variables_are_named(sqlite_only, env: dict, named: str, monkeypatch, cli) -> None:
    """Unusable heartbeat / stale settings, and a stale timeout under 5 heartbeats, are refused naming the variable."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for args in (("jobs", "list"), ("worker", "--exit-when-idle")):
        result = cli(*args)
        assert result.exit_code == 1 and named in result.output, result.output


@pytest.mark.parametrize(("env", "named"), [
    ({"SEGLOOP_DATABASE_URL": "garbage"}, "SEGLOOP_DATABASE_URL: not a database URL"),
    ({"SEGLOOP_DATABASE_URL": "mysql://u:secret@host/db"}, "SEGLOOP_DATABASE_URL: 'mysql' databases are not supported"),
    ({"SEGLOOP_DATABASE_URL": "postgresql+nodriver://u:secret@host/db"},
     "SEGLOOP_DATABASE_URL: the database driver 'postgresql+nodriver' is not installed"),
    ({"SEGLOOP_DATA_DIR": "FILE"}, "SEGLOOP_DATA_DIR='FILE': not a folder"),
    ({"SEGLOOP_JOB_PLUGINS": "no_such_plugin_module"},
     "SEGLOOP_JOB_PLUGINS: job plugin 'no_such_plugin_module' cannot be imported"),
    ({"SEGLOOP_JOB_PLUGINS": "MISSING.py"}, "SEGLOOP_JOB_PLUGINS: job plugin 'MISSING.py': no such file"),
    ({"SEGLOOP_JOB_PLUGINS": "BROKEN.py"}, "SEGLOOP_JOB_PLUGINS: job plugin 'BROKEN.py' failed while loading (boom)"),
])
def test_bad_environment_variables_are_named(sqlite_only, env: dict, named: str, monkeypatch, cli, tmp_path) -> None:
    """A database URL segloop cannot use (never echoed: it may hold a password), a data dir that is a file, a job
    plugin that cannot be imported or fails while loading: one line naming the variable, exit 1 (before: SQLAlchemy
    ArgumentError / ModuleNotFoundError / RuntimeError tracebacks)."""
    (tmp_path / "FILE").write_text("not a folder")
    (tmp_path / "BROKEN.py").write_text("raise RuntimeError('boom')\n")
    paths = {name: str(tmp_path / name) for name in ("FILE", "MISSING.py", "BROKEN.py")}
    for key, value in env.items():
        monkeypatch.setenv(key, paths.get(value, value))
        named = named.replace(value, paths.get(value, value))
    for args in [("jobs", "kinds")] if "SEGLOOP_JOB_PLUGINS" in env else [("jobs", "list")]:
        result = cli(*args)
        assert result.exit_code == 1 and named in result.output, result.output
        assert "secret" not in result.output and "Traceback" not in result.output


# ---------------------------------------------------------------- properties: ids, params nesting, names, env vars

cli_ids = st.one_of(st.integers(), st.integers(min_value=2**62), st.integers(max_value=-2**62),
                    st.text(max_size=30)).map(str)


@FUZZ
@given(action=st.sampled_from([("jobs", "show"), ("jobs", "cancel"), ("jobs", "retry"), ("select", "show")]),
       job_id=cli_ids)
def test_cli_ids(sqlite_only, action: tuple[str, str], job_id: str, cli) -> None:
    """Any id on the command line (huge, negative, text): a message and exit 1 or 2, never an exception."""
    count_case("cli_ids")
    result = cli(*action, "--", job_id)
    assert result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output


nested_json = st.recursive(st.none() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner,
                                                                                      max_size=2),
                           max_leaves=60)


@FUZZ
@given(value=nested_json, depth=st.integers(0, 3000), kind=st.sampled_from(["ingest", "select", "nope"]))
def test_params_nesting(sqlite_only, value, depth: int, kind: str, cli) -> None:
    """--params of any shape and nesting depth (wrapped `depth` times in a list): refused with --params or the
    kind named, never a RecursionError."""
    count_case("params_nesting")
    text = "[" * depth + json.dumps(value) + "]" * depth
    result = cli("jobs", "submit", kind, "--params", text)
    assert result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output and "Recursion" not in result.output


@FUZZ
@given(name=st.text(max_size=250), fmt=st.sampled_from(["davis", "coco"]))
def test_project_names(sqlite_only, name: str, fmt: str, cli, tmp_path_factory) -> None:
    """Any project name given to export/import: 'does not exist' or a refusal naming the project, exit 1."""
    count_case("project_names")
    out = tmp_path_factory.mktemp("names") / "x.json"
    for command in (("export", "--project", name, "--format", fmt, str(out)),
                    ("import", "--project", name, "--format", fmt, str(out))):
        result = cli(*command)
        assert result.exit_code == 1, result.output
        assert "project" in result.output or "does not exist" in result.output, result.output


env_text = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)


@FUZZ
@given(heartbeat=st.one_of(env_text, st.floats().map(str)), stale=st.one_of(env_text, st.floats().map(str)))
def test_timing_env_vars(heartbeat: str, stale: str) -> None:
    """Any SEGLOOP_HEARTBEAT_SECONDS / SEGLOOP_STALE_AFTER_SECONDS: usable settings (positive, finite, stale at least
    5 heartbeats) or a SettingsError naming the variable."""
    from segloop.platform.core.settings import MIN_STALE_HEARTBEATS, SettingsError, load_settings

    count_case("timing_env_vars")
    saved = {k: os.environ.get(k) for k in ("SEGLOOP_HEARTBEAT_SECONDS", "SEGLOOP_STALE_AFTER_SECONDS")}
    os.environ.update(SEGLOOP_HEARTBEAT_SECONDS=heartbeat, SEGLOOP_STALE_AFTER_SECONDS=stale)
    try:
        settings = load_settings()
    except SettingsError as exc:
        assert "SEGLOOP_HEARTBEAT_SECONDS" in str(exc) or "SEGLOOP_STALE_AFTER_SECONDS" in str(exc)
        return
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert 0 < settings.heartbeat_seconds < float("inf")
    assert settings.stale_after_seconds >= MIN_STALE_HEARTBEATS * settings.heartbeat_seconds
