"""Label page: the labeling queue, a paint / erase / polygon editor per frame, versioned saves with conflict checks."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from segloop.platform.core.backbones import BACKBONE_NAMES, DEFAULT_BACKBONE
from segloop.platform.services import explore, labeling, library, review
from segloop.platform.services.labeling import ConflictError, FrameInfo, VideoInfo
from segloop.ui import resources, signin
from segloop.ui.mask_canvas import mask_canvas

QUEUE_PAGE = 50
NEW_CLASS = "➕ new class"


@dataclass
class EditorState:
    """The editor state of the open frame: the label map edits start from, and what was loaded."""

    frame: FrameInfo
    video: VideoInfo
    base: np.ndarray
    versions: dict[int, int]
    classes: dict[int, int | None]
    statuses: dict[int, str]
    nonce: int = 0
    notes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def token(self) -> str:
        """Identifies the canvas content; a new token clears the canvas's edit list."""
        versions = ",".join(f"{k}:{v}" for k, v in sorted(self.versions.items()))
        return f"{self.frame.id}|{versions}|{self.nonce}"

    @property
    def frame_id(self) -> int:
        """The open frame's id."""
        return self.frame.id


@dataclass(frozen=True)
class Source:
    """Where the queue comes from: a selection run, a video, or the whole project."""

    project_id: int
    video_id: int | None = None
    selection_id: int | None = None
    include_done: bool = False


def render() -> None:
    """Draw the page."""
    st.title("Label")
    source = choose_source()
    if source is None:
        return
    frame_id = current_frame(source)
    if frame_id is None:
        return
    editor(source, frame_id)


def choose_source() -> Source | None:
    """Project and queue (selection run or video) chosen at the top of the page."""
    engine = resources.engine()
    summaries = resources.project_summaries(resources.settings().db_url)
    if not summaries:
        st.info("Nothing to label yet: upload footage on the Upload page first.")
        return None
    project_col, queue_col, done_col = st.columns([1, 2, 1], vertical_alignment="bottom")
    names = [s.project.name for s in summaries]
    chosen = project_col.selectbox("Project", names, key="label_project")
    project = next(s.project for s in summaries if s.project.name == chosen)
    runs = explore.project_selections(engine, project.id)
    videos = library.project_videos(engine, project.id)
    if not videos:
        st.info("This project has no videos yet.")
        return None
    options = [("selection", r.id) for r in runs] + [("video", v.id) for v in videos] + [("project", None)]
    run_by_id = {r.id: r for r in runs}
    video_by_id = {v.id: v for v in videos}

    def describe(option: tuple[str, int | None]) -> str:
        """Label of a queue option."""
        kind, ident = option
        if kind == "selection":
            run = run_by_id[ident]
            return f"Selection run {run.id}: {run.strategy}, budget {run.budget}"
        if kind == "video":
            return f"Video {video_by_id[ident].name} ({video_by_id[ident].frame_count} frames)"
        return "All frames of the project"

    kind, ident = queue_col.selectbox("Queue", options, format_func=describe, key="label_queue")
    include_done = done_col.toggle("Include done frames", key="label_include_done")
    return Source(project.id, ident if kind == "video" else None, ident if kind == "selection" else None, include_done)


def queue_args(source: Source) -> dict:
    """Keyword arguments selecting the queue in the labeling service."""
    return dict(video_id=source.video_id, selection_id=source.selection_id, include_done=source.include_done)


def current_frame(source: Source) -> int | None:
    """The frame to edit: one asked for by the Library, the one open, or the first of the queue."""
    engine = resources.engine()
    requested = st.session_state.pop("label_frame_request", None)
    if requested is not None:
        st.session_state["label_frame_id"] = requested
    page_number = st.session_state.get("label_queue_page", 1)
    queue = labeling.label_queue(engine, source.project_id, offset=(page_number - 1) * QUEUE_PAGE, limit=QUEUE_PAGE,
                                 **queue_args(source))
    if st.session_state.get("label_source") != source:
        st.session_state["label_source"] = source
        if requested is None:
            st.session_state["label_frame_id"] = queue.items[0].frame.id if queue.items else None
    frame_id = st.session_state.get("label_frame_id")
    with st.expander(f"Queue: {queue.total} frame(s) to label", expanded=frame_id is None):
        pages = max(1, -(-queue.total // QUEUE_PAGE))
        if pages > 1:
            st.number_input("Queue page", min_value=1, max_value=pages, step=1, key="label_queue_page")
        if queue.items:
            picked = st.dataframe(
                [{"video": q.video_name, "frame": q.frame.index, "status": q.status, "rank": q.rank}
                 for q in queue.items],
                hide_index=True, on_select="rerun", selection_mode="single-row", key="label_queue_table",
            )
            rows = picked.selection.rows if picked is not None else []
            if rows and queue.items[rows[0]].frame.id != frame_id and st.session_state.get("label_picked") != rows[0]:
                st.session_state["label_picked"] = rows[0]
                st.session_state["label_frame_id"] = queue.items[rows[0]].frame.id
                st.rerun()
        else:
            st.success("The queue is empty: every frame here is submitted or reviewed.")
    if frame_id is None:
        return None
    prev_col, next_col, info_col = st.columns([1, 1, 4], vertical_alignment="bottom")
    steps = ((prev_col, -1, "← Previous", "Alt+Left"), (next_col, 1, "Next →", "Alt+Right"))
    for column, step, label, shortcut in steps:
        if column.button(label, key=f"label_step_{step}", shortcut=shortcut):
            neighbour = labeling.queue_neighbour(engine, source.project_id, frame_id, step, **queue_args(source))
            if neighbour is None:
                st.toast("No more frames in this direction of the queue.")
            else:
                st.session_state["label_frame_id"] = neighbour.id
                st.rerun()
    info_col.caption("Alt+← / Alt+→ move through the queue · Z undoes the last edit on the canvas")
    return frame_id


def load(frame_id: int, nonce: int = 0) -> EditorState:
    """Open a frame: its newest masks become the draft to edit."""
    loaded = labeling.load_frame_labels(resources.engine(), frame_id)
    return EditorState(loaded.frame, loaded.video, loaded.labels, loaded.versions, loaded.classes, loaded.statuses,
                       nonce)


def editor(source: Source, frame_id: int) -> None:
    """Tools, canvas, object list and save / submit / review actions for one frame."""
    session: EditorState | None = st.session_state.get("label_session")
    if session is None or session.frame_id != frame_id:
        try:
            session = load(frame_id)
        except LookupError as exc:
            st.warning(str(exc))
            st.session_state["label_frame_id"] = None
            return
        st.session_state["label_session"] = session
    st.subheader(f"{session.video.name} · frame #{session.frame.index}")
    feedback = review.frame_feedback(resources.engine(), frame_id)
    if feedback is not None:
        st.warning(f"Sent back by {feedback.actor}: {feedback.comment}", icon=":material/rate_review:")
    for kind, text in session.notes:
        getattr(st, kind)(text)
    session.notes = []
    tool_col, erase_col, radius_col, object_col, class_col = st.columns([1, 1, 1, 1, 2], vertical_alignment="bottom")
    tool = tool_col.radio("Tool", labeling.TOOLS, horizontal=True, key="label_tool")
    erase = erase_col.toggle("Erase", key="label_erase")
    radius = radius_col.slider("Brush radius", 1, 60, 8, key="label_radius")
    object_id = int(object_col.number_input("Object id", min_value=1, max_value=255, value=1, step=1,
                                            key="label_object"))
    class_id = choose_class(class_col, source.project_id, object_id, session)
    image = labeling.frame_image(resources.settings().data_dir, session.frame)
    edits = mask_canvas(key="label_canvas", image=image, labels=session.base, token=session.token, tool=tool,
                        erase=erase, object_id=object_id, radius=radius)
    working = labeling.apply_edits(session.base, edits)
    classes = dict(session.classes)
    if class_id is not None or object_id in classes:
        classes[object_id] = class_id
    object_table(working, session)
    actions(frame_id, session, working, classes)
    import_mask(session)
    propagate_panel(session)


def choose_class(column, project_id: int, object_id: int, session: EditorState) -> int | None:
    """The label class for the chosen object (a new class can be added by name)."""
    current = session.classes.get(object_id)
    engine = resources.engine()
    classes = labeling.label_classes(engine, project_id)
    by_id = {c.id: c for c in classes}
    options = [None] + [c.id for c in classes] + [NEW_CLASS]
    key = f"label_class_{session.frame_id}_{session.nonce}_{object_id}"
    pending = st.session_state.pop("label_class_pending", None)
    if pending is not None and pending[0] == object_id and pending[1] in by_id:
        st.session_state.pop(key, None)
        current = pending[1]
    choice = column.selectbox("Class", options, index=options.index(current) if current in by_id else 0, key=key,
                              format_func=lambda c: "(none)" if c is None else c if c == NEW_CLASS else by_id[c].name)
    if choice != NEW_CLASS:
        return choice
    name = column.text_input("New class name", key="label_new_class")
    if column.button("Add class", key="label_add_class", disabled=not name.strip()):
        try:
            created = labeling.add_label_class(engine, project_id, name)
        except ValueError as exc:
            st.error(str(exc))
            return None
        st.session_state["label_class_pending"] = (object_id, created.id)
        st.rerun()
    return None


def object_table(working: np.ndarray, session: EditorState) -> None:
    """The objects on the frame: area now, version and status when loaded."""
    ids, areas = np.unique(working, return_counts=True)
    area_by_id = {int(i): int(a) for i, a in zip(ids, areas) if i}
    rows = [{"object": k, "area px": area_by_id.get(k, 0), "loaded version": session.versions.get(k, 0),
             "status": session.statuses.get(k, "new"), "class": session.classes.get(k)}
            for k in sorted(set(area_by_id) | set(session.versions))]
    if rows:
        st.dataframe(rows, hide_index=True)
    else:
        st.caption("No objects yet: paint with the brush or draw a polygon.")


def actions(frame_id: int, session: EditorState, working: np.ndarray, classes: dict[int, int | None]) -> None:
    """Save draft, submit, mark reviewed, reload."""
    save_col, submit_col, review_col, reload_col = st.columns(4)
    status = None
    if save_col.button("Save draft", type="primary", key="label_save", shortcut="Ctrl+S"):
        status = "draft"
    if submit_col.button("Submit", key="label_submit"):
        status = "submitted"
    if review_col.button("Mark reviewed", key="label_review", disabled=not signin.may("review")):
        status = "reviewed"
    if reload_col.button("Reload (discard edits)", key="label_reload"):
        fresh = load(frame_id, session.nonce + 1)
        fresh.notes = [("info", "Reloaded the newest saved masks.")]
        st.session_state["label_session"] = fresh
        st.rerun()
    st.caption(f"Saved as **{signin.current_actor().name}**.")
    if status is None:
        return
    try:
        outcome = labeling.save_frame_labels(resources.engine(), frame_id, working, session.versions, classes,
                                             status=status)
    except ConflictError as exc:
        st.error(f"Not saved: {exc}. Use **Reload** to load the newer masks (your edits are still on the canvas).")
        return
    except ValueError as exc:
        st.error(f"Not saved: {exc}")
        return
    fresh = load(frame_id, session.nonce + 1)
    if outcome.changed:
        saved = ", ".join(f"object {k} → version {v}" for k, v in sorted(outcome.saved.items()))
        moved = ", ".join(f"object {k}" for k in outcome.restatused)
        fresh.notes = [("success", f"Saved as {status}: {saved or 'no mask changes'}"
                                   f"{'; status set on ' + moved if moved else ''}.")]
    else:
        fresh.notes = [("info", "Nothing to save: no mask, class or status changed.")]
    st.session_state["label_session"] = fresh
    resources.forget_reads()
    st.rerun()


def import_mask(session: EditorState) -> None:
    """Replace the canvas content with an uploaded mask PNG (saved only when you press Save)."""
    with st.expander("Import a mask file (PNG)"):
        upload = st.file_uploader("Palette PNG (value = object id) or 0/255 PNG", type=["png"],
                                  key=f"label_import_{session.frame_id}_{session.nonce}")
        if upload is not None and st.button("Use this mask", key="label_import_go"):
            try:
                labels = labeling.import_mask_png(upload.getvalue(), upload.name, session.video.stored_height,
                                                  session.video.stored_width)
            except ValueError as exc:
                st.error(str(exc))
                return
            session.base = labels
            session.nonce += 1
            session.notes = [("info", f"Imported {upload.name}: press Save draft or Submit to store it.")]
            st.rerun()


def propagate_panel(session: EditorState) -> None:
    """Propagate the video's labeled frames to its other frames as drafts: here for short videos, else as a job."""
    video = session.video
    inline = video.frame_count <= labeling.INLINE_PROPAGATION_MAX_FRAMES
    with st.expander(f"Propagate from my labeled frames to the rest of {video.name}"):
        st.caption("Unlabeled frames of this video get *propagated* draft masks to correct instead of painting from "
                   "scratch; frames with your masks are never overwritten. "
                   + ("Short video: runs here." if inline else "Runs as a propagate job (`segloop worker`)."))
        method_col, backbone_col, last_col, size_col = st.columns(4)
        method = method_col.selectbox("Method", labeling.PROPAGATION_METHODS, key="label_prop_method",
                                      help="auto: the project's best model on this video (its pretrained encoder "
                                           "when there is one, checked against your labelled frames), else colour.")
        backbone = backbone_col.selectbox("Backbone", BACKBONE_NAMES, index=BACKBONE_NAMES.index(DEFAULT_BACKBONE),
                                          key="label_prop_backbone", disabled=method != "backbone")
        last = int(last_col.number_input("Use the last N labeled frames (0 = all)", min_value=0, value=0,
                                         key="label_prop_last"))
        short_side = int(size_col.number_input("Working short side (px)", min_value=32, max_value=1080, value=480,
                                               step=32, key="label_prop_size"))
        if not st.button("Propagate", key="label_propagate", type="primary"):
            return
    request = labeling.PropagationRequest(method, backbone, None, last, short_side)
    engine = resources.engine()
    try:
        if not inline:
            job = labeling.submit_propagation(engine, video.id, request)
            session.notes = [("success", f"Queued propagate job {job.id} for {video.name}; drafts appear as a worker "
                                         "finishes it (see **Jobs**).")]
            st.rerun()
        with st.spinner(f"Propagating through {video.frame_count} frames…"):
            outcome = labeling.propagate_inline(engine, resources.settings(), video.id, request)
    except ValueError as exc:
        st.error(f"Not propagated: {exc}")
        return
    scores = ", ".join(f"{k} {v:.3f}" for k, v in outcome.scores.items())
    fresh = load(session.frame_id, session.nonce + 1)
    fresh.notes = [("success", f"Propagated from frames {outcome.keyframes}: {outcome.drafts} draft frame(s)"
                               f"{'; held-out ' + scores if scores else ''}.")]
    st.session_state["label_session"] = fresh
    resources.forget_reads()
    st.rerun()
