"""Cached resources shared by the pages: the database engine per URL (migrated once) and short-lived reads."""
from __future__ import annotations

import streamlit as st
from sqlalchemy import Engine

from segloop.platform import library
from segloop.platform.config import Settings, load_settings
from segloop.platform.db import get_engine
from segloop.platform.migrate import ensure_schema

READ_TTL_SECONDS = 5


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


@st.cache_data(ttl=READ_TTL_SECONDS, show_spinner=False)
def project_summaries(url: str) -> list[library.ProjectSummary]:
    """Projects with their counts (cached briefly per database URL)."""
    return library.project_summaries(_migrated_engine(url))


@st.cache_data(ttl=READ_TTL_SECONDS, show_spinner=False)
def frame_count(url: str, flt: library.FrameFilter) -> int:
    """How many frames match a library filter (cached briefly: counting 100k rows on every rerun is wasteful)."""
    return library.count_filtered_frames(_migrated_engine(url), flt)


@st.cache_data(ttl=READ_TTL_SECONDS, show_spinner=False)
def duplicate_groups(url: str, video_id: int) -> list[tuple[int, int]]:
    """A video's near-duplicate groups with more than one frame."""
    return library.duplicate_groups(_migrated_engine(url), video_id)


def forget_reads() -> None:
    """Drop the cached reads after this session changed the database."""
    project_summaries.clear()
    frame_count.clear()
    duplicate_groups.clear()
