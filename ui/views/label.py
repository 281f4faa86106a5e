"""Label page: the labeling queue and the mask editor (edits stay in the browser until an action), versioned saves
with conflict checks, click assist, and propagate-and-correct with a timeline of the video's drafts."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st

from segloop.platform.core.backbones import BACKBONE_NAMES, DEFAULT_BACKBONE
from segloop.platform.core.errors import user_message
from segloop.platform.services import assist, explore, labeling, library, propagation, review, timeline
from segloop.platform.services.labeling import ConflictError, FrameInfo, FrameLabels, VideoInfo
from segloop.ui import resources, signin
from segloop.ui.literal import literal
from segloop.ui.mask_canvas import data_url, mask_canvas, pending_action

QUEUE_PAGE = 50
CANVAS_KEY = "label_canvas"
EDITOR_SHORT_SIDE = 480


@dataclass
class EditorState:
    """The open frame: the saved label map the browser starts from, what was loaded, and replies for the browser."""

    frame: FrameInfo
    video: VideoInfo
    base: np.ndarray
    versions: dict[int, int]
    classes: dict[int, int | None]
    statuses: dict[int, str]
    sources: dict[int, str] = field(default_factory=dict)
    nonce: int = 0
    review_step: int = 0  # the frame's newest review event when loaded (a decision since is a conflict)
    notes: list[tuple[str, str]] = field(default_factory=list)
    conflict: FrameLabels | None = None
    replies: dict[str, Any] = field(default_factory=dict)

    @property
    def token(self) -> str:
        """Identifies the canvas content; a new token makes the browser start over from `base`."""
        versions = ",".join(f"{k}:{v}" for k, v in sorted(self.versions.items()))
        return f"{self.frame.id}|{versions}|{self.nonce}"

    @property
    def frame_id(self) -> int:
        """The open frame's id."""
        return self.frame.id

    @property
    def is_propagated_draft(self) -> bool:
        """Whether the frame held only propagation drafts when it was opened."""
        return bool(self.sources) and all(s == "propagated" for s in self.sources.values())


@dataclass(frozen=True)
class Source:
    """Where the queue comes from: a selection run, a video, or the whole project."""

    project_id: int
    video_id: int | None = None
    selection_id: int | None = None
    include_done: bool = False


def render() -> None:
    """Draw the page: queue choice, the editor, then the queue table and the other panels."""
    source = choose_source()
    if source is None:
        return
    frame_id = current_frame(source)
    if frame_id is not None:
        editor(source, frame_id)
    queue_table(source)


def choose_source() -> Source | None:
    """Project and queue (selection run or video) chosen at the top of the page."""
    engine = resources.engine()
    summaries = resources.project_summaries(resources.settings().db_url)
    if not summaries:
        st.title("Label")  # with a frame open the editor's own title line names the page (it fits one screen)
        st.info("Nothing to label yet: upload footage on the Upload page first.")
        return None
    frame_from_link()
    follow_frame_request(engine, {s.project.name for s in summaries})
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
    if st.session_state.get("label_queue") not in options:
        st.session_state.pop("label_queue", None)
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


def frame_from_link() -> None:
    """A link to `/label?frame=ID` asks for that frame once (pages handing a frame over also ask directly)."""
    raw = st.query_params.get("frame")
    if raw is None or st.session_state.get("label_link_frame") == raw:
        return
    st.session_state["label_link_frame"] = raw
    if not (raw.isascii() and raw.isdigit()):
        st.warning(f"frame: {literal(repr(raw))} in the link is not a frame id")
        return
    st.session_state.setdefault("label_frame_request", int(raw))


def follow_frame_request(engine, visible: set[str]) -> None:
    """A frame asked for by the Library, Explore or a link opens under its own project, in its video's queue."""
    requested = st.session_state.get("label_frame_request")
    if requested is None:
        return
    try:
        project_name, video_id = labeling.frame_project(engine, requested)
    except LookupError:
        project_name = video_id = None  # a frame that does not exist reads as one of a project you cannot open
    if project_name not in visible:
        st.session_state.pop("label_frame_request", None)
        st.warning(resources.unreachable_frame(requested))
        return
    st.session_state["label_project"] = project_name
    st.session_state["label_queue"] = ("video", video_id)


def queue_args(source: Source) -> dict:
    """Keyword arguments selecting the queue in the labeling service."""
    return dict(video_id=source.video_id, selection_id=source.selection_id, include_done=source.include_done)


def current_frame(source: Source) -> int | None:
    """The frame to edit: one asked for by the Library, the one open, or the first of the queue."""
    requested = st.session_state.pop("label_frame_request", None)
    if st.session_state.get("label_source") != source:
        st.session_state["label_source"] = source
        first = labeling.label_queue(resources.engine(), source.project_id, limit=1, **queue_args(source)).items
        st.session_state["label_frame_id"] = first[0].frame.id if first else None
    if requested is not None:
        st.session_state["label_frame_id"] = requested
    return st.session_state.get("label_frame_id")


def queue_table(source: Source) -> None:
    """The queue, one page at a time; picking a row opens that frame (asking about unsaved edits is the editor's)."""
    page_number = st.session_state.get("label_queue_page", 1)
    queue = labeling.label_queue(resources.engine(), source.project_id, offset=(page_number - 1) * QUEUE_PAGE,
                                 limit=QUEUE_PAGE, **queue_args(source))
    frame_id = st.session_state.get("label_frame_id")
    with st.expander(f"Queue: {queue.total} frame(s) to label", expanded=frame_id is None):
        pages = max(1, -(-queue.total // QUEUE_PAGE))
        if pages > 1:
            st.number_input("Queue page", min_value=1, max_value=pages, step=1, key="label_queue_page")
        if not queue.items:
            st.success("The queue is empty: every frame here is submitted or reviewed.")
            return
        picked = st.dataframe(
            [{"video": q.video_name, "frame": q.frame.index, "status": q.status, "rank": q.rank} for q in queue.items],
            hide_index=True, on_select="rerun", selection_mode="single-row", key="label_queue_table",
        )
        rows = picked.selection.rows if picked is not None else []
        if rows and queue.items[rows[0]].frame.id != frame_id and st.session_state.get("label_picked") != rows[0]:
            st.session_state["label_picked"] = rows[0]
            st.session_state["label_frame_id"] = queue.items[rows[0]].frame.id
            st.rerun()


def load(frame_id: int, nonce: int = 0) -> EditorState:
    """Open a frame: its newest masks are what the browser starts editing from."""
    loaded = labeling.load_frame_labels(resources.engine(), frame_id)
    return EditorState(loaded.frame, loaded.video, loaded.labels, loaded.versions, loaded.classes, loaded.statuses,
                       loaded.sources, nonce, review_step=loaded.review_step)


def open_session(frame_id: int) -> EditorState | None:
    """The editor state of `frame_id`, loaded when another frame (or none) was open."""
    session: EditorState | None = st.session_state.get("label_session")
    if session is not None and session.frame_id == frame_id:
        return session
    try:
        session = load(frame_id)
    except LookupError as exc:
        st.warning(literal(user_message(exc)))
        st.session_state["label_frame_id"] = None
        return None
    st.session_state["label_session"] = session
    return session


def editor(source: Source, frame_id: int) -> None:
    """Handle what the browser sent, then draw the editor with the frame's timeline, and the panels below it."""
    session = open_session(frame_id)
    if session is None:
        return
    feedback = review.frame_feedback(resources.engine(), frame_id)
    if feedback is not None:
        st.warning(f"Sent back by {literal(feedback.actor)}: {literal(feedback.comment)}",
                   icon=":material/rate_review:")
    progress = st.empty()
    action = pending_action(CANVAS_KEY)
    if action is not None and action.get("id") != st.session_state.get("label_handled"):
        st.session_state["label_handled"] = action.get("id")
        session = handle(source, session, action, progress) or session
    progress.empty()
    settings = resources.settings()
    try:
        image = labeling.frame_image(settings.data_dir, session.frame)
    except ValueError as exc:
        st.error(literal(user_message(exc)))
        return
    line = timeline.video_timeline(resources.engine(), session.video.id)
    classes = labeling.label_classes(resources.engine(), source.project_id)
    extra = {
        "timeline": {"kinds": line.kinds, "disagreement": list(line.disagreement), "index": session.frame.index,
                     "worst": line.worst_draft()},
        "classes": [{"id": c.id, "name": c.name} for c in classes],
        "object_classes": {str(k): v for k, v in session.classes.items()},
        "may_review": signin.may("review"),
        **session.replies,
    }
    status = labeling.frame_status(session.statuses)
    mask_canvas(key=CANVAS_KEY, frame_id=session.frame_id, token=session.token, image=image, labels=session.base,
                title=f"{session.video.name} · frame #{session.frame.index} · {status}", extra=extra)
    for kind, text in session.notes:
        getattr(st, kind)(text)
    session.notes = []
    pick = propagation.pick_propagator(session.video.id, EDITOR_SHORT_SIDE, settings=settings)
    st.caption(f"Drafts come from the project's best propagator on this video: {literal(pick.describe())}.")
    st.caption(f"Saved as **{literal(signin.current_actor().name, one_line=True)}**.")
    saved_objects(session)
    import_mask(session)
    propagate_panel(session)


# ---------------------------------------------------------------- actions from the browser


def handle(source: Source, session: EditorState, action: dict, progress) -> EditorState | None:
    """Carry out one action from the browser; returns the editor state to show next (None: unchanged)."""
    kept = {k: v for k, v in session.replies.items() if k in ("conflict", "superpixels")}
    session.replies = {**kept, "acknowledged": action.get("id")}
    kind = action.get("kind")
    if action.get("frame_id") != session.frame_id or action.get("token") != session.token:
        session.notes = [("warning", "That action was made on a frame that is no longer open here; nothing was done. "
                                     "Your edits there are kept in this browser until you open it again.")]
        return None
    try:
        if kind == "save":
            return save(source, session, action, action.get("status", "draft"), progress=progress)
        if kind == "resolve":
            if action.get("choice") == "theirs" or session.conflict is None:
                return reloaded(session, "Loaded the newer version; your edits were dropped.")
            return save(source, session, action, action.get("status", "draft"), versions=session.conflict.versions,
                        review_step=session.conflict.review_step, progress=progress)
        if kind == "goto":
            return goto(source, session, action)
        if kind == "reload":
            return reloaded(session, "Reloaded the newest saved masks.")
        if kind == "propagate":
            return propagate_here(source, session, action, progress)
        if kind == "grabcut":
            return grabcut(session, action)
        if kind == "superpixels":
            image = labeling.frame_image(resources.settings().data_dir, session.frame)
            session.replies["superpixels"] = {"frame_id": session.frame_id,
                                              "runs": labeling.label_runs(assist.superpixels(image))}
            return None
        if kind == "add_class":
            object_id = action_object_id(action)
            created = labeling.add_label_class(resources.engine(), source.project_id, str(action.get("name", "")))
            session.classes[object_id] = created.id
            session.replies["assign"] = {"id": action.get("id"), "object_id": object_id, "class_id": created.id}
            session.notes = [("success", f"Class '{literal(created.name)}' added and set on object {object_id}; "
                                         "save to store it.")]
            return None
    except ValueError as exc:
        session.notes = [("error", f"Not done: {literal(user_message(exc))}")]
        session.replies["message"] = f"Not done: {user_message(exc)}"
        return None
    session.notes = [("warning", f"Unknown editor action {literal(repr(kind))}; nothing was done.")]
    return None


def edited_labels(session: EditorState, action: dict) -> tuple[np.ndarray, dict[int, int | None]]:
    """The label map and object classes the browser sent with an action."""
    labels = labeling.labels_from_runs(action.get("labels"), *session.base.shape)
    known = {c.id for c in labeling.label_classes(resources.engine(), session.video.project_id)}
    classes = dict(session.classes)
    classes.update(labeling.object_classes_from(action.get("classes"), known))
    return labels, classes


def save(source: Source, session: EditorState, action: dict, status: str, *, versions: dict[int, int] | None = None,
         review_step: int | None = None, progress=None, move_on: bool = True) -> EditorState | None:
    """Store the browser's label map; on a conflict keep the edits in the browser and show the newer version."""
    labels, classes = edited_labels(session, action)
    engine = resources.engine()
    try:
        outcome = labeling.save_frame_labels(
            engine, session.frame_id, labels, versions or session.versions, classes, status=status,
            review_step=session.review_step if review_step is None else review_step)
    except ConflictError as exc:
        newer = labeling.load_frame_labels(engine, session.frame_id)
        session.conflict = newer
        session.notes = [("error", f"Not saved: {literal(exc)}. Your edits stay on the canvas next to the newer "
                                   "version: keep yours (saved over it) or take theirs.")]
        session.replies["conflict"] = {"message": str(exc), "overlay": data_url(labeling.colorize(newer.labels), "png")}
        return None
    resources.forget_reads()
    if outcome.changed:
        saved = ", ".join(f"object {k} → version {v}" for k, v in sorted(outcome.saved.items()))
        moved = ", ".join(f"object {k}" for k in outcome.restatused)
        note = (f"Saved as {status}: {saved or 'no mask changes'}{'; status set on ' + moved if moved else ''}.")
    else:
        note = "Nothing to save: no mask, class or status changed."
    notes = [("success" if outcome.changed else "info", note)]
    if session.is_propagated_draft and outcome.saved:
        notes.append(repropagate_span(session, progress))
    fresh = load(session.frame_id, session.nonce + 1)
    fresh.replies = {"acknowledged": action.get("id"), "saved": True, "message": note}
    fresh.notes = notes
    if status == "submitted" and move_on:
        following = labeling.queue_neighbour(engine, source.project_id, session.frame_id, 1, **queue_args(source))
        if following is not None:
            moved_to = load(following.id)
            moved_to.replies = fresh.replies
            moved_to.notes = notes + [("info", f"Submitted; this is the next frame of the queue (#{following.index}).")]
            return switch_to(moved_to)
    return switch_to(fresh)


def switch_to(session: EditorState) -> EditorState:
    """Make `session` the open frame."""
    st.session_state["label_session"] = session
    st.session_state["label_frame_id"] = session.frame_id
    return session


def reloaded(session: EditorState, note: str) -> EditorState:
    """The frame's newest saved masks, replacing what the browser holds."""
    fresh = load(session.frame_id, session.nonce + 1)
    fresh.replies = {"acknowledged": session.replies.get("acknowledged"), "saved": True, "message": note}
    fresh.notes = [("info", note)]
    return switch_to(fresh)


def goto(source: Source, session: EditorState, action: dict) -> EditorState | None:
    """Open the next / previous queue frame, a timeline frame, or the worst draft (saving a draft first if asked)."""
    engine = resources.engine()
    target = action.get("target")
    line = timeline.video_timeline(engine, session.video.id)
    if target == "next":
        found = labeling.queue_neighbour(engine, source.project_id, session.frame_id, 1, **queue_args(source))
        destination = None if found is None else found.id
    elif target == "prev":
        args = {**queue_args(source), "include_done": True}  # Previous returns to frames just submitted
        found = labeling.queue_neighbour(engine, source.project_id, session.frame_id, -1, **args)
        destination = None if found is None else found.id
    elif target == "worst":
        worst = line.worst_draft()
        destination = None if worst is None else line.frame_ids[worst]
    elif target == "index" and isinstance(action.get("index"), int) and 0 <= action["index"] < len(line.frame_ids):
        destination = line.frame_ids[action["index"]]
    else:
        destination = None
    if destination is None:
        note = ("No scored draft in this video yet: propagate first." if target == "worst"
                else "No more frames in this direction of the queue.")
        session.notes = [("info", note)]
        session.replies["message"] = note
        return None
    if action.get("save"):
        saved = save(source, session, action, "draft", move_on=False)
        if saved is None:
            return None
    arrived = load(destination)
    arrived.replies = {"acknowledged": action.get("id"), "saved": bool(action.get("save"))}
    return switch_to(arrived)


def propagate_here(source: Source, session: EditorState, action: dict, progress) -> EditorState | None:
    """Save the frame's edits if any, then propagate from it N frames forward or backward with the best model."""
    direction, count = action.get("direction"), action.get("count")
    if direction not in (1, -1) or isinstance(direction, bool):
        raise labeling.LabelingError(f"direction: {direction!r} is not 1 (forward) or -1 (backward)")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 200:
        raise labeling.LabelingError(f"frames to propagate: {count!r} is not a number in 1..200")
    if action.get("dirty"):
        session = save(source, session, action, "draft", move_on=False)
        if session is None:
            return None
    settings = resources.settings()
    pick = propagation.pick_propagator(session.video.id, EDITOR_SHORT_SIDE, settings=settings)
    bar = progress.progress(0.0, text=f"Loading {pick.name}…")
    started = time.perf_counter()
    featurizer = editor_propagator(pick)

    def step(done: int, total: int) -> None:
        """Progress in place, above the canvas."""
        bar.progress(done / max(total, 1), text=f"Propagating with {pick.name}: frame {done} of {total}")

    try:
        outcome = propagation.propagate_from_frame(session.video.id, session.frame.index, direction, count,
                                                   featurizer, EDITOR_SHORT_SIDE, settings=settings, on_frame=step)
    except ValueError as exc:
        raise labeling.LabelingError(user_message(exc)) from None
    seconds = time.perf_counter() - started
    resources.forget_reads()
    note = (f"Propagated {outcome.drafts} draft frame(s) {'forward' if direction == 1 else 'backward'} from frame "
            f"#{session.frame.index} with {pick.name} in {seconds:.1f} s; the timeline shows where the drafts drift.")
    session.notes = session.notes + [("success", note)]
    session.replies.update({"message": note, "acknowledged": action.get("id"), "propagated_s": round(seconds, 2)})
    return session


def repropagate_span(session: EditorState, progress) -> tuple[str, str]:
    """After a draft was corrected (now a human keyframe), propagate again only over the drafts next to it."""
    settings = resources.settings()
    line = timeline.video_timeline(resources.engine(), session.video.id)
    span = line.affected_span(session.frame.index)
    if span is None:
        return ("info", "No neighbouring drafts to update.")
    pick = propagation.pick_propagator(session.video.id, EDITOR_SHORT_SIDE, settings=settings)
    bar = progress.progress(0.0, text="Updating the neighbouring drafts…") if progress is not None else None
    outcome = propagation.propagate_window(
        session.video.id, span[0], span[1], editor_propagator(pick), propagation.editor_config(EDITOR_SHORT_SIDE),
        settings=settings, on_frame=(lambda d, t: bar.progress(d / max(t, 1))) if bar is not None else None)
    return ("success", f"Your correction is now a keyframe: re-propagated frames #{span[0]}–#{span[1]} "
                       f"({outcome.drafts} draft(s)).")


def grabcut(session: EditorState, action: dict) -> None:
    """A GrabCut proposal for the box the browser sent, applied there as an undoable edit."""
    image = labeling.frame_image(resources.settings().data_dir, session.frame)
    box = assist.clip_box(action.get("box"), *image.shape[:2])
    object_id = action_object_id(action)
    mask = assist.grabcut_proposal(image, box)
    session.replies.update({"proposal": {"id": action.get("id"), "frame_id": session.frame_id, "object_id": object_id,
                                         "box": list(box), "runs": labeling.label_runs(mask.astype(np.uint8))},
                            "message": f"GrabCut proposal: {int(mask.sum())} pixels for object {object_id}."})


def action_object_id(action: dict) -> int:
    """The object id an action names (1..255), or LabelingError naming the field."""
    object_id = action.get("object_id")
    if not isinstance(object_id, int) or isinstance(object_id, bool) or not 1 <= object_id <= 255:
        raise labeling.LabelingError(f"object_id: {object_id!r} is not an integer in 1..255")
    return object_id


@st.cache_resource(max_entries=2, show_spinner=False)
def editor_propagator(pick: propagation.PropagatorPick):
    """The project's propagator, loaded once per server and pick."""
    return propagation.build_propagator(pick, settings=resources.settings())


# ---------------------------------------------------------------- panels below the editor


def saved_objects(session: EditorState) -> None:
    """The frame's saved objects: version, status, source and class as loaded."""
    with st.expander(f"Saved masks of this frame ({len(session.versions)} object(s))"):
        rows = [{"object": k, "version": session.versions[k], "status": session.statuses.get(k),
                 "source": session.sources.get(k), "class": session.classes.get(k)} for k in sorted(session.versions)]
        if rows:
            st.dataframe(rows, hide_index=True)
        else:
            st.caption("No saved objects yet: paint with the brush, draw a polygon or drag a GrabCut box.")
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
                st.error(literal(exc))
                return
            session.base = labels
            session.nonce += 1
            session.notes = [("info", f"Imported {literal(upload.name)}: press Save draft or Submit to store it.")]
            st.rerun()


def propagate_panel(session: EditorState) -> None:
    """Propagate the video's labeled frames to its other frames as drafts: here for short videos, else as a job."""
    video = session.video
    inline = video.frame_count <= labeling.INLINE_PROPAGATION_MAX_FRAMES
    with st.expander(f"Propagate from my labeled frames to the rest of {literal(video.name, one_line=True)}"):
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
            session.notes = [("success", f"Queued propagate job {job.id} for {literal(video.name)}; drafts appear "
                                         "as a worker finishes it (see **Jobs**).")]
            st.rerun()
        with st.spinner(f"Propagating through {video.frame_count} frames…"):
            outcome = labeling.propagate_inline(engine, resources.settings(), video.id, request)
    except ValueError as exc:
        st.error(f"Not propagated: {literal(exc)}")
        return
    scores = ", ".join(f"{k} {v:.3f}" for k, v in outcome.scores.items())
    fresh = load(session.frame_id, session.nonce + 1)
    fresh.notes = [("success", f"Propagated from frames {outcome.keyframes}: {outcome.drafts} draft frame(s)"
                               f"{'; held-out ' + scores if scores else ''}.")]
    st.session_state["label_session"] = fresh
    resources.forget_reads()
    st.rerun()
