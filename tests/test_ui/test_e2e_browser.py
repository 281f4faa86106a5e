"""End to end in a real headless Chromium: upload a video, let a worker ingest it, embed and select frames, accept
the picks, paint a mask on the first pick, find it in the DB.

Needs Debian's chromium at /usr/bin/chromium and the `playwright` Python package (no browser download);
skips with a message when either is missing. Screenshots of each page go to tests/artifacts/.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SEGLOOP = [sys.executable, "-m", "segloop.platform.cli"]
WAIT_MS = 120_000


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    """Wait until the Streamlit server answers its health check (or fail with its output)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"segloop ui exited with {server.returncode}: {log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"segloop ui did not answer on {url} within {timeout:.0f} s")


def stop_group(process: subprocess.Popen) -> None:
    """Stop a process started in its own session together with its children (`segloop ui` runs streamlit as a
    child process, which a plain terminate() would leave running)."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            os.killpg(process.pid, 0)
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return
        time.sleep(0.5)


@pytest.fixture
def browser_env() -> None:
    """Skip unless the system Chromium and the playwright package are both installed (in CI: fail)."""
    skip = pytest.fail if os.environ.get("CI") else pytest.skip
    if not CHROMIUM.exists():
        skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        skip("the playwright Python package is not installed (pip install playwright; no browser download)")


@pytest.fixture
def served(browser_env, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`segloop ui` on a free port and one `segloop worker`, both on a fresh data dir; yields (url, env)."""
    env = dict(os.environ, SEGLOOP_DATA_DIR=str(tmp_path / "segloop-data"), SEGLOOP_HEARTBEAT_SECONDS="0.5")
    env.pop("SEGLOOP_DATABASE_URL", None)
    subprocess.run([*SEGLOOP, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    log = tmp_path / "ui.log"
    with open(log, "wb") as sink:
        server = subprocess.Popen([*SEGLOOP, "ui", "--port", str(port)], env=env, stdout=sink,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    worker = subprocess.Popen([*SEGLOOP, "worker", "--poll", "0.3"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server, log)
        yield url, env
    finally:
        for process in (worker, server):
            stop_group(process)


def shot(page, name: str) -> None:
    """Save a full-page screenshot under tests/artifacts/ (after a moment for images and tables to paint)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / f"e2e-{name}.png"), full_page=True)


def image_to_page(page, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of image pixel (x, y) on the mask editor under its current zoom and pan (data-view)."""
    scale, tx, ty = (float(v) for v in page.locator(".segloop-canvas").get_attribute("data-view").split(","))
    box = page.locator("canvas.segloop-surface").bounding_box()
    return box["x"] + tx + (x + 0.5) * scale, box["y"] + ty + (y + 0.5) * scale


def test_upload_ingest_select_label_in_a_browser(served, tmp_path: Path) -> None:
    """Upload → ingest job runs → Library shows frames → Select embeds, runs k-center and accepts the picks →
    Explore maps the frames → paint and polygon on the first picked frame → saved mask of that frame in the DB."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)  # a loaded CI machine can take longer than Playwright's 5 s default

    from segloop.platform.media.synth import SynthOptions, synthesize

    url, env = served
    footage = tmp_path / "footage"
    synthesize(footage, SynthOptions(videos=1, frames=10, width=192, height=128, seed=3))
    video = next((footage / "videos").iterdir())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(WAIT_MS)

        try:
            page.goto(f"{url}/upload")
            page.get_by_text("Videos or .zip archives").wait_for()
            page.locator("input[type=file]").set_input_files(str(video))
            page.get_by_text(video.name).first.wait_for()
            page.get_by_role("button", name="Ingest uploaded files").click()
            page.get_by_text("succeeded").first.wait_for(timeout=WAIT_MS)
            page.get_by_text("default: 1 video(s)").wait_for()
            shot(page, "upload")

            page.goto(f"{url}/library")
            expect(page.get_by_role("img")).to_have_count(10, timeout=WAIT_MS)
            page.get_by_role("button", name="View").first.click()
            page.get_by_text("frame #0 · unlabeled").wait_for()
            expect(page.get_by_role("img")).to_have_count(11)
            shot(page, "library")

            select_and_accept(page, url)
            shot(page, "select")

            explore_map(page, url)
            shot(page, "explore")

            page.goto(f"{url}/label")
            page.get_by_text("Queue: 3 frame(s) to label").wait_for()
            page.locator(".segloop-canvas[data-ready=ready]").wait_for()
            # A brush stroke across the top left, then a polygon (image pixels 100..160 x 60..110) for the same object.
            page.mouse.move(*image_to_page(page, 10, 10))
            page.mouse.down()
            for step in range(1, 11):
                page.mouse.move(*image_to_page(page, 10 + 5 * step, 10 + 2 * step))
            page.mouse.up()
            expect(page.get_by_text("1 edit(s)")).to_be_visible()
            page.keyboard.press("p")
            page.locator(".segloop-canvas[data-tool=polygon]").wait_for()
            corners = [(100, 60), (160, 60), (160, 110), (100, 110)]
            for x, y in corners:
                page.mouse.click(*image_to_page(page, x, y))
            page.mouse.click(*image_to_page(page, *corners[0]))
            expect(page.get_by_text("2 edit(s)")).to_be_visible()
            page.get_by_role("button", name="Save draft").click()
            page.get_by_text("Saved as draft: object 1 → version 1").first.wait_for()
            shot(page, "label")

            page.goto(f"{url}/results")
            page.get_by_text("Scores per model and sequence").wait_for()
            shot(page, "results")

            page.goto(f"{url}/jobs")
            page.get_by_text("Launch an ingest job").wait_for()
            page.get_by_role("button", name="Cancel job").wait_for()
            shot(page, "jobs")
        except Exception:
            shot(page, "failure")
            raise
        finally:
            browser.close()

    labels, frame_id, run_items = saved_mask(env)
    assert labels[85, 130] == 1 and labels[12, 12] == 1 and labels[120, 10] == 0
    polygon_area = int(labels[55:116, 95:166].sum())
    assert 61 * 51 - 200 <= polygon_area <= 61 * 51 + 200
    assert [status for _, status in run_items] == ["accepted"] * 3
    assert frame_id == run_items[0][0], "the Label queue opens the run's first pick"


def explore_map(page, url: str) -> None:
    """On the Explore page: hovering a point shows its video and frame, clicking it opens the frame, then similar
    frames; a lasso drawn with the mouse around the whole map gathers all 10 frames, which are tagged 'night'."""
    from playwright.sync_api import expect

    page.goto(f"{url}/explore")
    page.get_by_text("10 of 10 frames shown").wait_for()
    points = page.locator(".js-plotly-plot .scatterlayer .point")
    expect(points).to_have_count(10)
    points.first.hover(force=True)  # Plotly's drag layer lies on top of the points and finds the nearest one
    expect(page.locator(".js-plotly-plot .hoverlayer .hovertext")).to_contain_text("#")
    points.first.click(force=True)
    page.get_by_role("button", name="More like this").click()
    page.get_by_text("9 frames most like this one").wait_for()
    page.get_by_text("frame #0 · unlabeled").wait_for()
    shot(page, "explore-similar")
    page.locator(".js-plotly-plot").hover()
    page.locator('.modebar-btn[data-title="Lasso Select"]').click()
    area = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    left, top = area["x"] + 3, area["y"] + 3
    right, bottom = area["x"] + area["width"] - 3, area["y"] + area["height"] - 3
    page.mouse.move(left, top)
    page.mouse.down()
    for x, y in ((right, top), (right, bottom), (left, bottom), (left, top + 6)):
        page.mouse.move(x, y, steps=8)
    page.mouse.up()
    page.get_by_text("10 frame(s) gathered with the lasso").wait_for()
    tag = page.get_by_label("Tag", exact=True)
    tag.fill("night")
    tag.press("Enter")
    page.get_by_role("button", name="Tag these 10 frames").click()
    page.get_by_text("10 frame(s) tagged 'night'").wait_for()


def fill(page, label: str, value: str) -> None:
    """Type into a Streamlit text or number input found by its label, and commit it with Enter."""
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")
    page.wait_for_timeout(700)


def select_and_accept(page, url: str) -> None:
    """On the Select page: embed with the default (tiny) ViT here, run k-center with budget 3, accept all picks."""
    from playwright.sync_api import expect

    page.goto(f"{url}/select")
    page.get_by_text("Embed the project's frames").wait_for()
    fill(page, "Image size", "32")
    page.get_by_role("button", name="Embed here now (10 frames)").click()
    page.get_by_text("Run a selection").wait_for(timeout=WAIT_MS)
    fill(page, "Budget (frames)", "3")
    page.get_by_role("button", name="Run selection").click()
    page.get_by_text("3 frame(s) picked by kcenter").wait_for(timeout=WAIT_MS)
    expect(page.get_by_text("3 pick(s): 3 proposed")).to_be_visible()
    page.get_by_role("button", name="Accept all picks").click()
    page.get_by_text("3 pick(s) updated").wait_for()
    expect(page.get_by_text("3 pick(s): 3 accepted")).to_be_visible()


def saved_mask(env: dict[str, str]):
    """(label map, frame id) of the only saved annotation of the test's database, and the selection run's
    (frame id, status) in rank order."""
    import numpy as np

    from segloop.platform.core.settings import Settings
    from segloop.platform.db.engine import make_engine, session_scope
    from segloop.platform.db.entities import AnnotationInfo, from_row
    from segloop.platform.db.orm import Annotation
    from segloop.platform.db.stores import annotations as annotation_store
    from segloop.platform.db.stores import selections

    settings = Settings(data_dir=Path(env["SEGLOOP_DATA_DIR"]))
    engine = make_engine(settings.db_url)
    try:
        with session_scope(engine) as session:
            rows = [from_row(AnnotationInfo, r) for r in session.query(Annotation).all()]
            runs = selections.list_selections(session, 1)
            assert len(runs) == 1, "exactly one selection run was made on the Select page"
            items = [(i.frame_id, i.status) for i in selections.selection_items(session, runs[0].id)]
    finally:
        engine.dispose()
    assert [(a.object_id, a.version, a.source, a.status) for a in rows] == [(1, 1, "manual", "draft")]
    return annotation_store.annotation_mask(rows[0]).astype(np.uint8), rows[0].frame_id, items
