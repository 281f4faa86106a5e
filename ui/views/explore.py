"""Explore page: a 2-D map of an embedding set (PCA now, t-SNE as a cached job), coloured by video, label status,
selection run or uncertainty, with thumbnail tooltips; click a point to open the frame and find frames like it."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from segloop.platform.services import artifacts, explore, labeling, library
from segloop.ui import handoff, resources

COLOUR_BY = ("video", "label status", "selection run", "uncertainty")
STATUS_COLOURS = {"unlabeled": "#9e9e9e", "draft": "#ff9800", "submitted": "#2196f3", "reviewed": "#4caf50"}
PICK_COLOURS = {"not picked": "#cfd8dc", "proposed": "#ff9800", "accepted": "#4caf50", "rejected": "#e53935"}
TOOLTIP_THUMBS = 1_000
SIMILAR_COLUMNS = 6
WAIT_SECONDS = 2.0


def render() -> None:
    """Draw the page."""
    st.title("Explore")
    summary = resources.project_picker("explore_project")
    if summary is None:
        return
    engine = resources.engine()
    sets = artifacts.embedding_sets(engine, summary.project.id)
    if not sets:
        st.info("This project has no embedding set yet: embed it on the **Select** page or with an *embed* job on "
                "the **Jobs** page (`segloop embed --project NAME` on the command line).")
        return
    by_id = {s.id: s for s in sets}
    set_col, method_col, points_col, colour_col = st.columns([2, 1, 1, 1])
    set_id = set_col.selectbox(
        "Embedding set", list(by_id), key="explore_set",
        format_func=lambda i: f"{i}: {by_id[i].backbone} · {by_id[i].count} frames · {by_id[i].name}")
    method = method_col.radio("Map", explore.MAP_METHODS, horizontal=True, key="explore_method",
                              format_func=lambda m: {"pca": "PCA", "tsne": "t-SNE"}[m])
    max_points = int(points_col.number_input("Frames on the map (sampled)", min_value=100, max_value=20_000,
                                             value=explore.DEFAULT_MAX_POINTS, step=500, key="explore_points"))
    colour = colour_col.selectbox("Colour by", COLOUR_BY, key="explore_colour")
    signal, selection_id = colour_options(summary.project.id, colour)
    if method == "tsne" and explore.cached_map(resources.settings(), set_id, method, max_points, 0) is None:
        tsne_missing(set_id, max_points)
        return
    points = resources.map_points(resources.settings().db_url, set_id, method, max_points, 0, signal, selection_id)
    if not points:
        st.info("None of this set's frames are in the database any more.")
        return
    st.caption(f"{len(points)} of {by_id[set_id].count} frames shown · hover a point for its thumbnail · "
               "click it to open the frame below")
    draw_map(points, colour, summary.project.id)
    frame_panel(set_id)


def colour_options(project_id: int, colour: str) -> tuple[str | None, int | None]:
    """The uncertainty signal or selection run that the chosen colouring needs."""
    engine = resources.engine()
    if colour == "uncertainty":
        names = explore.score_names(engine, project_id)
        if not names:
            st.warning("No per-frame uncertainty yet: propagate masks (Label page or a *propagate* job) first.")
            return None, None
        return st.selectbox("Signal", names, key="explore_signal"), None
    if colour == "selection run":
        runs = explore.project_selections(engine, project_id)
        if not runs:
            st.warning("No selection run yet: run one on the **Select** page.")
            return None, None
        by_id = {r.id: r for r in runs}
        chosen = st.selectbox("Selection run", list(by_id), key="explore_run",
                              format_func=lambda i: f"run {i}: {by_id[i].strategy}, budget {by_id[i].budget}")
        return None, chosen
    return None, None


def tsne_missing(set_id: int, max_points: int) -> None:
    """Say that the t-SNE map is not cached yet and offer to compute it as a job."""
    st.info("The t-SNE map of this sample is not computed yet. It runs as a *map2d* job (a minute or so for 5,000 "
            "frames on a laptop) and is cached; a running `segloop worker` picks it up.")
    if st.button("Compute the t-SNE map (queue a job)", key="explore_tsne_go", type="primary"):
        try:
            job = library.submit_job(resources.engine(), "map2d",
                                     {"embedding_set_id": set_id, "method": "tsne", "max_points": max_points})
        except ValueError as exc:
            st.error(str(exc))
        else:
            st.session_state["explore_tsne_job"] = job.id
    job_id = st.session_state.get("explore_tsne_job")
    if job_id is not None:
        st.fragment(wait_for_map, run_every=WAIT_SECONDS)(job_id)


def wait_for_map(job_id: int) -> None:
    """The map2d job's progress; once it has finished the page reruns and shows the map (no manual refresh)."""
    try:
        job = library.get_job(resources.engine(), job_id)
    except LookupError:
        st.session_state.pop("explore_tsne_job", None)
        return
    if job.status in ("queued", "running"):
        st.progress(job.progress, text=f"map2d job {job.id} · {job.status} · {job.message or 'waiting for a worker'}")
        return
    st.session_state.pop("explore_tsne_job", None)
    if job.status == "failed":
        st.error(job.error or f"map2d job {job.id} failed")
        return
    st.rerun(scope="app")


def map_frame(points: list[explore.MapPoint]) -> pd.DataFrame:
    """The points as a table for the chart, with thumbnail data URIs for the first TOOLTIP_THUMBS of them."""
    data_dir = str(resources.settings().data_dir)
    return pd.DataFrame({
        "frame_id": [p.frame_id for p in points],
        "x": [p.x for p in points],
        "y": [p.y for p in points],
        "video": [p.video for p in points],
        "frame": [p.index for p in points],
        "status": [p.status for p in points],
        "selection": [p.selection for p in points],
        "rank": [p.selection_rank for p in points],
        "uncertainty": [p.uncertainty for p in points],
        "image": [resources.thumbnail_uri(data_dir, p.thumb_path) if i < TOOLTIP_THUMBS else ""
                  for i, p in enumerate(points)],
    })


def colour_encoding(colour: str) -> alt.Color:
    """The colour channel of the chosen colouring."""
    if colour == "label status":
        return alt.Color("status:N", scale=alt.Scale(domain=list(STATUS_COLOURS), range=list(STATUS_COLOURS.values())))
    if colour == "selection run":
        return alt.Color("selection:N", scale=alt.Scale(domain=list(PICK_COLOURS), range=list(PICK_COLOURS.values())))
    if colour == "uncertainty":
        return alt.Color("uncertainty:Q", scale=alt.Scale(scheme="viridis"))
    return alt.Color("video:N", legend=alt.Legend(columns=1, symbolLimit=30))


def draw_map(points: list[explore.MapPoint], colour: str, project_id: int) -> None:
    """The scatter plot; a click on a point opens that frame, a box dragged around points gathers frames to queue."""
    frame = map_frame(points)
    pick = alt.selection_point(name="frame", fields=["frame_id"], on="click")
    box = alt.selection_interval(name="box", encodings=["x", "y"])
    tooltip = [alt.Tooltip("image:N", title="image"), "video:N", "frame:Q", "status:N"]
    if colour == "selection run":
        tooltip += ["selection:N", "rank:Q"]
    if colour == "uncertainty":
        tooltip.append(alt.Tooltip("uncertainty:Q", format=".3f"))
    chart = (alt.Chart(frame).mark_circle(size=45, opacity=0.8)
             .encode(x=alt.X("x:Q", axis=None), y=alt.Y("y:Q", axis=None), color=colour_encoding(colour),
                     tooltip=tooltip, size=alt.condition(pick, alt.value(140), alt.value(45)))
             .add_params(pick, box).properties(height=520))
    event = st.altair_chart(chart, on_select="rerun", selection_mode=["frame", "box"], key="explore_chart",
                            width="stretch")
    selected = (event or {}).get("selection", {})
    chosen = selected.get("frame", [])
    if chosen and chosen[0].get("frame_id") is not None:
        frame_id = int(chosen[0]["frame_id"])
        if st.session_state.get("explore_clicked") != frame_id:
            st.session_state["explore_clicked"] = frame_id
            st.session_state["explore_frame_id"] = frame_id
    boxed = explore.points_in_box(points, selected.get("box") or {})
    box_panel(boxed, project_id)


def box_panel(boxed: list[explore.MapPoint], project_id: int) -> None:
    """What a box drawn on the map holds, and a button that queues those frames for labeling."""
    if not boxed:
        st.caption("Drag on the map to draw a box around frames and queue them for labeling.")
        return
    videos = sorted({p.video for p in boxed})
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.markdown(f"**{len(boxed)} frame(s) in the box** from {len(videos)} video(s): {', '.join(videos[:6])}"
                  + (" …" if len(videos) > 6 else ""))
    if right.button(f"Queue these {len(boxed)} frames for labeling", key="explore_queue_box", type="primary"):
        try:
            run = explore.queue_frames(resources.engine(), project_id, [p.frame_id for p in boxed], "box on the map")
        except ValueError as exc:
            st.error(str(exc))
            return
        st.session_state["label_queue"] = ("selection", run.id)
        resources.forget_reads()
        st.success(f"Queued {len(boxed)} frame(s) as selection run {run.id}: the **Label** page's queue.")


def frame_panel(set_id: int) -> None:
    """The open frame with its masks, a link to the Label page, and its most similar frames."""
    frame_id = st.session_state.get("explore_frame_id")
    detail = None if frame_id is None else resources.open_frame(frame_id)
    if detail is None:
        return
    picture, side = st.columns([2, 1])
    image = labeling.frame_image(resources.settings().data_dir, detail.frame)
    if detail.annotations:
        image = labeling.overlay(image, detail.label_map(), 0.5)
    picture.image(image, width="stretch")
    if side.button("Label this frame", key="explore_to_label"):
        handoff.open_in_label(detail, side)
    k = int(side.slider("Similar frames", 3, 48, 12, key="explore_k"))
    other_videos = side.toggle("Only from other videos", value=False, key="explore_other_videos",
                               help="Leave out the frame's own video (its neighbours are near-copies of it).")
    if side.button("More like this", key="explore_similar", type="primary"):
        st.session_state["explore_similar_of"] = (set_id, frame_id, k, other_videos)
    if st.session_state.get("explore_similar_of") == (set_id, frame_id, k, other_videos):
        similar_grid(set_id, frame_id, k, other_videos)


def similar_grid(set_id: int, frame_id: int, k: int, other_videos: bool) -> None:
    """Thumbnails of the k frames most similar to the open one (FAISS, cosine), each can be opened."""
    try:
        index = resources.similarity_index(resources.settings().db_url, set_id)
        found = explore.similar_frames(index, frame_id, k, resources.engine(), other_videos)
    except ValueError as exc:
        st.error(str(exc))
        return
    rows = explore.frame_rows(resources.engine(), [f for f, _ in found])
    where = " in other videos" if other_videos else ""
    st.markdown(f"**{len(found)} frames most like this one{where}** (cosine similarity of the embeddings)")
    data_dir = resources.settings().data_dir
    columns = st.columns(SIMILAR_COLUMNS)
    for position, (similar_id, score) in enumerate(found):
        if similar_id not in rows:
            continue
        frame, video_name = rows[similar_id]
        with columns[position % SIMILAR_COLUMNS]:
            st.image(str(data_dir / frame.thumb_path), caption=f"{video_name} #{frame.index} · {score:.3f}")
            if st.button("Open", key=f"explore_open_{similar_id}", width="stretch"):
                st.session_state["explore_frame_id"] = similar_id
                st.rerun()
