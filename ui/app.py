"""segloop web UI entry point: `segloop ui` or `make ui` (streamlit run on this file)."""
from __future__ import annotations

import streamlit as st

from segloop.ui.pages import jobs, library

st.set_page_config(page_title="segloop", layout="wide")
navigation = st.navigation([
    st.Page(library.render, title="Library", url_path="library", default=True),
    st.Page(jobs.render, title="Jobs", url_path="jobs"),
])
st.sidebar.caption("segloop: raw video → segmentation models with few labels")
navigation.run()
