"""segloop web UI entry point: `segloop ui` or `make ui` (streamlit run on this file).

Nobody sees a page before signing in (unless there are no accounts and the server listens on loopback only);
the navigation shows each role its pages: annotators label, reviewers also review, admins also upload, run jobs
and manage users. The services check the same rules again for every action.
"""
from __future__ import annotations

import streamlit as st

from segloop.ui import resources, signin
from segloop.ui.views import admin, explore, home, jobs, label, library, results, review, select_frames, upload

st.set_page_config(page_title="segloop", layout="wide")
actor = signin.gate(resources.engine(), str(st.get_option("server.address") or "127.0.0.1"))
EVERYONE = {"admin", "reviewer", "annotator"}
HOME = st.Page(home.render, title="Home", url_path="home", icon=":material/home:")


def open_home() -> None:
    """The app root `/` opens Home at its own address, `/home`: Streamlit serves the default page only at `/` (its
    `url_path` answers "Page not found"), so the default is this hidden page rather than Home itself."""
    st.switch_page(HOME)


PAGES = [  # (roles that see it, page)
    (EVERYONE, st.Page(open_home, title="segloop", url_path="start", default=True, visibility="hidden")),
    (EVERYONE, HOME),
    ({"admin"}, st.Page(upload.render, title="Upload", url_path="upload", icon=":material/upload:")),
    (EVERYONE, st.Page(library.render, title="Library", url_path="library",
                                                 icon=":material/photo_library:")),
    (EVERYONE, st.Page(explore.render, title="Explore", url_path="explore",
                                                 icon=":material/scatter_plot:")),
    ({"admin"}, st.Page(select_frames.render, title="Select", url_path="select", icon=":material/checklist:")),
    (EVERYONE, st.Page(label.render, title="Label", url_path="label",
                                                 icon=":material/brush:")),
    ({"admin", "reviewer"}, st.Page(review.render, title="Review", url_path="review", icon=":material/fact_check:")),
    (EVERYONE, st.Page(results.render, title="Results", url_path="results",
                                                 icon=":material/insights:")),
    ({"admin"}, st.Page(jobs.render, title="Jobs", url_path="jobs", icon=":material/work:")),
    ({"admin"}, st.Page(admin.render, title="Admin", url_path="admin", icon=":material/admin_panel_settings:")),
]
navigation = st.navigation([page for roles, page in PAGES if actor.role in roles])
st.sidebar.caption("segloop: raw video → segmentation models with few labels")
signin.logout_button(resources.engine(), actor)
navigation.run()
