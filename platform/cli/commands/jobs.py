"""`segloop jobs submit|list|show|cancel|retry|kinds`: the job queue."""
from __future__ import annotations

import json

import click

from segloop.platform.core.console import console, print_table
from segloop.platform.core.errors import friendly_errors
from segloop.platform.core.names import value_kind
from segloop.platform.core.specs import parse_json
from segloop.platform.db.migrate import db_session

MAX_PARAMS_DEPTH = 32  # job params are flat records; anything deeper is a mistake (or an attack on the parser)


def json_depth(value, limit: int = MAX_PARAMS_DEPTH + 1) -> int:
    """Nesting depth of a parsed JSON value (counting stops at `limit`, without recursion)."""
    depth, level = 0, [value]
    while level and depth < limit:
        depth += 1
        level = [child for item in level if isinstance(item, (list, dict))
                 for child in (item.values() if isinstance(item, dict) else item)]
    return depth


@click.group("jobs")
def command() -> None:
    """Queue, inspect and cancel jobs (run them with `segloop worker`)."""


def submit(kind: str, params: dict, project: str | None = None) -> int:
    """Check params and references, then queue a job; returns its id."""
    from segloop.platform.db.migrate import ensure_db
    from segloop.platform.services.jobs import submit_job

    return submit_job(ensure_db(), kind, params, project).id


@command.command("submit")
@click.argument("kind")
@click.option("--params", "params_json", default="{}", help="Job parameters as a JSON object.")
@click.option("--project", default=None, help="Project the job belongs to (for kinds whose params name none).")
@friendly_errors
def submit_cmd(kind: str, params_json: str, project: str | None) -> None:
    """Queue a job of KIND with --params JSON (checked now: a bad value is refused and nothing is queued)."""
    try:
        params = parse_json(params_json)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON ({exc})", param_hint="--params") from None
    except RecursionError:
        raise click.BadParameter(f"nested deeper than {MAX_PARAMS_DEPTH} levels", param_hint="--params") from None
    if json_depth(params) > MAX_PARAMS_DEPTH:
        raise click.BadParameter(f"nested deeper than {MAX_PARAMS_DEPTH} levels", param_hint="--params")
    if not isinstance(params, dict):
        raise click.BadParameter(f"expected a JSON object of parameters, got {value_kind(params)}",
                                 param_hint="--params")
    console.print(f"queued job {submit(kind, params, project)} ({kind})")


@command.command("list")
@click.option("--status", default=None, help="Only jobs in this state.")
@click.option("--limit", type=int, default=30, show_default=True)
@friendly_errors
def list_cmd(status: str | None, limit: int) -> None:
    """The newest jobs."""
    from segloop.platform.db.stores import jobs as job_store

    with db_session() as session:
        jobs = job_store.list_jobs(session, status=status, limit=limit)
    print_table("jobs", ["id", "kind", "status", "progress", "attempts", "message", "created"],
                [(j.id, j.kind, j.status, f"{j.progress:.0%}", j.attempts, (j.error or j.message)[:60],
                  j.created_at.strftime("%Y-%m-%d %H:%M:%S")) for j in jobs])


@command.command("show")
@click.argument("job_id", type=int)
@click.option("--log-lines", type=int, default=0, show_default=True,
              help="Lines of the log's tail to print (the log holds the details of a failure, tracebacks included).")
@friendly_errors
def show_cmd(job_id: int, log_lines: int) -> None:
    """One job in detail, with the tail of its log."""
    from pathlib import Path

    from segloop.platform.db.stores import jobs as job_store

    with db_session() as session:
        job = job_store.get_job(session, job_id)
    if job.error:
        console.print(f"error: {job.error}", style="bold red", markup=False, highlight=False, soft_wrap=True)
    for field in ("id", "kind", "status", "progress", "message", "attempts", "max_attempts", "worker_id",
                  "heartbeat_at", "retryable", "created_at", "started_at", "finished_at", "log_path"):
        _print_field(field, getattr(job, field))
    _print_field("params", json.dumps(job.params))
    _print_field("result", json.dumps(job.result))
    if job.log_path and Path(job.log_path).exists():
        lines = Path(job.log_path).read_text(errors="replace").splitlines()
        if log_lines <= 0:
            console.print(f"log: {len(lines)} lines (--log-lines N prints its last N)")
            return
        console.print("log tail:", style="bold")
        for line in lines[-log_lines:]:
            console.print(line, markup=False, highlight=False, soft_wrap=True)


@command.command("cancel")
@click.argument("job_id", type=int)
@friendly_errors
def cancel_cmd(job_id: int) -> None:
    """Cancel a queued job, or ask the worker to stop a running one."""
    from segloop.platform.db.migrate import ensure_db
    from segloop.platform.services import library

    job = library.cancel_job(ensure_db(), job_id)
    state = job.message if job.status == "cancelled" else "cancellation requested (the worker stops it)"
    console.print(f"job {job_id}: {state}")


@command.command("retry")
@click.argument("job_id", type=int)
@friendly_errors
def retry_cmd(job_id: int) -> None:
    """Queue a failed or cancelled job again."""
    from segloop.platform.db.migrate import ensure_db
    from segloop.platform.services import library

    library.retry_job(ensure_db(), job_id)
    console.print(f"job {job_id} queued again")


@command.command("kinds")
@friendly_errors
def kinds_cmd() -> None:
    """The job kinds this installation can run."""
    from segloop.platform.jobs.registry import kinds

    print_table("job kinds", ["kind", "description"], [(k.name, k.description) for k in kinds().values()])


def _print_field(name: str, value: object) -> None:
    """One `name: value` line of a job, the name in bold and the value as stored (never read as markup)."""
    from rich.text import Text

    console.print(Text.assemble((name, "bold"), f": {value}"), soft_wrap=True)
