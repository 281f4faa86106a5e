"""`segloop select`: pick frames to label with a registered strategy; `select show|list|strategies`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from segloop.platform.cli.options import checked_params, spec_options
from segloop.platform.core.console import OUT_FILE, print_table
from segloop.platform.core.errors import friendly_errors
from segloop.platform.core.storage import write_json
from segloop.platform.db.migrate import ensure_db
from segloop.platform.services.params import SelectParams


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`key=value` pairs; values read as JSON when they parse (numbers, booleans), else as strings."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--param")
        if key in params:
            raise click.BadParameter(f"{key!r} is given twice", param_hint="--param")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _print_run(run, where: dict[int, tuple[str, int]]) -> None:
    """The ranked table of a run."""
    selection = run.selection
    print_table(
        f"selection run {selection.id}: {selection.strategy}, budget {selection.budget}, "
        f"embedding set {selection.embedding_set_id}",
        ["rank", "frame", "video", "index", "score", "reason", "status"],
        [(i.rank, i.frame_id, where[i.frame_id][0], where[i.frame_id][1], f"{i.score:.4f}", i.reason, i.status)
         for i in run.items],
    )


def _run_json(run, where: dict[int, tuple[str, int]]) -> dict[str, Any]:
    """JSON form of a run."""
    selection = run.selection
    return {
        "id": selection.id, "strategy": selection.strategy, "budget": selection.budget, "seed": selection.seed,
        "params": selection.params, "embedding_set_id": selection.embedding_set_id,
        "picks": [{"rank": i.rank, "frame_id": i.frame_id, "video": where[i.frame_id][0],
                   "frame_index": where[i.frame_id][1], "score": i.score, "reason": i.reason} for i in run.items],
    }


@click.group("select", invoke_without_command=True)
@spec_options(SelectParams, exclude=("params", "time_range"), names={
    "embedding_set_id": "--embedding-set", "videos": "--video",
    "one_per_duplicate_group": "--one-per-duplicate-group/--allow-near-duplicates",
    "include_labeled": "--include-labeled/--exclude-labeled",
    "include_selected": "--include-selected/--exclude-selected",
})
@click.option("--param", "param_pairs", multiple=True, help="Strategy parameter KEY=VALUE (repeatable).")
@click.option("--time-range", type=(float, float), default=None, help="Only frames with START <= t <= END seconds.")
@click.option("--json", "json_path", type=OUT_FILE, default=None)
@click.pass_context
@friendly_errors
def command(ctx: click.Context, param_pairs: tuple[str, ...], time_range: tuple[float, float] | None,
            json_path: Path | None, **values) -> None:
    """Pick the frames to label next with --strategy, store the run, print the ranked picks."""
    if ctx.invoked_subcommand is not None:
        return
    if not any(ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE for name in ctx.params):
        click.echo(ctx.get_help())  # a bare `segloop select` asks what the group does, as other groups answer
        return
    from segloop.platform.services.selection import select, show_selection

    params = checked_params("select", SelectParams, values, params=parse_params(param_pairs),
                            time_range=list(time_range or ()))
    run = select(params, allow_empty=False)
    shown, where = show_selection(run.selection.id)
    _print_run(shown, where)
    if json_path:
        write_json(json_path, _run_json(shown, where))


@command.command("show")
@click.argument("run_id", type=int)
@click.option("--json", "json_path", type=OUT_FILE, default=None)
@friendly_errors
def show_cmd(run_id: int, json_path: Path | None) -> None:
    """A stored selection run with every pick's rank, score and reason."""
    from segloop.platform.services.selection import show_selection

    ensure_db()
    run, where = show_selection(run_id)
    _print_run(run, where)
    if json_path:
        write_json(json_path, _run_json(run, where))


@command.command("list")
@click.option("--project", default="default", show_default=True)
@friendly_errors
def list_cmd(project: str) -> None:
    """The project's selection runs, newest first."""
    from segloop.platform.db.migrate import db_session
    from segloop.platform.db.stores import projects, selections

    with db_session() as session:
        runs = selections.list_selections(session, projects.get_project(session, project).id)
    print_table(f"selection runs of {project}", ["id", "strategy", "budget", "seed", "embedding set", "created"],
                [(r.id, r.strategy, r.budget, r.seed, r.embedding_set_id, r.created_at.strftime("%Y-%m-%d %H:%M"))
                 for r in runs])


@command.command("strategies")
def strategies_cmd() -> None:
    """The registered strategies and their parameters."""
    from segloop.selectors.registry import strategies

    print_table("strategies", ["name", "summary", "parameters"],
                [(s.name, s.summary, ", ".join(f"{k}={v!r}" for k, v in s.params.items()))
                 for s in strategies().values()])
