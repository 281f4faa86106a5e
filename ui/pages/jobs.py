"""Jobs page: the queue with status, progress and messages."""
from __future__ import annotations

import streamlit as st

from segloop.platform import library
from segloop.ui import resources


def render() -> None:
    """Draw the page."""
    st.title("Jobs")
    jobs = library.recent_jobs(resources.engine())
    if not jobs:
        st.info("No jobs yet. Queue one with `segloop jobs submit` and run `segloop worker`.")
        return
    st.dataframe(
        [{"id": j.id, "kind": j.kind, "status": j.status, "progress": j.progress, "message": j.message,
          "attempts": j.attempts, "error": j.error or ""} for j in jobs],
        hide_index=True,
        column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)},
    )
