"""Shared fixtures: a temporary data dir with a migrated SQLite DB, the shared sample, synthetic footage."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_SAMPLE = (REPO_ROOT / ".." / "shared" / "data" / "davis-sample").resolve()
SEGLOOP = [sys.executable, "-m", "segloop.platform.cli"]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data dir used by every segloop call in the test (SQLite under it)."""
    path = tmp_path / "segloop-data"
    monkeypatch.setenv("SEGLOOP_DATA_DIR", str(path))
    monkeypatch.delenv("SEGLOOP_DATABASE_URL", raising=False)
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """Each DB test runs on SQLite (under the data dir) and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    admin_url = os.environ.get("SEGLOOP_TEST_POSTGRES_URL")
    if not admin_url:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL tests: SEGLOOP_TEST_POSTGRES_URL is not set (see .ci/postgres.sh)")
        pytest.skip("no PostgreSQL server: set SEGLOOP_TEST_POSTGRES_URL (`make test` starts one with .ci/postgres.sh)")
    from sqlalchemy import create_engine, text

    name = f"segloop_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    monkeypatch.setenv("SEGLOOP_DATABASE_URL", url)
    yield url
    from segloop.platform.db.engine import _cached_engine

    _cached_engine(url).dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def settings(data_dir: Path, database_url: str | None):
    """Settings pointing at the test's data dir and database."""
    from segloop.platform.core.settings import load_settings

    return load_settings()


@pytest.fixture
def engine(settings):
    """A migrated engine for the test's database."""
    from segloop.platform.db.engine import get_engine
    from segloop.platform.db.migrate import upgrade

    engine = get_engine(settings)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite(data_dir: Path):
    """(settings, engine) of a migrated SQLite database only, for code whose DB use is backend-agnostic."""
    from segloop.platform.core.settings import load_settings
    from segloop.platform.db.engine import get_engine
    from segloop.platform.db.migrate import upgrade

    settings = load_settings()
    engine = get_engine(settings)
    upgrade(engine)
    yield settings, engine
    engine.dispose()


@pytest.fixture
def davis_sample() -> Path:
    """The shared DAVIS sample, or skip with a clear message."""
    if not (SHARED_SAMPLE / "JPEGImages").is_dir():
        pytest.skip(f"shared DAVIS sample not found at {SHARED_SAMPLE}")
    return SHARED_SAMPLE


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small synthetic videos (DAVIS layout + mp4), made once per session."""
    from segloop.platform.media.synth import SynthOptions, synthesize

    root = tmp_path_factory.mktemp("synth")
    synthesize(root, SynthOptions(videos=2, frames=12, width=96, height=64, seed=7))
    return root


@dataclass
class FootageProject:
    """An ingested project: its id, and its videos' ids in ingest order."""

    project_id: int
    video_ids: list[int]


@pytest.fixture
def footage_project(engine, settings, synth_root: Path) -> FootageProject:
    """The two synthetic videos (12 frames each, no masks) ingested into project 'ui'."""
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import footage, projects
    from segloop.platform.media.ingest import IngestOptions, ingest_paths

    report = ingest_paths([synth_root / "videos"], IngestOptions(project="ui"), settings)
    assert not report.failed
    with session_scope(engine) as session:
        project = projects.get_project(session, "ui")
        videos = footage.list_videos(session, project.id)
    return FootageProject(project.id, [v.id for v in videos])


@pytest.fixture
def embedded(engine, settings, footage_project):
    """The footage project embedded with a tiny random-init ViT at 32 px."""
    from segloop.platform.services.embedding import embed_project

    return embed_project("ui", "vit_tiny_patch16_224", img_size=32, batch_size=8, settings=settings)


@pytest.fixture
def file_settings(data_dir: Path):
    """Settings for tests that only touch files (no database, so not repeated per database)."""
    from segloop.platform.core.settings import load_settings

    return load_settings()


def run_segloop(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `segloop` CLI in a subprocess with the current environment (plus `env`)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([*SEGLOOP, *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd or REPO_ROOT, timeout=timeout)


def invoke_segloop(*args: str):
    """Invoke the `segloop` click group in-process with the current environment (e.g. the `data_dir` fixture's)."""
    from click.testing import CliRunner

    from segloop.platform.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def cli(settings):
    """Invoke the `segloop` click group in-process against the test's data dir (per database)."""
    return invoke_segloop


@pytest.fixture
def davis_video(synth_root: Path, settings, engine):
    """A synthetic video ingested from its DAVIS layout into project 'prop' (every frame has imported masks)."""
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import footage, projects
    from segloop.platform.media.ingest import IngestOptions, ingest_paths

    assert not ingest_paths([synth_root], IngestOptions(project="prop"), settings).failed
    with session_scope(engine) as session:
        project = projects.get_project(session, "prop")
        return footage.get_video_by_name(session, project.id, "synth-007-000")
