"""The database a front end works on: the configured engine, with the schema migrated to the newest revision."""
from __future__ import annotations

from sqlalchemy import Engine

from segloop.platform.core.settings import Settings
from segloop.platform.db.engine import get_engine
from segloop.platform.db.migrate import ensure_schema


def open_database(settings: Settings) -> Engine:
    """The process-wide engine of the settings' database, migrated to head when it is behind."""
    engine = get_engine(settings)
    ensure_schema(engine)
    return engine
