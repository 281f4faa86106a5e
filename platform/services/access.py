"""Who may do what: roles × actions, per-project grants, checked by the services themselves.

Every service that changes something takes an `actor` and calls `require` before touching the database, so a
request the UI would never offer (a crafted one) is refused all the same. `actor=None` is a trusted caller on this
machine (the CLI, workers and tests, which already hold the database file or URL), except inside the web UI: it
installs a resolver, so a call made there without an actor acts for the signed-in user (or for nobody).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from segloop.platform.core.errors import AccessDenied
from segloop.platform.db.engine import session_scope
from segloop.platform.db.entities import ProjectInfo
from segloop.platform.db.stores import footage, projects
from segloop.platform.db.stores import users as user_store

ROLES = user_store.ROLES
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "annotator": frozenset({"view", "label"}),
    "reviewer": frozenset({"view", "label", "review"}),
    "admin": frozenset({"view", "label", "review", "upload", "run_jobs", "import", "export", "manage_users"}),
}
ACTIONS = tuple(sorted(ROLE_ACTIONS["admin"]))
ACTION_WORDS = {"view": "open this project", "label": "label frames", "review": "review frames",
                "upload": "upload footage", "run_jobs": "launch or cancel jobs", "import": "import annotations",
                "export": "export annotations", "manage_users": "manage users"}


@dataclass(frozen=True)
class Actor:
    """The person a request is made for: a name (stored as the author), a role, and the user id (None: no accounts)."""

    name: str
    role: str
    user_id: int | None = None

    @property
    def is_admin(self) -> bool:
        """Whether the actor has the admin role."""
        return self.role == "admin"


LOCAL_ACTOR = Actor("local", "admin")  # `segloop ui` on loopback with no accounts: one person, like a desktop tool
ANONYMOUS = Actor("anonymous", "none")  # a web request before sign-in: allowed nothing
_actor_resolver: Callable[[], Actor | None] | None = None


def install_actor_resolver(resolver: Callable[[], Actor | None] | None) -> None:
    """Let the web UI supply the signed-in actor to every service call made without one (None: trusted caller)."""
    global _actor_resolver
    _actor_resolver = resolver


def effective_actor(actor: Actor | None) -> Actor | None:
    """The actor a service acts for: the one passed, else the web UI's signed-in one, else None (trusted caller)."""
    if actor is not None or _actor_resolver is None:
        return actor
    return _actor_resolver()


def can(actor: Actor, action: str) -> bool:
    """Whether the actor's role allows the action at all (project grants aside)."""
    if action not in ROLE_ACTIONS["admin"]:
        raise ValueError(f"action: {action!r} is not one of {', '.join(ACTIONS)}")
    return action in ROLE_ACTIONS.get(actor.role, frozenset())


def require(engine: Engine, actor: Actor | None, action: str, project: int | str | None = None) -> None:
    """AccessDenied unless the actor's role allows `action` and (for non-admins) the project is granted to them; an
    account's role and grants are read from the database now, not trusted from the `Actor` (built at sign-in)."""
    actor = effective_actor(actor)
    if actor is None:
        return
    if actor.user_id is None:
        _require_role(actor, action)
        if project is None or actor.is_admin:
            return
        raise _not_granted(actor)
    with session_scope(engine) as session:
        user = user_store.get_user_by_id(session, actor.user_id)
        if user is None or user.name.lower() != actor.name.lower():  # removed (SQLite may give its id to a new user)
            raise AccessDenied(f"{actor.name}: this account no longer exists; sign in with another")
        actor = Actor(user.name, user.role, user.id)
        _require_role(actor, action)
        if project is None or actor.is_admin:
            return
        project_id = project if isinstance(project, int) else projects.get_project(session, project).id
        if project_id not in user_store.granted_project_ids(session, actor.user_id):
            raise _not_granted(actor)


def _require_role(actor: Actor, action: str) -> None:
    """AccessDenied unless the actor's role allows the action."""
    if actor.role == ANONYMOUS.role:
        raise AccessDenied("you are not signed in (or your session has ended): sign in again")
    if not can(actor, action):
        raise AccessDenied(f"{actor.name} ({actor.role}) may not {ACTION_WORDS[action]}")


def _not_granted(actor: Actor) -> AccessDenied:
    """The refusal of a project the actor has no grant on."""
    return AccessDenied(f"{actor.name} has no access to this project; an admin can grant it "
                        f"(`segloop users grant {actor.name} --project NAME`)")


def require_frame(engine: Engine, actor: Actor | None, action: str, frame_id: int) -> None:
    """`require` on the project the frame belongs to."""
    actor = effective_actor(actor)
    if actor is None:
        return
    with session_scope(engine) as session:
        project_id = footage.get_video(session, footage.get_frame(session, frame_id).video_id).project_id
    require(engine, actor, action, project_id)


def visible_projects(engine: Engine, actor: Actor | None) -> list[ProjectInfo]:
    """The projects the actor may open: every project for admins and trusted callers, else the granted ones."""
    actor = effective_actor(actor)
    with session_scope(engine) as session:
        if actor is None or actor.is_admin:
            return projects.list_projects(session)
        if actor.user_id is None:
            return []
        return user_store.granted_projects(session, actor.user_id)


def visible_project_ids(engine: Engine, actor: Actor | None) -> set[int]:
    """Ids of `visible_projects`."""
    return {p.id for p in visible_projects(engine, actor)}
