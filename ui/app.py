"""segloop web UI entry point: `segloop ui` or `make ui` (streamlit run on this file)."""
from __future__ import annotations

import streamlit as st

from segloop.ui.views import explore, home, jobs, label, library, results, select_frames, upload

st.set_page_config(page_title="segloop", layout="wide")
navigation = st.navigation([
    st.Page(home.render, title="Home", url_path="home", default=True, icon=":material/home:"),
    st.Page(upload.render, title="Upload", url_path="upload", icon=":material/upload:"),
    st.Page(library.render, title="Library", url_path="library", icon=":material/photo_library:"),
    st.Page(explore.render, title="Explore", url_path="explore", icon=":material/scatter_plot:"),
    st.Page(select_frames.render, title="Select", url_path="select", icon=":material/checklist:"),
    st.Page(label.render, title="Label", url_path="label", icon=":material/brush:"),
    st.Page(results.render, title="Results", url_path="results", icon=":material/insights:"),
    st.Page(jobs.render, title="Jobs", url_path="jobs", icon=":material/work:"),
])
st.sidebar.caption("segloop: raw video → segmentation models with few labels")
navigation.run()
