"""Opening a frame on the Label page from another page, under the frame's own project and video.

The Label page's project and queue pickers (`label_project`, `label_queue`) are set to the frame's project and
video, and `label_frame_request` names the frame, before the app switches to the Label page; the URL carries
`?project=NAME&frame=ID` so that the Label page can also be opened on that frame by a link.
"""
from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAPIException

from segloop.platform.services.library import FrameDetail
from segloop.ui import resources
from segloop.ui.literal import literal

LABEL_URL_PATH = "label"


def open_in_label(detail: FrameDetail, place=None) -> None:
    """Point the Label page at the frame (its project, its video's queue) and switch to it."""
    project = next((s.project.name for s in resources.project_summaries(resources.settings().db_url)
                    if s.project.id == detail.video.project_id), None)
    if project is not None:
        st.session_state["label_project"] = project
    st.session_state["label_queue"] = ("video", detail.video.id)
    st.session_state["label_frame_request"] = detail.frame.id
    try:
        st.switch_page(st.Page(_label_page, title="Label", url_path=LABEL_URL_PATH),
                       query_params={"project": project or "", "frame": str(detail.frame.id)})
    except StreamlitAPIException:  # this page runs on its own (no navigation): say where the frame waits
        (place or st).info(f"Open the **Label** page: frame #{detail.frame.index} of {literal(detail.video.name)} "
                           f"({literal(project)}) is waiting there.")


def _label_page() -> None:
    """Stands for the Label page of the navigation (switching matches pages by their URL path)."""
