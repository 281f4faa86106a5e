"""Typed settings read from the environment (SEGLOOP_DATA_DIR, SEGLOOP_DATABASE_URL, ...)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA_DIR = "./segloop-data"


def _shared_sample() -> Path:
    """The shared DAVIS sample: `../shared/data/davis-sample` from the working folder (the repository root), else
    beside this checkout (a command run from another folder quietly fell back to synthetic footage)."""
    here = Path("../shared/data/davis-sample")
    beside = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "davis-sample"
    return here if here.is_dir() or not beside.is_dir() else Path(os.path.relpath(beside))


SHARED_SAMPLE = _shared_sample()
MAX_ENV_SECONDS = 7 * 24 * 3600.0  # heartbeat and stale periods: longer ones overflow date arithmetic


@dataclass(frozen=True)
class Settings:
    """Where segloop keeps its data and which database it talks to."""

    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA_DIR))
    database_url: str | None = None
    heartbeat_seconds: float = 2.0
    stale_after_seconds: float = 30.0

    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL: SEGLOOP_DATABASE_URL, else SQLite under the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'segloop.db').resolve()}"

    @property
    def frames_dir(self) -> Path:
        """Stored frame JPEGs and thumbnails, one folder per video."""
        return self.data_dir / "frames"

    @property
    def uploads_dir(self) -> Path:
        """Files uploaded through the web UI before ingest."""
        return self.data_dir / "uploads"

    @property
    def logs_dir(self) -> Path:
        """One log file per job."""
        return self.data_dir / "logs"

    @property
    def runs_dir(self) -> Path:
        """Outputs of jobs: checkpoints, embedding sets, benchmark JSON."""
        return self.data_dir / "runs"


MIN_STALE_HEARTBEATS = 5  # a job is reaped only after this many heartbeats were missed


class SettingsError(ValueError):
    """An environment variable with a value segloop cannot use; the message names the variable."""


def _env_seconds(name: str, default: float) -> float:
    """A positive, finite number of seconds from environment variable `name` (default when unset or empty)."""
    raw = os.environ.get(name) or ""
    if not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(f"{name}={raw!r}: expected a positive number of seconds")
    if value > MAX_ENV_SECONDS:
        raise SettingsError(f"{name}={raw!r}: at most {MAX_ENV_SECONDS:g} seconds (a week)")
    return value


def load_settings() -> Settings:
    """Settings from the environment, with defaults that run on a laptop."""
    data_dir = Path(os.environ.get("SEGLOOP_DATA_DIR") or DEFAULT_DATA_DIR)
    if data_dir.exists() and not data_dir.is_dir():
        raise SettingsError(f"SEGLOOP_DATA_DIR={str(data_dir)!r}: not a folder (segloop keeps its database, frames "
                            "and runs in this folder)")
    heartbeat = _env_seconds("SEGLOOP_HEARTBEAT_SECONDS", 2.0)
    stale_after = _env_seconds("SEGLOOP_STALE_AFTER_SECONDS", 30.0)
    if stale_after < MIN_STALE_HEARTBEATS * heartbeat:
        raise SettingsError(
            f"SEGLOOP_STALE_AFTER_SECONDS={stale_after:g} is too short for SEGLOOP_HEARTBEAT_SECONDS={heartbeat:g}: "
            f"a live job would be taken for dead; use at least {MIN_STALE_HEARTBEATS} heartbeats "
            f"({MIN_STALE_HEARTBEATS * heartbeat:g} s)"
        )
    return Settings(
        data_dir=data_dir,
        database_url=os.environ.get("SEGLOOP_DATABASE_URL") or None,
        heartbeat_seconds=heartbeat,
        stale_after_seconds=stale_after,
    )
