"""Shared fixtures: a temporary data dir with a migrated SQLite DB, the shared sample, synthetic footage."""
from __future__ import annotations

import os
import subprocess
import sys
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


@pytest.fixture
def settings(data_dir: Path):
    """Settings pointing at the test's data dir."""
    from segloop.platform.config import load_settings

    return load_settings()


@pytest.fixture
def engine(settings):
    """A migrated engine for the test's database."""
    from segloop.platform.db import get_engine
    from segloop.platform.migrate import upgrade

    engine = get_engine(settings)
    upgrade(engine)
    yield engine
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
    from segloop.platform.synth import SynthOptions, synthesize

    root = tmp_path_factory.mktemp("synth")
    synthesize(root, SynthOptions(videos=2, frames=12, width=96, height=64, seed=7))
    return root


def run_segloop(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `segloop` CLI in a subprocess with the current environment (plus `env`)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([*SEGLOOP, *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd or REPO_ROOT, timeout=timeout)


@pytest.fixture
def cli(data_dir: Path):
    """Invoke the `segloop` click group in-process against the test's data dir."""
    from click.testing import CliRunner

    from segloop.platform.cli import main

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke
