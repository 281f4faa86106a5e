"""Explore page: a 2-D map of an embedding set (PCA now, t-SNE as a cached job), coloured by video, label status,
selection run, uncertainty or tag; click a point to open the frame and find frames like it; a lasso or a box gathers
frames to queue for labeling or to tag."""
from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go
import streamlit as st

from segloop.platform.services import artifacts, explore, labeling, library, tags
from segloop.ui import handoff, resources, signin
from segloop.ui.literal import literal

COLOUR_BY = ("video", "label status", "selection run", "uncertainty", "tag")
STATUS_COLOURS = {"unlabeled": "#9e9e9e", "draft": "#ff9800", "submitted": "#2196f3", "reviewed": "#4caf50"}
PICK_COLOURS = {"not picked": "#cfd8dc", "proposed": "#ff9800", "accepted": "#4caf50", "rejected": "#e53935"}
TAGGED_COLOUR, NO_VALUE_COLOUR = "#d81b60", "#bdbdbd"
WEBGL_ABOVE = 2_000  # more points than this are drawn with WebGL (SVG gets slow)
STRIP_THUMBS = 12
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
    choice = colour_options(summary.project.id, colour)
    if method == "tsne" and explore.cached_map(resources.settings(), set_id, method, max_points, 0) is None:
        tsne_missing(set_id, max_points)
        return
    points = resources.map_points(resources.settings().db_url, set_id, method, max_points, 0, choice.signal,
                                  choice.selection_id, choice.tag_id)
    if not points:
        st.info("None of this set's frames are in the database any more.")
        return
    st.caption(f"{len(points)} of {by_id[set_id].count} frames shown · hover a point for its video, frame and status "
               "· click it to open the frame below · lasso or box (map toolbar; back to pan to click again) "
               "to queue or tag frames")
    draw_map(points, colour, summary.project.id, choice.tag_name)
    frame_panel(set_id)


@dataclass(frozen=True)
class ColourChoice:
    """What the chosen colouring needs: an uncertainty signal, a selection run or a tag (id and name)."""

    signal: str | None = None
    selection_id: int | None = None
    tag_id: int | None = None
    tag_name: str | None = None


def colour_options(project_id: int, colour: str) -> ColourChoice:
    """The uncertainty signal, selection run or tag that the chosen colouring needs."""
    engine = resources.engine()
    if colour == "uncertainty":
        names = explore.score_names(engine, project_id)
        if not names:
            st.warning("No per-frame uncertainty yet: propagate masks (Label page or a *propagate* job) first.")
            return ColourChoice()
        return ColourChoice(signal=st.selectbox("Signal", names, key="explore_signal"))
    if colour == "selection run":
        runs = explore.project_selections(engine, project_id)
        if not runs:
            st.warning("No selection run yet: run one on the **Select** page.")
            return ColourChoice()
        by_id = {r.id: r for r in runs}
        chosen = st.selectbox("Selection run", list(by_id), key="explore_run",
                              format_func=lambda i: f"run {i}: {by_id[i].strategy}, budget {by_id[i].budget}")
        return ColourChoice(selection_id=chosen)
    if colour == "tag":
        found = {t.tag.id: t for t in tags.project_tags(engine, project_id)}
        if not found:
            st.warning("No tag yet: draw a lasso or a box around frames on the map and tag them.")
            return ColourChoice()
        chosen = st.selectbox("Tag", list(found), key="explore_colour_tag",
                              format_func=lambda i: f"{found[i].tag.name} ({found[i].frames} frames)")
        return ColourChoice(tag_id=chosen, tag_name=found[chosen].tag.name)
    return ColourChoice()


def tsne_missing(set_id: int, max_points: int) -> None:
    """Say that the t-SNE map is not cached yet and offer to compute it as a job."""
    st.info("The t-SNE map of this sample is not computed yet. It runs as a *map2d* job (a minute or so for 5,000 "
            "frames on a laptop) and is cached; a running `segloop worker` picks it up.")
    if st.button("Compute the t-SNE map (queue a job)", key="explore_tsne_go", type="primary"):
        try:
            job = library.submit_job(resources.engine(), "map2d",
                                     {"embedding_set_id": set_id, "method": "tsne", "max_points": max_points})
        except ValueError as exc:
            st.error(literal(exc))
        else:
            st.session_state["explore_tsne_job"] = job.id
    job_id = st.session_state.get("explore_tsne_job")
    if job_id is not None:
        signin.fragment(wait_for_map, resources.engine(), WAIT_SECONDS)(job_id)


def wait_for_map(job_id: int) -> None:
    """The map2d job's progress; once it has finished the page reruns and shows the map (no manual refresh)."""
    try:
        job = library.get_job(resources.engine(), job_id)
    except LookupError:
        st.session_state.pop("explore_tsne_job", None)
        return
    if job.status in ("queued", "running"):
        st.progress(job.progress, text=f"map2d job {job.id} · {job.status} · "
                                                   f"{literal(job.message or 'waiting for a worker', one_line=True)}")
        return
    st.session_state.pop("explore_tsne_job", None)
    if job.status == "failed":
        st.error(literal(job.error or f"map2d job {job.id} failed"))
        return
    st.rerun(scope="app")


def point_groups(points: list[explore.MapPoint], colour: str, tag_name: str | None
                 ) -> list[tuple[str, str | None, list[explore.MapPoint]]]:
    """(legend name, colour or None for the default palette, points) of each category of the chosen colouring."""
    if colour == "label status":
        key, palette = (lambda p: p.status), STATUS_COLOURS
    elif colour == "selection run":
        key, palette = (lambda p: p.selection), PICK_COLOURS
    elif colour == "tag" and tag_name is not None:
        key, palette = (lambda p: f"tagged {tag_name}" if p.tagged else "not tagged"), {
            f"tagged {tag_name}": TAGGED_COLOUR, "not tagged": PICK_COLOURS["not picked"]}
    else:
        key, palette = (lambda p: p.video), {}
    groups: dict[str, list[explore.MapPoint]] = {name: [] for name in palette}
    for point in points:
        groups.setdefault(key(point), []).append(point)
    return [(name, palette.get(name), members) for name, members in groups.items() if members]


def hover_text(colour: str) -> str:
    """The hover template: video, frame, label status, and what the colouring shows."""
    text = "%{customdata[1]} #%{customdata[2]}<br>%{customdata[3]}"
    if colour == "selection run":
        text += "<br>%{customdata[4]} · rank %{customdata[5]}"
    if colour == "uncertainty":
        text += "<br>uncertainty %{customdata[6]:.3f}"
    return text + "<extra></extra>"


def scatter_trace(members: list[explore.MapPoint], name: str, colour: str) -> go.Scatter | go.Scattergl:
    """One trace of map points; each point's customdata starts with its frame id (what a selection reports)."""
    trace = go.Scattergl if len(members) > WEBGL_ABOVE else go.Scatter
    return trace(
        x=[p.x for p in members], y=[p.y for p in members], mode="markers", name=name,
        customdata=[[p.frame_id, p.video, p.index, p.status, p.selection, p.selection_rank or "",
                     p.uncertainty if p.uncertainty is not None else float("nan")] for p in members],
        hovertemplate=hover_text(colour), marker={"size": 8, "opacity": 0.85})


def map_figure(points: list[explore.MapPoint], colour: str, tag_name: str | None) -> go.Figure:
    """The scatter plot of the map in the chosen colouring (uncertainty: a continuous scale)."""
    figure = go.Figure()
    if colour == "uncertainty":
        valued = [p for p in points if p.uncertainty is not None]
        missing = [p for p in points if p.uncertainty is None]
        if valued:
            trace = scatter_trace(valued, "uncertainty", colour)
            trace.marker.update(color=[p.uncertainty for p in valued], colorscale="Viridis", showscale=True)
            figure.add_trace(trace)
        if missing:
            figure.add_trace(scatter_trace(missing, "no value", colour).update(marker_color=NO_VALUE_COLOUR))
    else:
        for name, fixed, members in point_groups(points, colour, tag_name):
            trace = scatter_trace(members, name, colour)
            if fixed is not None:
                trace.marker.color = fixed
            figure.add_trace(trace)
    figure.update_layout(height=520, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"itemsizing": "constant"})
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure


def draw_map(points: list[explore.MapPoint], colour: str, project_id: int, tag_name: str | None) -> None:
    """The scatter plot; a click on a point opens that frame, a lasso or box gathers frames to queue or tag."""
    event = st.plotly_chart(map_figure(points, colour, tag_name), on_select="rerun",
                            selection_mode=("points", "box", "lasso"), key="explore_chart", width="stretch")
    selection = explore.read_map_selection(points, (event or {}).get("selection"))
    if selection.clicked is not None and st.session_state.get("explore_clicked") != selection.clicked:
        st.session_state["explore_clicked"] = selection.clicked
        st.session_state["explore_frame_id"] = selection.clicked
    selection_panel(selection, project_id)


def selection_panel(selection: explore.MapSelection, project_id: int) -> None:
    """What a lasso or box on the map holds, with a button that queues those frames and a form that tags them."""
    gathered = selection.gathered
    if not gathered:
        st.caption("Draw a lasso or a box around frames (the tools at the top right of the map; shift-click adds "
                   "single points) to queue them for labeling or tag them.")
        return
    videos = sorted({p.video for p in gathered})
    st.markdown(f"**{len(gathered)} frame(s) gathered with the {selection.how}** from {len(videos)} video(s): "
                + literal(", ".join(videos[:6]), one_line=True) + (" …" if len(videos) > 6 else ""))
    data_dir = resources.settings().data_dir
    strip = gathered[:STRIP_THUMBS]
    st.image([str(data_dir / p.thumb_path) for p in strip], width=96,
             caption=[f"{literal(p.video, one_line=True)} #{p.index}" for p in strip])
    queue_col, tag_col = st.columns([1, 2], vertical_alignment="bottom")
    if queue_col.button(f"Queue these {len(gathered)} frames for labeling", key="explore_queue_box", type="primary"):
        queue_gathered(gathered, project_id, selection.how)
    tag_form(gathered, project_id, tag_col)


def queue_gathered(gathered: list[explore.MapPoint], project_id: int, how: str) -> None:
    """Queue the gathered frames as a selection run that becomes the Label page's queue."""
    try:
        run = explore.queue_frames(resources.engine(), project_id, [p.frame_id for p in gathered],
                                   f"{how} on the map")
    except ValueError as exc:
        st.error(literal(exc))
        return
    st.session_state["label_queue"] = ("selection", run.id)
    resources.forget_reads()
    st.success(f"Queued {len(gathered)} frame(s) as selection run {run.id}: the **Label** page's queue.")


def tag_form(gathered: list[explore.MapPoint], project_id: int, column) -> None:
    """A tag name (an existing tag or a new one typed in) and buttons that tag or untag the gathered frames."""
    existing = [t.tag.name for t in tags.project_tags(resources.engine(), project_id)]
    with column:
        name_col, add_col, remove_col = st.columns([2, 1, 1], vertical_alignment="bottom")
        name = name_col.selectbox("Tag", existing, index=None, accept_new_options=True, key="explore_tag_name",
                                  placeholder="type a tag (night, blurry, …) or pick one")
        add = add_col.button(f"Tag these {len(gathered)} frames", key="explore_tag_add")
        remove = remove_col.button("Remove the tag", key="explore_tag_remove", disabled=name not in existing)
    note = st.session_state.pop("explore_tag_note", None)
    if note:
        st.success(literal(note))
    if not (add or remove):
        return
    change = tags.tag_frames if add else tags.untag_frames
    try:
        done = change(resources.engine(), project_id, name or "", [p.frame_id for p in gathered])
    except (ValueError, LookupError) as exc:
        st.error(literal(exc))
        return
    verb, unchanged = ("tagged", "already were") if add else ("untagged", "did not carry it")
    st.session_state["explore_tag_note"] = (f"{done.changed} frame(s) {verb} {done.tag.name!r}"
                                            + (f" ({done.unchanged} {unchanged})" if done.unchanged else ""))
    resources.forget_reads()
    st.rerun()


def frame_panel(set_id: int) -> None:
    """The open frame with its masks, a link to the Label page, and its most similar frames."""
    frame_id = st.session_state.get("explore_frame_id")
    detail = None if frame_id is None else resources.open_frame(frame_id, "explore_frame_id")
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
        st.error(literal(exc))
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
            st.image(str(data_dir / frame.thumb_path),
                     caption=f"{literal(video_name, one_line=True)} #{frame.index} · {score:.3f}")
            if st.button("Open", key=f"explore_open_{similar_id}", width="stretch"):
                st.session_state["explore_frame_id"] = similar_id
                st.rerun()
