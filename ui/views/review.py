"""Review page: frames annotators submitted, oldest first; accept them (status reviewed) or send them back with a
comment the annotator sees on the Label page. Services act for the signed-in user (`ui.signin`)."""
from __future__ import annotations

from functools import partial

import streamlit as st

from segloop.platform.services import labeling, review
from segloop.ui import resources, signin
from segloop.ui.literal import literal

act = partial(resources.act, note_key="review_note")  # run an action, then rerun with its note


def render() -> None:
    """Draw the page."""
    st.title("Review")
    summary = resources.project_picker("review_project")
    if summary is None:
        return
    note = st.session_state.pop("review_note", None)
    if note:
        st.success(literal(note))
    engine = resources.engine()
    try:
        items = review.review_queue(engine, summary.project.id)
    except ValueError as exc:
        st.error(literal(exc))
        return
    if not items:
        st.info("No frame is waiting for review in this project.")
        return
    by_frame = {item.frame.id: item for item in items}
    frame_id = st.selectbox(f"Waiting for review: {len(items)} frame(s)", list(by_frame), key="review_frame",
                            format_func=lambda f: describe(by_frame[f]))
    decide(frame_id, by_frame[frame_id])


def describe(item: review.ReviewItem) -> str:
    """One line per waiting frame: video, frame index, who submitted it and when."""
    return (f"{item.video_name} · frame #{item.frame.index} · submitted by {item.submission.annotator} "
            f"{item.submission.created_at:%Y-%m-%d %H:%M}")


def decide(frame_id: int, item: review.ReviewItem) -> None:
    """The submitted masks over the frame, and the accept / reject-with-comment actions."""
    engine = resources.engine()
    seen_key = f"review_seen_{frame_id}"
    seen = st.session_state.get(seen_key)  # the versions the reviewer was shown before pressing a button
    loaded = labeling.load_frame_labels(engine, frame_id)
    st.session_state[seen_key] = dict(loaded.versions)
    seen = loaded.versions if seen is None else seen
    image = labeling.frame_image(resources.settings().data_dir, item.frame)
    st.image(labeling.overlay(image, loaded.labels), width=min(900, image.shape[1] * 2),
             caption=f"objects {sorted(loaded.versions)} · versions {loaded.versions}")
    accept_col, reject_col = st.columns([1, 2])
    if accept_col.button("Accept", type="primary", key="review_accept"):
        act(lambda: review.accept(engine, frame_id, client=signin.client_address(), seen=seen),
            f"Accepted frame {frame_id}.")
    comment = reject_col.text_area("What to fix (shown to the annotator)", key=f"review_comment_{frame_id}",
                                   max_chars=2000)
    if reject_col.button("Reject with comment", key="review_reject"):
        act(lambda: review.reject(engine, frame_id, comment, client=signin.client_address(), seen=seen),
            f"Sent frame {frame_id} back to {item.submission.annotator}.")


def annotator_figures_section(project_id: int) -> None:
    """Per-annotator figures of a project (for the Results page): submitted, accepted, rejected, time per frame."""
    try:
        figures = review.annotator_figures(resources.engine(), project_id)
    except ValueError:
        return
    if not figures:
        return
    st.subheader("Annotators")
    st.caption("Frames submitted and accepted, rejections, and the median time per frame (pause between two "
               "submissions, breaks over 30 minutes left out).")
    st.dataframe([{"annotator": f.annotator, "frames submitted": f.submitted, "accepted": f.accepted,
                   "rejected": f.rejected,
                   "median s / frame": None if f.median_seconds_per_frame is None
                   else round(f.median_seconds_per_frame, 1)} for f in figures], hide_index=True)
