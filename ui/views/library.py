"""Library page: projects, videos, a filtered and paged grid of thumbnails, and a frame viewer with mask overlay."""
from __future__ import annotations

import streamlit as st

from segloop.platform.services import labeling, library, tags
from segloop.ui import handoff, resources
from segloop.ui.literal import literal

PAGE_SIZE = 24
COLUMNS = 6
ALL_VIDEOS = "All videos"


def render() -> None:
    """Draw the page."""
    st.title("Library")
    url = resources.settings().db_url
    summaries = resources.project_summaries(url)
    if not summaries:
        st.info("No footage yet. Upload some on the Upload page, or run `segloop ingest PATH` or `make demo`.")
        return
    resources.project_counts_table(summaries)
    flt = choose_filter(summaries)
    if flt is None:
        return
    total = resources.frame_count(url, flt)
    pages = max(1, -(-total // PAGE_SIZE))
    page = pager(pages, total)
    frames = library.browse_frames(resources.engine(), flt, page, PAGE_SIZE)
    if not frames:
        st.info("No frame matches these filters.")
    thumbnail_grid(frames)
    frame_viewer()


def choose_filter(summaries: list[library.ProjectSummary]) -> library.FrameFilter | None:
    """The project, video, label status, near-duplicate group and tag chosen in the filter bar."""
    names = [s.project.name for s in summaries]
    project_col, video_col, status_col, group_col, tag_col = st.columns([1, 2, 1, 1, 1])
    chosen = project_col.selectbox("Project", names, key="library_project")
    project = next(s.project for s in summaries if s.project.name == chosen)
    videos = library.project_videos(resources.engine(), project.id)
    if not videos:
        st.info("This project has no videos yet.")
        return None
    options = [None] + [v.id for v in videos]
    by_id = {v.id: v for v in videos}
    video_id = video_col.selectbox(
        "Video", options, key="library_video",
        format_func=lambda i: ALL_VIDEOS if i is None else f"{by_id[i].name} ({by_id[i].frame_count} frames)")
    status = status_col.selectbox("Label status", library.LABEL_FILTERS, key="library_status")
    group = None
    if video_id is not None:
        groups = resources.duplicate_groups(resources.settings().db_url, video_id)
        sizes = dict(groups)
        group = group_col.selectbox("Near-duplicate group", [None] + list(sizes), key="library_group",
                                    format_func=lambda g: "any" if g is None else f"group {g} ({sizes[g]} frames)")
    else:
        group_col.selectbox("Near-duplicate group", ["choose a video"], disabled=True, key="library_group_off")
    found = {t.tag.id: t for t in tags.project_tags(resources.engine(), project.id)}
    tag_id = tag_col.selectbox("Tag", [None] + list(found), key="library_tag",
                               format_func=lambda i: "any" if i is None else f"{found[i].tag.name} ({found[i].frames})")
    flt = library.FrameFilter(project_id=project.id, video_id=video_id, label_status=status, dup_group=group,
                              tag_id=tag_id)
    if st.session_state.get("library_filter") != flt:
        st.session_state["library_filter"] = flt
        st.session_state["library_page"] = 1
    return flt


def pager(pages: int, total: int) -> int:
    """Page controls (buttons with ← / → shortcuts, and a page number); returns the 0-based page."""
    current = min(max(int(st.session_state.get("library_page", 1)), 1), pages)
    st.session_state["library_page"] = current
    prev_col, number_col, next_col, info_col = st.columns([1, 1, 1, 3], vertical_alignment="bottom")
    if prev_col.button("← Previous", key="library_prev", shortcut="Left", disabled=current <= 1):
        st.session_state["library_page"] = current - 1
        st.rerun()
    if next_col.button("Next →", key="library_next", shortcut="Right", disabled=current >= pages):
        st.session_state["library_page"] = current + 1
        st.rerun()
    number_col.number_input("Page", min_value=1, max_value=pages, step=1, key="library_page")
    info_col.caption(f"{total} frame(s) · {pages} page(s) of {PAGE_SIZE} · ←/→ change page")
    return int(st.session_state["library_page"]) - 1


def thumbnail_grid(frames: list[library.LibraryFrame]) -> None:
    """Thumbnails with index, near-duplicate group and label status; each opens in the viewer."""
    data_dir = resources.settings().data_dir
    columns = st.columns(COLUMNS)
    for position, item in enumerate(frames):
        frame = item.frame
        with columns[position % COLUMNS]:
            st.image(str(data_dir / frame.thumb_path),
                     caption=f"{literal(item.video_name, one_line=True)} #{frame.index} · group {frame.dup_group} · "
                             f"{item.status}")
            if st.button("View", key=f"library_view_{frame.id}", width="stretch"):
                st.session_state["library_frame_id"] = frame.id


def frame_viewer() -> None:
    """The chosen frame at full size with its masks blended on top, and its annotation versions."""
    frame_id = st.session_state.get("library_frame_id")
    if frame_id is None:
        st.caption("Choose **View** under a thumbnail to open the frame with its masks.")
        return
    detail = resources.open_frame(frame_id, "library_frame_id")
    if detail is None:
        return
    picture, facts = st.columns([3, 1])
    show_masks = facts.toggle("Show masks", value=True, key="library_show_masks")
    alpha = facts.slider("Mask opacity", 0.1, 1.0, 0.5, 0.05, key="library_alpha")
    image = labeling.frame_image(resources.settings().data_dir, detail.frame)
    if show_masks and detail.annotations:
        image = labeling.overlay(image, detail.label_map(), alpha)
    picture.image(image, width="stretch",
                  caption=f"{detail.video.stored_width}x{detail.video.stored_height} · t={detail.frame.timestamp:.2f}s")
    if detail.annotations:
        facts.dataframe(
            [{"object": a.object_id, "class": a.class_id, "area px": a.area, "version": a.version,
              "status": a.status, "source": a.source, "author": a.author} for a in detail.annotations],
            hide_index=True,
        )
    else:
        facts.caption("No masks on this frame yet.")
    if facts.button("Label this frame", key="library_to_label"):
        handoff.open_in_label(detail, facts)
