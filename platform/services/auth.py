"""Accounts and sign-in: scrypt password hashes, users and grants, rate-limited login, server-side web sessions.

Passwords are hashed with scrypt (memory-hard; a random salt and the cost parameters are stored with the hash)
and never stored, logged or audited in clear. A login failure says the same thing whether or not the user
exists, costs the same scrypt work, and counts against both the user name and the client address: after
`max_failures` failures in a row, each further attempt on that key waits `lockout_seconds` after the last failure.
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import ipaddress
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from sqlalchemy import Engine

from segloop.platform.core.errors import ValidationError
from segloop.platform.core.names import check_user_name
from segloop.platform.db.engine import session_scope
from segloop.platform.db.entities import AuditEventInfo, UserInfo
from segloop.platform.db.stores import audit, lock_keys, projects
from segloop.platform.db.stores import sessions as session_store
from segloop.platform.db.stores import users as user_store
from segloop.platform.services.access import ROLES, Actor, effective_actor, require

SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN, SALT_BYTES = 2**14, 8, 1, 32, 16
SCRYPT_MAXMEM = 64 * 1024 * 1024
MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH = 8, 1024
MAX_EMAIL_LENGTH = 254
RESERVED_NAMES = {"local": "the single user of a web UI without accounts", "anonymous": "a request before sign-in",
                  "oidc": "a sign-in through the identity provider"}
ACCOUNTS_LOCK = "accounts"  # held by changes to the set of users, roles and emails (PostgreSQL advisory lock)
LOGIN_FAILED = "Wrong user name or password."


@dataclass(frozen=True)
class AuthPolicy:
    """Login throttling and session lifetime (defaults: 5 failures of a name since its last sign-in, or 5 failures
    of a client within 5 minutes whoever signed in meanwhile → 30 s wait; 12-hour sessions)."""

    max_failures: int = 5
    lockout_seconds: float = 30.0
    session_hours: float = 12.0
    client_window_seconds: float = 300.0  # a client's failures count this long, whoever signs in meanwhile


@dataclass(frozen=True)
class LoginResult:
    """The outcome of a sign-in: the actor and its session token, or the message to show and how long to wait."""

    actor: Actor | None
    token: str | None
    message: str
    retry_after: float = 0.0


@dataclass(frozen=True)
class UserSummary:
    """A user with the names of the projects granted to it."""

    user: UserInfo
    projects: list[str]


# ---------------------------------------------------------------- passwords


def _b64(data: bytes) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    """Bytes of `_b64` text."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    """The scrypt key of a password (Unicode NFC: an accented letter typed composed or decomposed is one letter)."""
    return hashlib.scrypt(unicodedata.normalize("NFC", password).encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          dklen=dklen, maxmem=SCRYPT_MAXMEM)


def check_password(password: object) -> str:
    """The password, or ValidationError when it is not text of 8-1024 characters."""
    if not isinstance(password, str):
        raise ValidationError("password: expected text")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if not password.strip():
        raise ValidationError("password: not only spaces")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(f"password: at most {MAX_PASSWORD_LENGTH} characters")
    return password


def hash_password(password: str) -> str:
    """'scrypt$n$r$p$salt$key' for the password, with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether the password matches a stored hash (constant-time compare; a malformed hash never matches)."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(key)
        computed = _scrypt(password, _unb64(salt), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, expected)


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    """A hash to verify against when the user does not exist, so both cases cost the same scrypt work."""
    return hash_password(secrets.token_urlsafe(16))


# ---------------------------------------------------------------- users (admins, or the CLI)


def actor_name(actor: Actor | None) -> str:
    """The name audited for an actor; a trusted local caller is 'cli:<login name>'."""
    actor = effective_actor(actor)
    if actor is not None:
        return actor.name
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def clean_client(client: object) -> str:
    """A client address as it may be stored: printable characters only, at most 120."""
    return "".join(c for c in client if c.isprintable())[:120] if isinstance(client, str) else ""


def check_email(email: object) -> str | None:
    """A stripped email address (None when empty), or ValidationError."""
    if email is None or (isinstance(email, str) and not email.strip()):
        return None
    if not isinstance(email, str) or len(email.strip()) > MAX_EMAIL_LENGTH or email.count("@") != 1 \
            or any(c.isspace() or ord(c) < 32 for c in email.strip()):
        raise ValidationError(f"email: {str(email)[:80]!r} is not an email address")
    return email.strip()


def _check_role(role: object) -> str:
    """The role, or ValidationError naming the known ones."""
    if role not in ROLES:
        raise ValidationError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    return str(role)


def add_user(engine: Engine, name: str, role: str, password: str, *, email: str | None = None,
             actor: Actor | None = None, client: str = "") -> UserInfo:
    """Create a user (name, role and password checked first); audited as user_add."""
    require(engine, actor, "manage_users")
    name, role, email = check_user_name(name), _check_role(role), check_email(email)
    if name.lower() in RESERVED_NAMES:
        raise ValidationError(f"user name: {name!r} is the name the audit trail gives to "
                              f"{RESERVED_NAMES[name.lower()]}; choose another")
    password_hash = hash_password(check_password(password))
    with session_scope(engine) as session:
        lock_keys(session, ACCOUNTS_LOCK)
        if role != "admin" and effective_actor(actor) is not None and not user_store.count_admins(session):
            raise ValidationError(f"{name}: add an admin first (with accounts but no admin, nobody could manage "
                                  "users from the web UI)")
        user = user_store.add_user(session, name, role, password_hash, email)
        audit.record(session, actor_name(actor), "user_add", name, client, {"role": role})
    return user


def _user_lock(name: str) -> str:
    """The advisory-lock key of a user name (sign-ins, password changes and removals of one name take turns)."""
    return f"user:{name.lower()}"


def _refuse_last_admin(session, name: str) -> None:
    """ValidationError when `name` is the only admin while other users exist (nobody could manage them)."""
    user = user_store.get_user(session, name)
    others = [u for u in user_store.list_users(session) if u.id != user.id]
    if user.role == "admin" and others and user_store.count_admins(session) == 1:
        raise ValidationError(f"{name} is the last admin; make another user admin first")


def remove_user(engine: Engine, name: str, *, actor: Actor | None = None, client: str = "") -> UserInfo:
    """Delete a user; its web sessions end at once and its grants go; audited as user_remove."""
    name = check_user_name(name)
    require(engine, actor, "manage_users")
    with session_scope(engine) as session:
        lock_keys(session, ACCOUNTS_LOCK, _user_lock(name))
        _refuse_last_admin(session, name)
        user = user_store.remove_user(session, name)
        session_store.close_user_sessions(session, user.id)
        audit.record(session, actor_name(actor), "user_remove", name, client)
    return user


def set_password(engine: Engine, name: str, password: str, *, actor: Actor | None = None, client: str = "") -> None:
    """Replace a user's password and end its web sessions; audited as user_passwd."""
    name = check_user_name(name)
    require(engine, actor, "manage_users")
    password_hash = hash_password(check_password(password))
    with session_scope(engine) as session:
        lock_keys(session, _user_lock(name))  # a sign-in checking the old password finishes first
        user = user_store.set_password_hash(session, name, password_hash)
        session_store.close_user_sessions(session, user.id)
        audit.record(session, actor_name(actor), "user_passwd", name, client)


def set_role(engine: Engine, name: str, role: str, *, actor: Actor | None = None, client: str = "") -> UserInfo:
    """Change a user's role; audited as user_role."""
    name = check_user_name(name)
    require(engine, actor, "manage_users")
    role = _check_role(role)
    with session_scope(engine) as session:
        lock_keys(session, ACCOUNTS_LOCK, _user_lock(name))  # two admins demoting each other: one is refused
        if role != "admin":
            _refuse_last_admin(session, name)
        user = user_store.set_role(session, name, role)
        audit.record(session, actor_name(actor), "user_role", name, client, {"role": role})
    return user


def set_email(engine: Engine, name: str, email: str | None, *, actor: Actor | None = None,
              client: str = "") -> UserInfo:
    """Map (or unmap) an identity-provider email to a user; audited as user_email."""
    name = check_user_name(name)
    require(engine, actor, "manage_users")
    email = check_email(email)
    with session_scope(engine) as session:
        lock_keys(session, ACCOUNTS_LOCK)
        user = user_store.set_email(session, name, email)
        audit.record(session, actor_name(actor), "user_email", name, client, {"email": email})
    return user


def grant(engine: Engine, name: str, project: str, *, actor: Actor | None = None, client: str = "") -> bool:
    """Let a user work on a project; False when already granted; audited as user_grant."""
    name = check_user_name(name)
    require(engine, actor, "manage_users")
    with session_scope(engine) as session:
        user, found = user_store.get_user(session, name), projects.get_project(session, project)
        added = user_store.grant(session, user.id, found.id)
        audit.record(session, actor_name(actor), "user_grant", name, client, {"project": found.name})
    return added


def revoke(engine: Engine, name: str, project: str, *, actor: Actor | None = None, client: str = "") -> bool:
    """Withdraw a user's access to a project; False when there was none; audited as user_revoke."""
    name = check_user_name(name)
    require(engine, actor, "manage_users")
    with session_scope(engine) as session:
        user, found = user_store.get_user(session, name), projects.get_project(session, project)
        removed = user_store.revoke(session, user.id, found.id)
        audit.record(session, actor_name(actor), "user_revoke", name, client, {"project": found.name})
    return removed


def list_users(engine: Engine, *, actor: Actor | None = None) -> list[UserSummary]:
    """Every user with its granted project names."""
    require(engine, actor, "manage_users")
    with session_scope(engine) as session:
        return [UserSummary(u, [p.name for p in user_store.granted_projects(session, u.id)])
                for u in user_store.list_users(session)]


def has_users(engine: Engine) -> bool:
    """Whether any account exists (without one, `segloop ui` on loopback runs as the single local user)."""
    with session_scope(engine) as session:
        return bool(user_store.list_users(session))


def has_admin(engine: Engine) -> bool:
    """Whether at least one admin account exists."""
    with session_scope(engine) as session:
        return user_store.count_admins(session) > 0


def audit_trail(engine: Engine, *, actor: Actor | None = None, action: str | None = None,
                limit: int = 200) -> list[AuditEventInfo]:
    """The newest audit events (admins only)."""
    require(engine, actor, "manage_users")
    with session_scope(engine) as session:
        return audit.recent_events(session, action=action, limit=limit)


# ---------------------------------------------------------------- login and sessions


def _utc(moment: datetime) -> datetime:
    """A timezone-aware UTC datetime (SQLite hands back naive ones)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _token_hash(token: str) -> str:
    """The SHA-256 hex of a session token (what the database keeps)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _known_user(session, name: str) -> tuple[UserInfo, str] | None:
    """(user, hash) when `name` is a valid name of an existing user, else None (nothing odd reaches the query)."""
    try:
        return user_store.credentials(session, check_user_name(name))
    except ValidationError:
        return None


def _audit_target(name: str, found: tuple[UserInfo, str] | None) -> str:
    """The audited login name: the user's name when it exists, else a hash (a mistyped password stays secret)."""
    if found is not None:
        return found[0].name
    return "unknown:" + hashlib.sha256(name.lower().encode("utf-8", "replace")).hexdigest()[:16]


def _wait_seconds(session, target: str, client: str, policy: AuthPolicy, now: datetime) -> float:
    """Seconds this attempt must still wait because of earlier failures on the name or on the client (0: go)."""
    runs = [audit.login_events_since_success(session, target=target, limit=policy.max_failures)]
    if client:  # not reset by a success: an attacker signing in to their own account between guesses
        since = now - timedelta(seconds=policy.client_window_seconds)
        runs.append(audit.login_failures_of_client(session, client, since, limit=policy.max_failures))
    wait = 0.0
    for failures in runs:
        if len(failures) >= policy.max_failures:
            elapsed = (now - _utc(failures[0].created_at)).total_seconds()
            wait = max(wait, policy.lockout_seconds - elapsed)
    return max(wait, 0.0)


def login(engine: Engine, name: str, password: str, client: str = "", policy: AuthPolicy = AuthPolicy(),
          now: datetime | None = None) -> LoginResult:
    """Check a name and password; a session token on success, else one message that never says whether the user
    exists. Every outcome is audited (login, login_failed, login_throttled); the password never is."""
    now = now or datetime.now(UTC)
    name = name.strip() if isinstance(name, str) else ""
    password = password if isinstance(password, str) else ""
    client = clean_client(client)
    with session_scope(engine) as session:
        lock_keys(session, _user_lock(name), *([f"client:{client}"] if client else []))  # one attempt at a time
        found = _known_user(session, name)
        target = _audit_target(name, found)
        wait = _wait_seconds(session, target, client, policy, now)
        if wait > 0:
            audit.record(session, target, "login_throttled", target, client)
            return LoginResult(None, None, f"Too many failed sign-ins; try again in {wait:.0f} s.", wait)
        valid = len(password) <= MAX_PASSWORD_LENGTH and verify_password(password, found[1] if found else _decoy_hash())
        if found is None or not valid:
            audit.record(session, target, "login_failed", target, client)
            return LoginResult(None, None, LOGIN_FAILED)
        user = found[0]
        token = _open_session(session, user, client, policy, now)
        audit.record(session, user.name, "login", user.name, client)
    return LoginResult(Actor(user.name, user.role, user.id), token, f"Signed in as {user.name} ({user.role}).")


def _open_session(session, user: UserInfo, client: str, policy: AuthPolicy, now: datetime) -> str:
    """A new random session token for the user (its hash stored with the expiry); expired sessions are purged."""
    session_store.purge_expired(session, now)
    token = secrets.token_urlsafe(32)
    session_store.open_session(session, _token_hash(token), user.id, now + timedelta(hours=policy.session_hours),
                               client)
    return token


def session_actor(engine: Engine, token: str | None, now: datetime | None = None) -> Actor | None:
    """The signed-in actor of a session token, or None when it is unknown, expired, logged out or its user removed."""
    if not token or not isinstance(token, str) or len(token) > 200:
        return None
    now = now or datetime.now(UTC)
    with session_scope(engine) as session:
        found = session_store.find_session(session, _token_hash(token))
        if found is None:
            return None
        if _utc(found.expires_at) <= now:
            session_store.close_session(session, _token_hash(token))
            return None
        user = user_store.get_user_by_id(session, found.user_id)
    return None if user is None else Actor(user.name, user.role, user.id)


def logout(engine: Engine, token: str | None, actor: Actor | None = None, client: str = "") -> None:
    """End a web session (its row is deleted, so the cookie no longer signs anyone in); audited as logout."""
    if not token or not isinstance(token, str):
        return
    with session_scope(engine) as session:
        if session_store.close_session(session, _token_hash(token)):
            audit.record(session, actor_name(actor), "logout", actor_name(actor), client)


def identity_actor(engine: Engine, email: str | None, client: str = "", *, audit_login: bool = True) -> Actor | None:
    """The segloop user an identity provider's email maps to (users.email, case-insensitive), or None; the sign-in
    (or the refusal of an unmapped email) is audited unless `audit_login` is False (a page rerun)."""
    try:
        email = check_email(email)
    except ValidationError:
        return None
    if email is None:
        return None
    with session_scope(engine) as session:
        user = user_store.find_user_by_email(session, email)
        if user is None:
            if audit_login:
                audit.record(session, "oidc", "login_failed", "oidc:unmapped", client, {"email": email})
            return None
        if audit_login:
            audit.record(session, user.name, "login", user.name, client, {"via": "oidc"})
    return Actor(user.name, user.role, user.id)


# ---------------------------------------------------------------- serving


def is_loopback(address: str) -> bool:
    """Whether a listen address only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def serve_refusal(engine: Engine, address: str) -> str | None:
    """Why the web UI must not listen on `address` now (None: it may): other machines need accounts first."""
    if is_loopback(address) or has_admin(engine):
        return None
    return (f"refusing to serve on {address}: anyone who can reach it could use segloop without signing in. "
            "Add an admin first: `segloop users add NAME --role admin` (then annotators and reviewers with "
            "`segloop users add NAME --role annotator` and `segloop users grant NAME --project P`).")


def record_event(engine: Engine, action: str, target: str = "", detail: dict | None = None, *,
                 actor: Actor | None = None, client: str = "") -> None:
    """Append one audit event for an action done elsewhere (an import, an export)."""
    with session_scope(engine) as session:
        audit.record(session, actor_name(actor), action, target, clean_client(client), detail)
