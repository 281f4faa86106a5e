"""Home page (`/home`, where the app root `/` leads): the projects at a glance and where to go next.

Streamlit serves the navigation's default page only at `/` (its own URL answers "Page not found"), so no page people
open by link (`/home`, `/library`, `/jobs`, ...) is the default: a hidden default page switches to Home.
"""
from __future__ import annotations

import streamlit as st

from segloop.ui import resources


def render() -> None:
    """Draw the page."""
    st.title("segloop")
    summaries = resources.project_summaries(resources.settings().db_url)
    if not summaries:
        st.info("No footage yet. Upload some on the Upload page, or run `segloop ingest PATH` or `make demo`.")
        return
    resources.project_counts_table(summaries)
    st.caption("Browse frames on **Library**, pick frames to label on **Select**, paint them on **Label**, train on "
               "**Jobs**, compare models on **Results**.")
