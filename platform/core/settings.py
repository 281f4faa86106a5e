"""Typed settings read from the environment (SEGLOOP_DATA_DIR, SEGLOOP_DATABASE_URL, ...)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA_DIR = "./segloop-data"
SHARED_SAMPLE = Path("../shared/data/davis-sample")


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


def load_settings() -> Settings:
    """Settings from the environment, with defaults that run on a laptop."""
    data_dir = Path(os.environ.get("SEGLOOP_DATA_DIR") or DEFAULT_DATA_DIR)
    return Settings(
        data_dir=data_dir,
        database_url=os.environ.get("SEGLOOP_DATABASE_URL") or None,
        heartbeat_seconds=float(os.environ.get("SEGLOOP_HEARTBEAT_SECONDS", "2.0")),
        stale_after_seconds=float(os.environ.get("SEGLOOP_STALE_AFTER_SECONDS", "30.0")),
    )
