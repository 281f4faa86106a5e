"""`segloop users add|list|remove|passwd|role|email|grant|revoke|audit`: accounts of the web UI."""
from __future__ import annotations

import json
import sys

import click

from segloop.platform.core.console import console, print_table
from segloop.platform.core.errors import friendly_errors

ROLE_CHOICE = click.Choice(["admin", "reviewer", "annotator"])


@click.group("users")
def command() -> None:
    """Accounts of the web UI: roles (admin, reviewer, annotator) and per-project access."""


def read_password(confirm: bool = True) -> str:
    """The new password: prompted twice (hidden) on a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")  # a line from a Windows text file ends in CR LF


def _engine():
    """The configured, migrated database."""
    from segloop.platform.db.migrate import ensure_db

    return ensure_db()


@command.command("add")
@click.argument("name")
@click.option("--role", type=ROLE_CHOICE, required=True)
@click.option("--email", default=None, help="Identity-provider email that signs in as this user (OIDC).")
@friendly_errors
def add_cmd(name: str, role: str, email: str | None) -> None:
    """Create user NAME (password from a prompt, or from stdin when stdin is not a terminal)."""
    from segloop.platform.services import auth

    user = auth.add_user(_engine(), name, role, read_password(), email=email)
    console.print(f"added user {user.name} ({user.role})")


@command.command("list")
@friendly_errors
def list_cmd() -> None:
    """Every user, its role, email and projects."""
    from segloop.platform.services import auth

    rows = [(s.user.name, s.user.role, s.user.email or "",
             "all" if s.user.role == "admin" else ", ".join(s.projects) or "none")  # an admin's old grants are moot
            for s in auth.list_users(_engine())]
    print_table("users", ["name", "role", "email", "projects"], rows)


@command.command("remove")
@click.argument("name")
@friendly_errors
def remove_cmd(name: str) -> None:
    """Delete user NAME (signed out everywhere at once)."""
    from segloop.platform.services import auth

    auth.remove_user(_engine(), name)
    console.print(f"removed user {name}")


@command.command("passwd")
@click.argument("name")
@friendly_errors
def passwd_cmd(name: str) -> None:
    """Set a new password for NAME (its web sessions end)."""
    from segloop.platform.services import auth

    auth.set_password(_engine(), name, read_password())
    console.print(f"password of {name} changed")


@command.command("role")
@click.argument("name")
@click.argument("role", type=ROLE_CHOICE)
@friendly_errors
def role_cmd(name: str, role: str) -> None:
    """Give NAME another role."""
    from segloop.platform.services import auth

    auth.set_role(_engine(), name, role)
    console.print(f"{name} is now {role}")


@command.command("email")
@click.argument("name")
@click.argument("email", required=False)
@friendly_errors
def email_cmd(name: str, email: str | None) -> None:
    """Map the identity-provider EMAIL to NAME (no EMAIL: remove the mapping)."""
    from segloop.platform.services import auth

    auth.set_email(_engine(), name, email)
    console.print(f"{name}: email {email or '(none)'}")


@command.command("grant")
@click.argument("name")
@click.option("--project", required=True)
@friendly_errors
def grant_cmd(name: str, project: str) -> None:
    """Let NAME work on a project."""
    from segloop.platform.services import auth

    added = auth.grant(_engine(), name, project)
    console.print(f"{name} {'may now work on' if added else 'already had'} {project}")


@command.command("revoke")
@click.argument("name")
@click.option("--project", required=True)
@friendly_errors
def revoke_cmd(name: str, project: str) -> None:
    """Withdraw NAME's access to a project."""
    from segloop.platform.services import auth

    removed = auth.revoke(_engine(), name, project)
    console.print(f"{name} {'no longer has' if removed else 'did not have'} access to {project}")


@command.command("audit")
@click.option("--action", default=None,
              help="Only this action (login, login_failed, job_submit, review_accepted, export, ...; a wrong one "
                   "lists them all).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@friendly_errors
def audit_cmd(action: str | None, limit: int) -> None:
    """The newest audit events: logins, failed logins, job launches, user changes, imports, exports, reviews."""
    from segloop.platform.services import auth

    events = auth.audit_trail(_engine(), action=action, limit=limit)
    print_table("audit", ["when", "actor", "action", "target", "client", "detail"],
                [(e.created_at.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.action, e.target, e.client,
                  json.dumps(e.detail, ensure_ascii=False) if e.detail else "") for e in events])
