"""Fixtures for the UI tests: a project with unlabeled synthetic videos in the test's database."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class UiProject:
    """An ingested project: its id, and its videos' ids in ingest order."""

    project_id: int
    video_ids: list[int]


@pytest.fixture
def ui_project(engine, settings, synth_root: Path) -> UiProject:
    """The two synthetic videos (12 frames each, no masks) ingested into project 'ui'."""
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import footage, projects
    from segloop.platform.media.ingest import IngestOptions, ingest_paths

    report = ingest_paths([synth_root / "videos"], IngestOptions(project="ui"), settings)
    assert not report.failed
    with session_scope(engine) as session:
        project = projects.get_project(session, "ui")
        videos = footage.list_videos(session, project.id)
    return UiProject(project.id, [v.id for v in videos])


def page_script(name: str) -> str:
    """A script that renders one page function on its own (pages are functions under st.navigation)."""
    return f"from segloop.ui.views import {name}\n{name}.render()\n"


@pytest.fixture
def file_settings(data_dir: Path):
    """Settings for tests that only touch files (no database, so not repeated per database)."""
    from segloop.platform.core.settings import load_settings

    return load_settings()
