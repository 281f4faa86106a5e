"""End to end in a real headless Chromium with three accounts on the shared sample: the login form comes first and
survives a reload; the annotator sees only the granted project and no upload or job pages, submits a mask; the
reviewer rejects it with a comment; the annotator sees the comment, fixes and resubmits; the reviewer accepts;
the database holds each version with its author and status. Screenshots: tests/artifacts/teams-*.png."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_e2e_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    SEGLOOP,
    WAIT_MS,
    browser_env,  # noqa: F401  (the fixture that skips without Chromium, used below)
    free_port,
    image_to_page,
    stop_group,
    wait_healthy,
)

pytestmark = pytest.mark.usefixtures("browser_env")

PASSWORDS = {"root": "Admin-Pass-4471", "ann": "Annotator-Pass-2290", "rev": "Reviewer-Pass-8812"}
ROLES = {"root": "admin", "ann": "annotator", "rev": "reviewer"}
COMMENT = "The swan's neck is missing: paint it too."
MAX_SIDE = 320


def _segloop(env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    """Run the real CLI and fail the test with its output when it does not exit 0."""
    done = subprocess.run([*SEGLOOP, *args], env=env, input=stdin, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"segloop {' '.join(args)}: {done.stdout}{done.stderr}"


@pytest.fixture
def team_server(davis_sample: Path, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """Project 'swans' (blackswan) granted to the annotator and reviewer, project 'dogs' to nobody; three accounts;
    `segloop ui` serving on loopback. Yields (url, env)."""
    env = dict(os.environ, SEGLOOP_DATA_DIR=str(tmp_path / "segloop-data"))
    env.pop("SEGLOOP_DATABASE_URL", None)
    videos = davis_sample / "videos"
    _segloop(env, "ingest", "--project", "swans", "--max-side", str(MAX_SIDE), str(videos / "blackswan.mp4"))
    _segloop(env, "ingest", "--project", "dogs", "--max-side", str(MAX_SIDE), str(videos / "dog.mp4"))
    for name, role in ROLES.items():
        _segloop(env, "users", "add", name, "--role", role, stdin=PASSWORDS[name] + "\n")
    for name in ("ann", "rev"):
        _segloop(env, "users", "grant", name, "--project", "swans")
    port = free_port()
    log = tmp_path / "ui.log"
    with open(log, "wb") as sink:
        server = subprocess.Popen([*SEGLOOP, "ui", "--port", str(port)], env=env, stdout=sink,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server, log)
        yield url, env
    finally:
        stop_group(server)
    text = log.read_text(errors="replace")
    assert not any(p in text for p in PASSWORDS.values()), "a password reached the server log"


def shot(page, name: str) -> None:
    """A full-page screenshot tests/artifacts/teams-NAME.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(800)
    page.screenshot(path=str(ARTIFACTS / f"teams-{name}.png"), full_page=True)


def sign_in(page, url: str, name: str) -> None:
    """Open the app and sign in through the login form."""
    page.goto(url)
    page.get_by_text("Sign in to continue.").wait_for()
    for _ in range(3):  # the form can be drawn again while the first script run ends, emptying what was typed
        page.get_by_label("User name").fill(name)
        page.get_by_label("Password", exact=True).fill(PASSWORDS[name])
        page.wait_for_timeout(300)
        if page.get_by_label("User name").input_value() == name:
            break
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_text(f"Signed in as {name}").wait_for()
    wait_for_cookie(page)


def wait_for_cookie(page, timeout_ms: int = 20_000) -> None:
    """Wait until the browser holds the session cookie (a script on the page writes it after sign-in), so that
    opening another address keeps the session."""
    from segloop.ui.signin import COOKIE

    for _ in range(timeout_ms // 100):
        if any(c["name"] == COOKIE and c["value"] for c in page.context.cookies()):
            return
        page.wait_for_timeout(100)
    raise AssertionError("the session cookie was not written after sign-in")


def page_text(page) -> str:
    """The visible text of a page (shown when a step fails, since CI keeps no screenshots)."""
    try:
        return " | ".join(page.inner_text("body", timeout=5_000).split("\n"))[:2000]
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        return f"(page text unavailable: {exc})"


def nav_pages(page) -> set[str]:
    """The page titles in the sidebar navigation."""
    links = page.locator("[data-testid=stSidebarNav] a")
    links.first.wait_for()
    return {t.strip().splitlines()[-1].strip() for t in links.all_inner_texts()}


def paint(page, x0: int, y0: int, x1: int, y1: int) -> None:
    """A brush stroke across the frame in image pixels (frames are MAX_SIDE×180)."""
    from playwright.sync_api import expect

    page.locator(".segloop-canvas[data-ready=ready]").wait_for()
    page.mouse.move(*image_to_page(page, x0, y0))
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(*image_to_page(page, x0 + (x1 - x0) * step / 10, y0 + (y1 - y0) * step / 10))
    page.mouse.up()
    expect(page.get_by_text("1 edit(s)")).to_be_visible()
    page.wait_for_timeout(800)


def test_three_users_submit_reject_fix_accept(team_server) -> None:
    """The whole review loop across three browser sessions, then the versions, authors and statuses in the DB."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    url, env = team_server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        viewport = {"width": 1400, "height": 1100}
        ann, rev, root = (browser.new_context(viewport=viewport).new_page() for _ in range(3))
        for page in (ann, rev, root):
            page.set_default_timeout(WAIT_MS)
        current = ann
        try:
            ann.goto(url)
            ann.get_by_text("Sign in to continue.").wait_for()
            expect(ann.locator("[data-testid=stSidebarNav]")).to_have_count(0)
            expect(ann.get_by_role("img")).to_have_count(0)
            shot(ann, "01-login-only")

            ann.get_by_label("User name").fill("ann")
            ann.get_by_label("Password", exact=True).fill("not-the-password")
            ann.get_by_role("button", name="Sign in", exact=True).click()
            ann.get_by_text("Wrong user name or password.").wait_for()
            sign_in(ann, url, "ann")
            assert nav_pages(ann) == {"Home", "Library", "Explore", "Label", "Results"}
            ann.reload()
            ann.get_by_text("Signed in as ann").wait_for()  # the session cookie survived the reload
            expect(ann.get_by_text("Sign in to continue.")).to_have_count(0)
            shot(ann, "02-annotator-navigation")

            ann.goto(f"{url}/label")
            ann.get_by_text("Queue:").first.wait_for()
            ann.get_by_label("Project").first.click()
            options = {t.strip() for t in ann.get_by_role("option").all_inner_texts()}
            assert options == {"swans"}, options
            ann.keyboard.press("Escape")
            paint(ann, 100, 60, 200, 120)
            ann.get_by_role("button", name="Submit", exact=True).click()
            ann.get_by_text("Saved as submitted: object 1 → version 1").first.wait_for()
            shot(ann, "03-annotator-submitted")

            current = rev
            sign_in(rev, url, "rev")
            assert nav_pages(rev) == {"Home", "Library", "Explore", "Label", "Review", "Results"}
            rev.goto(f"{url}/review")
            rev.get_by_text("Waiting for review: 1 frame(s)").wait_for()
            comment = rev.get_by_label("What to fix (shown to the annotator)")
            comment.fill(COMMENT)
            comment.blur()
            rev.wait_for_timeout(800)
            rev.get_by_role("button", name="Reject with comment").click()
            rev.get_by_text("back to ann").wait_for()
            shot(rev, "04-reviewer-rejected")

            current = ann
            ann.goto(f"{url}/label")
            ann.get_by_text(f"Sent back by rev: {COMMENT}").wait_for()
            paint(ann, 80, 40, 220, 140)
            ann.get_by_role("button", name="Submit", exact=True).click()
            ann.get_by_text("Saved as submitted: object 1 → version 2").first.wait_for()
            shot(ann, "05-annotator-fixed-resubmitted")

            current = rev
            rev.goto(f"{url}/review")
            rev.get_by_text("Waiting for review: 1 frame(s)").wait_for()
            rev.get_by_role("button", name="Accept", exact=True).click()
            rev.get_by_text("Accepted frame").wait_for()
            rev.get_by_text("No frame is waiting for review").wait_for()
            shot(rev, "06-reviewer-accepted")

            current = root
            sign_in(root, url, "root")
            assert {"Upload", "Jobs", "Select", "Review", "Admin"} <= nav_pages(root)
            root.goto(f"{url}/admin")
            root.get_by_text("Audit trail").wait_for()
            shot(root, "07-admin")
            root.goto(f"{url}/results")
            root.get_by_label("Project").first.wait_for()
            root.get_by_text("Annotators").wait_for()
            shot(root, "08-results-annotators")

            current = ann
            ann.get_by_role("button", name="Sign out").click()
            ann.get_by_text("Sign in to continue.").wait_for()
            ann.reload()
            ann.get_by_text("Sign in to continue.").wait_for()  # logged out stays logged out after a reload
        except Exception as exc:
            shot(current, "failure")
            raise AssertionError(f"{exc}\n--- page at the failure: {current.url}: {page_text(current)}") from exc
        finally:
            browser.close()
    check_database(env)


def check_database(env: dict[str, str]) -> None:
    """Versions of the reviewed frame (author, status) and its review history."""
    from segloop.platform.core.settings import Settings
    from segloop.platform.db.engine import make_engine, session_scope
    from segloop.platform.db.entities import AnnotationInfo, from_row
    from segloop.platform.db.orm import Annotation
    from segloop.platform.db.stores import reviews

    engine = make_engine(Settings(data_dir=Path(env["SEGLOOP_DATA_DIR"])).db_url)
    try:
        with session_scope(engine) as session:
            rows = [from_row(AnnotationInfo, r) for r in session.query(Annotation).order_by(Annotation.id).all()]
            frame_ids = {r.frame_id for r in rows}
            assert len(frame_ids) == 1
            history = reviews.project_events(session, 1)
    finally:
        engine.dispose()
    assert [(a.object_id, a.version, a.author, a.status, a.source) for a in rows] == [
        (1, 1, "ann", "draft", "manual"), (1, 2, "ann", "reviewed", "manual")]
    assert rows[1].area > rows[0].area > 0
    assert [(e.kind, e.actor, e.annotator, e.comment) for e in history] == [
        ("submitted", "ann", "ann", ""), ("rejected", "rev", "ann", COMMENT),
        ("submitted", "ann", "ann", ""), ("accepted", "rev", "ann", "")]


def test_a_session_ended_in_another_tab_ends_the_jobs_page_too(team_server) -> None:
    """Signing out in one tab ends the session in every tab: the Jobs page's board (a fragment, whose reruns skip
    the page's sign-in check) answers its next click with the login form and retries nothing."""
    import json

    from playwright.sync_api import sync_playwright

    url, env = team_server
    _segloop(env, "jobs", "submit", "select", "--params",
             json.dumps({"project": "swans", "strategy": "random", "budget": 1}))
    _segloop(env, "worker", "--exit-when-idle")  # the job fails: the project has no embedding set
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        page, other = context.new_page(), context.new_page()
        for tab in (page, other):
            tab.set_default_timeout(WAIT_MS)
        try:
            sign_in(page, url, "root")
            page.goto(f"{url}/jobs")
            page.get_by_role("button", name="Retry job").wait_for()
            other.goto(url)
            other.get_by_text("Signed in as root").wait_for()
            other.get_by_role("button", name="Sign out").click()
            other.get_by_text("Sign in to continue.").wait_for()
            page.get_by_role("button", name="Retry job").click()
            page.get_by_text("Sign in to continue.").wait_for()
        except Exception:
            raise AssertionError(f"page: {page_text(page)}") from None
        finally:
            browser.close()
    shown = subprocess.run([*SEGLOOP, "jobs", "show", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert "failed" in shown.stdout and "queued" not in shown.stdout, shown.stdout
