"""`segloop worker`: run queued jobs."""
from __future__ import annotations

import click

from segloop.platform.core.console import console
from segloop.platform.core.errors import friendly_errors


@click.command("worker")
@click.option("--kind", "kinds", multiple=True, help="Only run jobs of these kinds (repeatable).")
@click.option("--max-jobs", type=int, default=None, help="Exit after running this many jobs.")
@click.option("--exit-when-idle", is_flag=True, help="Exit when the queue is empty instead of polling.")
@click.option("--poll", type=float, default=1.0, show_default=True, help="Seconds between queue polls.")
@friendly_errors
def command(kinds: tuple[str, ...], max_jobs: int | None, exit_when_idle: bool, poll: float) -> None:
    """Claim jobs from the queue and run each in its own process (SQLite or PostgreSQL)."""
    from segloop.platform.db.engine import get_engine
    from segloop.platform.db.migrate import ensure_schema
    from segloop.platform.jobs.worker import WorkerOptions, run_worker

    options = WorkerOptions(poll_seconds=poll, kinds=list(kinds) or None, max_jobs=max_jobs,
                            exit_when_idle=exit_when_idle)
    ensure_schema(get_engine())
    try:
        ran = run_worker(options)
    except KeyboardInterrupt:
        console.print("worker interrupted (a job it was running went back to the queue)")
        raise SystemExit(130) from None
    console.print(f"worker stopped after {ran} job(s)")
