"""Screenshots of every page with the shared DAVIS sample loaded: `python tests/test_ui/sample_screenshots.py`.

Not a test. In a throw-away data dir it runs one labeling loop through the real services and job worker:
ingest the sample's videos, embed with a random-init vit_tiny, a k-center selection (accepted, labelled by the
simulated annotator from the sample's ground truth), a uniform held-out selection (labelled the same way),
one propagate job per video from the k-center frames (drafts, uncertainty, J&F on the held-out frames), an
uncertainty selection (partly accepted, then labelled: those frames have both a propagated and a human mask),
a t-SNE map job, and small runs of the keyframe and active-learning benchmarks. Then it serves the UI and saves
tests/artifacts/sample-<page>.png from headless Chromium.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = (ROOT / ".." / "shared" / "data" / "davis-sample").resolve()
ARTIFACTS = ROOT / "tests" / "artifacts"
SEGLOOP = [sys.executable, "-m", "segloop.platform.cli"]
CHROMIUM = "/usr/bin/chromium"
PROJECT = "davis"
# Small runs of the benchmarks whose JSON the Results page plots (written under the data dir's bench/).
BENCHES = (
    ["keyframes", "--budgets", "1,2,4", "--strategies", "first,uniform,keyframes"],
    ["active-learning", "--task", "vss", "--strategies", "random,kcenter", "--budgets", "4,8,16", "--seeds", "2",
     "--rounds", "1", "--min-steps", "30", "--ceiling-folds", "2"],
)


def run_worker(env: dict[str, str]) -> None:
    """Run queued jobs to completion with a real worker process."""
    subprocess.run([*SEGLOOP, "worker", "--exit-when-idle", "--poll", "0.3"], env=env, check=True, timeout=1800)


def label_run(selection_id: int, settings, accept_all: bool = True) -> None:
    """Accept a run's picks (all, or all but the last two) and let the simulated annotator label the accepted ones."""
    from segloop.platform.core.davis import DavisLayout
    from segloop.platform.db.engine import get_engine, session_scope
    from segloop.platform.db.stores import annotations, footage, selections
    from segloop.platform.services import explore, oracle

    engine = get_engine(settings)
    with session_scope(engine) as session:
        items = selections.selection_items(session, selection_id)
    keep = items if accept_all else items[:-2]
    explore.review_picks(engine, selection_id, [i.frame_id for i in keep], [i.frame_id for i in items if i not in keep])
    truth = oracle.DavisOracle(DavisLayout(SAMPLE).masks_dir)
    with session_scope(engine) as session:
        for item in keep:
            frame = footage.get_frame(session, item.frame_id)
            video = footage.get_video(session, frame.video_id)
            labels = truth.label_map(video.name, frame.source_index, (video.stored_width, video.stored_height))
            for object_id in sorted(set(labels.flat) - {0}):
                annotations.save_annotation(session, frame.id, int(object_id), labels == object_id, "manual",
                                            status="submitted", author="simulated annotator")


def build(data_dir: Path) -> dict[str, str]:
    """One loop over the sample in `data_dir`; returns the environment for the UI server."""
    env = dict(os.environ, SEGLOOP_DATA_DIR=str(data_dir), SEGLOOP_HEARTBEAT_SECONDS="0.5")
    env.pop("SEGLOOP_DATABASE_URL", None)
    os.environ.update(env)
    from segloop.platform.core.settings import load_settings
    from segloop.platform.db.engine import get_engine, session_scope
    from segloop.platform.db.migrate import upgrade
    from segloop.platform.db.stores import footage, projects, selections
    from segloop.platform.media.ingest import IngestOptions, ingest_paths
    from segloop.platform.services import library, selection
    from segloop.platform.services.embedding import embed_project
    from segloop.selectors.constraints import Constraints

    settings = load_settings()
    engine = get_engine(settings)
    upgrade(engine)
    report = ingest_paths([SAMPLE / "videos"], IngestOptions(project=PROJECT), settings)
    assert not report.failed, report.failed
    embedding_set = embed_project(PROJECT, "vit_tiny_patch16_224", img_size=112, batch_size=16, settings=settings)
    first = selection.run_selection(PROJECT, "kcenter", Constraints(budget=12, min_gap_frames=3), settings=settings)
    label_run(first.selection.id, settings)
    held_out = selection.run_selection(PROJECT, "uniform", Constraints(budget=8), settings=settings)
    label_run(held_out.selection.id, settings)
    with session_scope(engine) as session:
        project = projects.get_project(session, PROJECT)
        videos = footage.list_videos(session, project.id)
        index_of = {f.id: (f.video_id, f.index) for v in videos for f in footage.list_frames(session, v.id)}
    for video in videos:
        keys = sorted(index_of[i.frame_id][1] for i in first.items if index_of[i.frame_id][0] == video.id)
        if keys:
            library.submit_job(engine, "propagate", {
                "video_ids": [video.id], "method": "backbone", "backbone": "vit_tiny_patch16_224",
                "keyframes": ",".join(map(str, keys)), "short_side": 240}, PROJECT)
    library.submit_job(engine, "map2d", {"embedding_set_id": embedding_set.id, "method": "tsne",
                                         "max_points": 5000, "perplexity": 30.0})
    run_worker(env)
    third = selection.run_selection(PROJECT, "uncertainty", Constraints(budget=8), {"signal": "vos_uncertainty"},
                                    settings=settings)
    label_run(third.selection.id, settings, accept_all=False)
    with session_scope(engine) as session:
        assert len(selections.list_selections(session, project.id)) == 3
    for bench in BENCHES:
        subprocess.run([*SEGLOOP, "bench", *bench, str(SAMPLE)], env=env, check=True, timeout=1200,
                       stdout=subprocess.DEVNULL)
    return env


def serve(env: dict[str, str], port: int) -> subprocess.Popen:
    """Start `segloop ui` and wait for its health check."""
    server = subprocess.Popen([*SEGLOOP, "ui", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.3)
    stop(server)
    raise RuntimeError("segloop ui did not start")


def stop(server: subprocess.Popen) -> None:
    """Stop `segloop ui` and the streamlit process it started (same session)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
            server.wait(timeout=15)
            time.sleep(1)
            os.killpg(server.pid, 0)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def shoot(url: str) -> list[Path]:
    """Visit every page like a user would and save a full-page screenshot of each."""
    from playwright.sync_api import sync_playwright

    saved = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                                                             "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        page.set_default_timeout(120_000)

        def shot(name: str) -> None:
            page.wait_for_timeout(1500)
            path = ARTIFACTS / f"sample-{name}.png"
            page.screenshot(path=str(path), full_page=True)
            saved.append(path)

        try:
            visit(page, url, shot)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "sample-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    return saved


def visit(page, url: str, shot) -> None:
    """The pages in loop order, each left in an informative state before its screenshot."""
    from playwright.sync_api import expect

    page.goto(f"{url}/upload")
    page.get_by_text("davis: 4 video(s)").click()
    shot("upload")
    page.goto(f"{url}/")
    page.get_by_role("button", name="View").nth(3).click()
    page.get_by_text("Mask opacity").wait_for()
    shot("library")
    page.goto(f"{url}/explore")
    page.get_by_text("frames shown").wait_for()
    points = page.locator(".js-plotly-plot .scatterlayer .point")
    points.last.hover(force=True)  # Plotly's drag layer lies on top of the points and finds the nearest one
    expect(page.locator(".js-plotly-plot .hoverlayer .hovertext")).to_be_visible()
    shot("explore-tooltip")
    points.last.click(force=True)
    page.get_by_role("button", name="More like this").click()
    page.get_by_text("frames most like this one").wait_for()
    shot("explore")
    page.get_by_text("t-SNE").click()
    page.get_by_text("frames shown").wait_for()
    page.get_by_label("Colour by").click()
    page.get_by_role("option", name="uncertainty").click()
    page.get_by_text("Signal").wait_for()
    shot("explore-tsne-uncertainty")
    page.goto(f"{url}/select")
    page.get_by_text("Review picks").wait_for()
    shot("select")
    page.goto(f"{url}/label")
    page.get_by_text("Include done frames").wait_for()
    page.get_by_label("Queue", exact=True).click()
    page.get_by_role("option", name="Video dog (60 frames)").click()
    page.locator(".segloop-canvas[data-ready=ready]").wait_for()
    page.get_by_text("Propagate from my labeled frames").click()
    shot("label")
    page.goto(f"{url}/results")
    page.get_by_text("Per-sequence drill-down").wait_for()
    shot("results")
    page.get_by_text("Only frames that also have a human mask").click()
    page.get_by_text("page 1 of 1").wait_for()
    shot("results-drilldown")
    page.goto(f"{url}/jobs")
    page.get_by_role("button", name="Retry job").wait_for()
    shot("jobs")




def main() -> None:
    """Build the loop, serve the UI, take the screenshots."""
    if not (SAMPLE / "videos").is_dir():
        sys.exit(f"shared DAVIS sample not found at {SAMPLE}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        env = build(Path(folder) / "segloop-data")
        print(f"loop built in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        server = serve(env, 8597)
        try:
            for path in shoot("http://127.0.0.1:8597"):
                print(path)
        finally:
            stop(server)


if __name__ == "__main__":
    main()
