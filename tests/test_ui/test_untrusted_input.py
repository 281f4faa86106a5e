"""What a link, a revoked grant or a frame id tells a signed-in person (Streamlit AppTest on the whole app, signed in
as an annotator): only what their projects allow, never a traceback."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import segloop.ui
from segloop.platform.services import auth

from .test_stale_state import open_page, second_project

APP = str(Path(segloop.ui.__file__).parent / "app.py")
TIMEOUT = 60
PASSWORD = "Untrusted-Input-Pass-1"


def signed_in(name: str) -> AppTest:
    """The whole app after `name` signed in through the login form."""
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    app.text_input(key="signin_name").input(name)
    app.text_input(key="signin_password").input(PASSWORD)
    next(b for b in app.button if b.label == "Sign in").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert any(f"Signed in as **{name}**" in c.value for c in app.sidebar.caption)
    return app


def annotator(engine, *projects: str) -> str:
    """An annotator granted `projects` (an admin exists too, so sign-in is on)."""
    auth.add_user(engine, "boss", "admin", PASSWORD)
    auth.add_user(engine, "ann", "annotator", PASSWORD)
    for project in projects:
        auth.grant(engine, "ann", project)
    return "ann"


def warnings(app: AppTest) -> list[str]:
    """The page's warnings, after a run that raised nothing."""
    assert not app.exception, [e.value for e in app.exception]
    return [w.value for w in app.warning]


@pytest.mark.parametrize("raw", ["²", "١٢", "𝟗"])
def test_label_link_with_a_non_ascii_digit_is_not_a_frame(engine, footage_project, raw: str) -> None:
    """`/label?frame=²` (a digit to Python, not an integer): the link's usual "not a frame id", no ValueError."""
    app = signed_in(annotator(engine, "ui"))
    app.query_params["frame"] = raw
    app = open_page(app, "label")
    assert any("in the link is not a frame id" in w for w in warnings(app))


def test_a_missing_frame_and_a_frame_of_another_project_read_the_same(engine, settings, footage_project,
                                                                     tmp_path) -> None:
    """A frame id of a project the annotator may not open and an id no frame has give the same message, so ids
    tell nothing about other projects."""
    _, frames = second_project(engine, settings, tmp_path)
    app = signed_in(annotator(engine, "ui"))
    said = {}
    for frame_id in (frames[0].id, 999_999):
        app.query_params["frame"] = str(frame_id)
        said[frame_id] = [w.replace(str(frame_id), "N") for w in warnings(open_page(app, "label"))]
    assert said[frames[0].id] == said[999_999] == ["frame N: not found in the projects you can open"]


def test_library_viewer_drops_a_frame_once_its_project_is_revoked(engine, settings, footage_project,
                                                                  tmp_path) -> None:
    """The annotator views a frame of 'zz'; an admin revokes 'zz': the next run no longer shows that frame (nor its
    masks), and it does not come back."""
    _, frames = second_project(engine, settings, tmp_path)
    app = open_page(signed_in(annotator(engine, "ui", "zz")), "library")
    app.selectbox(key="library_project").set_value("zz").run()
    app.button(key=f"library_view_{frames[2].id}").click().run()
    assert app.subheader[0].value.endswith("frame #2 · unlabeled")
    auth.revoke(engine, "ann", "zz")
    app.run()
    assert not [s.value for s in app.subheader]
    assert "frame" in warnings(app)[0] and "not found in the projects you can open" in warnings(app)[0]
    assert "library_frame_id" not in app.session_state
    app.run()
    assert not [s.value for s in app.subheader] and not warnings(app)
