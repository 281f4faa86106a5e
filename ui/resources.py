"""Cached resources shared by the pages: the database engine per URL (migrated once) and short-lived reads."""
from __future__ import annotations

import streamlit as st
from sqlalchemy import Engine

from segloop.platform.core.errors import AccessDenied
from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.services import access, artifacts, library, runtime
from segloop.ui.literal import literal

READ_TTL_SECONDS = 5


def settings() -> Settings:
    """Settings from the environment (cheap; read on every rerun so a changed env is honoured)."""
    return load_settings()


@st.cache_resource
def _migrated_engine(url: str) -> Engine:
    """The engine for `url`, with the schema migrated to head once per server."""
    return runtime.open_database(settings())


def engine() -> Engine:
    """The database engine of the configured URL."""
    return _migrated_engine(settings().db_url)


@st.cache_data(ttl=READ_TTL_SECONDS, show_spinner=False)
def _all_project_summaries(url: str) -> list[library.ProjectSummary]:
    """Every project with its counts (cached briefly per database URL, shared by all sessions)."""
    return library.project_summaries(_migrated_engine(url))


def project_summaries(url: str) -> list[library.ProjectSummary]:
    """The projects the signed-in user may open, with their counts."""
    visible = access.visible_project_ids(_migrated_engine(url), None)
    return [s for s in _all_project_summaries(url) if s.project.id in visible]


@st.cache_data(ttl=READ_TTL_SECONDS, show_spinner=False)
def frame_count(url: str, flt: library.FrameFilter) -> int:
    """How many frames match a library filter (cached briefly: counting 100k rows on every rerun is wasteful)."""
    return library.count_filtered_frames(_migrated_engine(url), flt)


@st.cache_data(ttl=READ_TTL_SECONDS, show_spinner=False)
def duplicate_groups(url: str, video_id: int) -> list[tuple[int, int]]:
    """A video's near-duplicate groups with more than one frame."""
    return library.duplicate_groups(_migrated_engine(url), video_id)


def act(action, note: str, note_key: str) -> None:
    """Run a page action; on success keep `note` under `note_key` for the next run and rerun, else show the refusal."""
    try:
        action()
    except ValueError as exc:
        st.error(literal(exc))
        return
    st.session_state[note_key] = note
    forget_reads()
    st.rerun()


def forget_reads() -> None:
    """Drop the cached reads after this session changed the database."""
    _all_project_summaries.clear()
    frame_count.clear()
    duplicate_groups.clear()
    map_points.clear()


@st.cache_data(ttl=60, show_spinner="Placing frames on the map…", max_entries=16)
def map_points(url: str, embedding_set_id: int, method: str, max_points: int, seed: int, signal: str | None,
               selection_id: int | None, tag_id: int | None = None) -> list | None:
    """The sampled frames of an embedding set on a 2-D map (cached a minute: PCA and lookups of 5,000 points)."""
    from segloop.platform.services import explore

    engine = _migrated_engine(url)
    embedding_set = artifacts.embedding_set(engine, embedding_set_id)
    return explore.map_points(engine, settings(), embedding_set, method, max_points, seed, signal, selection_id,
                              tag_id)


@st.cache_resource(max_entries=4, show_spinner="Loading the similarity index…")
def similarity_index(url: str, embedding_set_id: int):
    """The FAISS cosine index of an embedding set (kept in memory per server)."""
    from segloop.platform.services import explore

    return explore.similarity_index(artifacts.embedding_set(_migrated_engine(url), embedding_set_id), settings())


def project_picker(key: str, column=None) -> library.ProjectSummary | None:
    """A project chooser shared by the pages (None, with a hint, when there is no project yet)."""
    summaries = project_summaries(settings().db_url)
    if not summaries:
        st.info("No footage yet. Upload some on the Upload page, or run `segloop ingest PATH` or `make demo`.")
        return None
    names = [s.project.name for s in summaries]
    chosen = (column or st).selectbox("Project", names, key=key)
    return next(s for s in summaries if s.project.name == chosen)


def project_counts_table(summaries: list[library.ProjectSummary]) -> None:
    """One row per project: its videos, frames and annotated frames."""
    st.dataframe(
        [{"project": s.project.name, "videos": s.videos, "frames": s.frames, "annotated frames": s.annotated_frames}
         for s in summaries],
        hide_index=True,
    )


def unreachable_frame(frame_id: int) -> str:
    """What a person is told of a frame that does not exist or is in a project they cannot open (the same words for
    both, so a frame id tells nothing about projects they may not see)."""
    return f"frame {frame_id}: not found in the projects you can open"


def open_frame(frame_id: int, key: str):
    """The frame's details under a heading (video, index, label status); when it is gone or its project is no longer
    one the signed-in user may open: a warning, the frame dropped from `st.session_state[key]`, and None."""
    try:
        access.require_frame(engine(), None, "view", frame_id)
        detail = library.frame_detail(engine(), frame_id)
    except (LookupError, AccessDenied):
        st.session_state.pop(key, None)
        st.warning(unreachable_frame(frame_id))
        return None
    st.subheader(f"{literal(detail.video.name, one_line=True)} · frame #{detail.frame.index} · {detail.status}")
    return detail
