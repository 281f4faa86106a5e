"""`segloop tags list|add|remove`: user-named tags of a project's frames ("night", "blurry", "occluded")."""
from __future__ import annotations

import click

from segloop.platform.cli.options import params_from_options, spec_options
from segloop.platform.core.console import console, print_table
from segloop.platform.core.errors import friendly_errors
from segloop.platform.db.migrate import ensure_db
from segloop.platform.services.params import TagFramesParams


@click.group("tags")
def command() -> None:
    """Tags of a project's frames: list them, tag frames, untag frames."""


@command.command("list")
@click.option("--project", required=True, help="Project whose tags to list.")
@friendly_errors
def list_cmd(project: str) -> None:
    """The project's tags and how many frames carry each."""
    from segloop.platform.services import tags

    print_table(f"tags of {project}", ["tag", "frames"],
                [(s.tag.name, s.frames) for s in tags.project_tags(ensure_db(), project)])


def _change(add: bool, values: dict, frame_ids: tuple[int, ...]) -> None:
    """Tag (add) or untag the frames named on the command line, and say what changed."""
    from segloop.platform.services import tags

    params = params_from_options(TagFramesParams, values, where="tags", frame_ids=list(frame_ids))
    change = tags.tag_frames if add else tags.untag_frames
    done = change(ensure_db(), params.project, params.tag, params.frame_ids)
    verb = "tagged" if add else "untagged"
    note = "already were" if add else "did not carry it"
    console.print(f"{done.changed} frame(s) {verb} {done.tag.name!r}"
                  + (f" ({done.unchanged} {note})" if done.unchanged else ""))


@command.command("add")
@spec_options(TagFramesParams, exclude=("frame_ids",), required=("project",))
@click.argument("frame_ids", nargs=-1, required=True, type=int)
@friendly_errors
def add_cmd(frame_ids: tuple[int, ...], **values) -> None:
    """Attach tag --tag (created when new) to FRAME_IDS of --project; frames that carry it already stay as they are."""
    _change(True, values, frame_ids)


@command.command("remove")
@spec_options(TagFramesParams, exclude=("frame_ids",), required=("project",))
@click.argument("frame_ids", nargs=-1, required=True, type=int)
@friendly_errors
def remove_cmd(frame_ids: tuple[int, ...], **values) -> None:
    """Detach tag --tag from FRAME_IDS of --project."""
    _change(False, values, frame_ids)
