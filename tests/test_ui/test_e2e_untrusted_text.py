"""Names and comments people typed show as typed in a real headless Chromium: a reviewer's comment, a project name
and a video name that are Markdown (a link, an image from another site, a heading) stay plain text."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .test_e2e_browser import CHROMIUM, CHROMIUM_ARGS, SEGLOOP, browser_env, served  # noqa: F401 (fixtures)
from .test_e2e_editor import open_db

COMMENT = "[here](https:evil.example/login) ![t](https:evil.example/p.png)\n# X"
PROJECT = "[p](https:evil.example) ![q](https:evil.example) *bold*"
VIDEO = "[v](https:evil.example) ![w](https:evil.example)"
WAIT_MS = 90_000


def rejected_frame(env: dict[str, str], synth_root: Path, tmp_path: Path) -> int:
    """A video called VIDEO ingested into PROJECT, its first frame submitted and sent back with COMMENT."""
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import footage
    from segloop.platform.services import labeling, review

    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(sorted((synth_root / "videos").glob("*.mp4"))[0], source / f"{VIDEO}.mp4")
    subprocess.run([*SEGLOOP, "ingest", str(source), "--project", PROJECT], env=env, check=True, capture_output=True,
                   timeout=300)
    engine = open_db(env)
    with session_scope(engine) as session:
        [video] = footage.list_videos(session)
        frame_id = footage.list_frames(session, video.id, limit=1)[0].id
    labels = labeling.load_frame_labels(engine, frame_id).labels
    labels[:8, :8] = 1
    labeling.save_frame_labels(engine, frame_id, labels, {}, status="submitted")
    review.reject(engine, frame_id, COMMENT)
    engine.dispose()
    return frame_id


def seen(locator) -> str:
    """The text a person reads (without the invisible word joiners that keep `https:` from becoming a link)."""
    return locator.inner_text().replace("\u2060", "")


def foreign(page) -> list[str]:
    """Links, images and headings in the page's main area that came from the typed text."""
    return page.eval_on_selector_all(
        "section.main a, section.main img, [data-testid=stMain] a, [data-testid=stMain] img, "
        "[data-testid=stMain] h1, [data-testid=stMain] em",
        "els => els.map(e => e.outerHTML).filter(h => h.includes('evil') || h.includes('>X<') || h.includes('bold'))")


def test_comments_and_names_show_as_typed_in_chromium(served, synth_root: Path, tmp_path: Path) -> None:  # noqa: F811
    """Label (the comment), Upload (the project's expander) and Library (thumbnail captions) show the text itself:
    no link, no image loaded from another site, no heading."""
    from playwright.sync_api import expect, sync_playwright

    url, env = served
    frame_id = rejected_frame(env, synth_root, tmp_path)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/label?frame={frame_id}")
        sent_back = page.get_by_test_id("stAlertContentWarning")
        expect(sent_back).to_contain_text("Sent back by", timeout=WAIT_MS)
        assert seen(sent_back).endswith(f": {COMMENT}")
        assert foreign(page) == []
        page.goto(f"{url}/upload")
        expander = page.get_by_test_id("stExpander").filter(has_text="1 video(s)").locator("summary")
        expect(expander).to_be_visible(timeout=WAIT_MS)
        assert seen(expander).endswith(f"{PROJECT}: 1 video(s)")
        assert foreign(page) == []
        page.goto(f"{url}/library")
        caption = page.get_by_test_id("stImageCaption").first
        expect(caption).to_contain_text("#0 · group", timeout=WAIT_MS)
        assert seen(caption).startswith(f"{VIDEO} #0 · group")
        assert foreign(page) == []
        browser.close()
