"""The web UI pages render against a real database (Streamlit AppTest)."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import segloop.ui

APP = str(Path(segloop.ui.__file__).parent / "app.py")


def test_library_empty_database(engine) -> None:
    """With no footage the Library says how to add some."""
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    assert "No footage yet" in app.info[0].value


def test_library_shows_ingested_frames(engine, settings, synth_root: Path) -> None:
    """After an ingest the Library lists the project and a page of thumbnails."""
    from segloop.platform.ingest import IngestOptions, ingest_paths

    ingest_paths([synth_root], IngestOptions(project="ui"), settings)
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    table = app.dataframe[0].value
    assert table["project"].tolist() == ["ui"] and table["frames"].tolist() == [24]
    images = app.get("image")
    assert len(images) == 12
    assert images[0].captions == ["#0 · group 0"]


def test_jobs_page_lists_jobs(engine) -> None:
    """The Jobs page shows queued jobs."""
    from segloop.platform.db import session_scope
    from segloop.platform.stores import jobs as job_store

    with session_scope(engine) as session:
        job_store.submit_job(session, "ingest", {"paths": ["a"]})
    app = AppTest.from_string(page_script("jobs"), default_timeout=60).run()
    assert not app.exception
    assert app.dataframe[0].value["status"].tolist() == ["queued"]


def page_script(name: str) -> str:
    """A script that renders one page function on its own (pages are functions under st.navigation)."""
    return f"from segloop.ui.pages import {name}\n{name}.render()\n"
