"""Cached resources shared by the pages: the database engine per URL (migrated once)."""
from __future__ import annotations

import streamlit as st
from sqlalchemy import Engine

from segloop.platform.config import Settings, load_settings
from segloop.platform.db import get_engine
from segloop.platform.migrate import ensure_schema


def settings() -> Settings:
    """Settings from the environment (cheap; read on every rerun so a changed env is honoured)."""
    return load_settings()


@st.cache_resource
def _migrated_engine(url: str) -> Engine:
    """The engine for `url`, with the schema migrated to head once per server."""
    current = settings()
    db = get_engine(current)
    ensure_schema(db)
    return db


def engine() -> Engine:
    """The database engine of the configured URL."""
    return _migrated_engine(settings().db_url)
