"""Library page: projects, their videos, and a paged grid of frame thumbnails."""
from __future__ import annotations

import streamlit as st

from segloop.platform import library
from segloop.ui import resources

PAGE_SIZE = 24


def render() -> None:
    """Draw the page."""
    st.title("Library")
    engine = resources.engine()
    summaries = library.project_summaries(engine)
    if not summaries:
        st.info("No footage yet. Ingest some with `segloop ingest PATH` or `make demo`.")
        return
    st.dataframe(
        [{"project": s.project.name, "videos": s.videos, "frames": s.frames, "annotated frames": s.annotated_frames}
         for s in summaries],
        hide_index=True,
    )
    names = [s.project.name for s in summaries]
    chosen = st.selectbox("Project", names, key="library_project")
    project = next(s.project for s in summaries if s.project.name == chosen)
    videos = library.project_videos(engine, project.id)
    if not videos:
        st.info("This project has no videos yet.")
        return
    video = st.selectbox("Video", videos, format_func=lambda v: f"{v.name} ({v.frame_count} frames)", key="library_video")
    pages = max(1, -(-video.frame_count // PAGE_SIZE))
    page = st.number_input("Page", min_value=1, max_value=pages, value=1, step=1, key="library_page") - 1
    frames = library.frame_page(engine, video.id, int(page), PAGE_SIZE)
    data_dir = resources.settings().data_dir
    columns = st.columns(6)
    for position, frame in enumerate(frames):
        with columns[position % 6]:
            st.image(str(data_dir / frame.thumb_path), caption=f"#{frame.index} · group {frame.dup_group}")
