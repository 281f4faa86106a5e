"""Accounts: scrypt hashes, the `segloop users` CLI, sign-in with throttling, web sessions, OIDC mapping,
and `segloop ui` refusing a non-loopback address until an admin exists (SQLite and PostgreSQL)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from segloop.platform.core.errors import AccessDenied, ValidationError
from segloop.platform.services import auth
from segloop.platform.services.access import Actor

PASSWORD = "Correct-Horse-7731"


def add(engine, name: str, role: str, password: str = PASSWORD, **kwargs):
    """Create a user as the trusted CLI would."""
    return auth.add_user(engine, name, role, password, **kwargs)


def test_scrypt_hash_is_salted_and_carries_its_parameters() -> None:
    """Two hashes of one password differ (salt), name scrypt with n, r, p, and verify only the right password."""
    first, second = auth.hash_password(PASSWORD), auth.hash_password(PASSWORD)
    assert first != second
    scheme, n, r, p, salt, key = first.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2**14, 8, 1) and salt and key
    assert PASSWORD not in first
    assert auth.verify_password(PASSWORD, first) and auth.verify_password(PASSWORD, second)
    assert not auth.verify_password(PASSWORD + "x", first)
    assert not auth.verify_password(PASSWORD, "scrypt$1$2$oops") and not auth.verify_password(PASSWORD, "")
    weaker = first.replace("$16384$", "$1024$")
    assert not auth.verify_password(PASSWORD, weaker), "the stored parameters are the ones used to verify"


def test_users_cli_add_list_passwd_grant_revoke_remove(cli, engine) -> None:
    """Every `segloop users` subcommand, with the password read from stdin; refusals exit 1 with a message."""
    from click.testing import CliRunner

    from segloop.platform.cli import main
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import projects

    with session_scope(engine) as session:
        projects.get_or_create_project(session, "alpha")
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None):
        """Invoke `segloop ...` with stdin (not a terminal)."""
        return runner.invoke(main, list(args), input=stdin)

    assert run("users", "add", "root", "--role", "admin", stdin=PASSWORD + "\n").exit_code == 0
    assert run("users", "add", "ann", "--role", "annotator", stdin="annotator-pass\n").exit_code == 0
    short = run("users", "add", "bob", "--role", "annotator", stdin="short\n")
    assert short.exit_code == 1 and "at least 8 characters" in short.output
    bad = run("users", "add", "../evil", "--role", "admin", stdin=PASSWORD + "\n")
    assert bad.exit_code == 1 and "path separator" in bad.output and "Traceback" not in bad.output
    assert run("users", "grant", "ann", "--project", "alpha").exit_code == 0
    missing = run("users", "grant", "ann", "--project", "nope")
    assert missing.exit_code == 1 and "project 'nope' does not exist" in missing.output
    listing = run("users", "list").output
    assert "root" in listing and "ann" in listing and "alpha" in listing
    assert auth.login(engine, "ann", "annotator-pass").actor is not None
    assert run("users", "passwd", "ann", stdin="a-new-password\n").exit_code == 0
    assert auth.login(engine, "ann", "annotator-pass").actor is None
    assert auth.login(engine, "ann", "a-new-password").actor.name == "ann"
    assert run("users", "revoke", "ann", "--project", "alpha").exit_code == 0
    assert "none" in run("users", "list").output
    last = run("users", "remove", "root")
    assert last.exit_code == 1 and "last admin" in last.output
    assert run("users", "remove", "ann").exit_code == 0
    assert "ann" not in run("users", "list").output
    actions = [e.action for e in auth.audit_trail(engine, limit=50)]
    for action in ("user_add", "user_grant", "user_passwd", "user_revoke", "user_remove", "login", "login_failed"):
        assert action in actions


def test_login_session_logout_and_removal(engine) -> None:
    """A token signs in until logout, expiry, a password change or the user's removal."""
    add(engine, "root", "admin")
    add(engine, "rev", "reviewer")
    result = auth.login(engine, "rev", PASSWORD, client="10.0.0.7")
    assert result.actor == Actor("rev", "reviewer", result.actor.user_id) and result.token
    assert auth.session_actor(engine, result.token).name == "rev"
    assert auth.session_actor(engine, result.token, now=datetime.now(UTC) + timedelta(hours=13)) is None
    assert auth.session_actor(engine, result.token) is None, "an expired session is deleted"
    second = auth.login(engine, "rev", PASSWORD).token
    auth.logout(engine, second, result.actor)
    assert auth.session_actor(engine, second) is None
    third = auth.login(engine, "rev", PASSWORD).token
    auth.remove_user(engine, "rev")
    assert auth.session_actor(engine, third) is None
    assert auth.session_actor(engine, "forged-token") is None and auth.session_actor(engine, "") is None


def test_failed_logins_are_throttled_per_user_and_per_client(engine) -> None:
    """20 wrong passwords in a row: 5 are checked, 15 wait 30 s; the message never tells whether the user exists."""
    add(engine, "ann", "annotator")
    policy = auth.AuthPolicy()
    outcomes = [auth.login(engine, "ann", f"wrong-guess-{i}", client="203.0.113.5", policy=policy)
                for i in range(20)]
    checked = [o for o in outcomes if o.retry_after == 0]
    throttled = [o for o in outcomes if o.retry_after > 0]
    assert len(checked) == 5 and len(throttled) == 15
    assert all(o.message == auth.LOGIN_FAILED for o in checked)
    assert all(25 < o.retry_after <= 30 and "try again in" in o.message for o in throttled)
    assert auth.login(engine, "ann", PASSWORD, client="198.51.100.1").actor is None, "right password still waits"
    later = datetime.now(UTC) + timedelta(seconds=31)
    assert auth.login(engine, "ann", PASSWORD, client="198.51.100.1", now=later).actor.name == "ann"
    # The same client trying other names (existing or not) is throttled too, with the same words.
    unknown = [auth.login(engine, f"nobody{i}", "whatever-pass", client="192.0.2.9") for i in range(5)]
    assert [o.message for o in unknown] == [auth.LOGIN_FAILED] * 5
    assert auth.login(engine, "ann", "wrong-again", client="192.0.2.9").retry_after > 0
    known = auth.login(engine, "ann", "wrong-once-more", client="198.51.100.2")
    assert known.message == unknown[0].message == auth.LOGIN_FAILED


def test_password_never_reaches_the_database_logs_or_audit(engine, settings) -> None:
    """After adding users, good and bad sign-ins, the passwords appear nowhere in the DB, its files or the logs."""
    secret, typo = "Zebra-Quartz-90211", "Zebra-Quartz-90212"
    add(engine, "root", "admin", secret)
    auth.login(engine, "root", secret, client="127.0.0.1")
    for _ in range(7):
        auth.login(engine, "root", typo, client="127.0.0.1")
    auth.login(engine, typo, secret, client="127.0.0.1")  # password typed into the name field
    auth.set_password(engine, "root", typo)
    with engine.connect() as connection:
        for table in ("users", "user_sessions", "audit_events"):
            dump = repr(connection.execute(text(f"SELECT * FROM {table}")).all())
            assert secret not in dump and typo not in dump, table
    events = auth.audit_trail(engine, limit=100)
    assert {"login", "login_failed", "login_throttled", "user_passwd"} <= {e.action for e in events}
    files = [p for p in settings.data_dir.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        assert secret.encode() not in data and typo.encode() not in data, path
    if engine.dialect.name == "sqlite":
        assert any(p.name.startswith("segloop.db") for p in files)


def test_identity_provider_email_maps_to_a_user(engine) -> None:
    """An OIDC email signs in as the user it is mapped to (case-insensitive); unmapped or malformed ones do not."""
    add(engine, "root", "admin")
    add(engine, "rev", "reviewer", email="Rev@Example.org")
    assert auth.identity_actor(engine, "rev@example.org").name == "rev"
    assert auth.identity_actor(engine, "other@example.org") is None
    assert auth.identity_actor(engine, "not an email") is None and auth.identity_actor(engine, None) is None
    auth.set_email(engine, "root", "root@example.org")
    assert auth.identity_actor(engine, "ROOT@example.org").role == "admin"
    with pytest.raises(ValidationError, match="already belongs"):
        auth.set_email(engine, "rev", "root@example.org")


def test_only_admins_manage_users(engine) -> None:
    """A reviewer or annotator cannot add, remove, re-role or grant users, nor read the audit trail."""
    add(engine, "root", "admin")
    ann = Actor("ann", "annotator", add(engine, "ann", "annotator").id)
    rev = Actor("rev", "reviewer", add(engine, "rev", "reviewer").id)
    for actor in (ann, rev):
        with pytest.raises(AccessDenied, match="may not manage users"):
            auth.add_user(engine, "mallory", "admin", PASSWORD, actor=actor)
        with pytest.raises(AccessDenied):
            auth.set_role(engine, actor.name, "admin", actor=actor)
        with pytest.raises(AccessDenied):
            auth.audit_trail(engine, actor=actor)
    admin = auth.login(engine, "root", PASSWORD).actor
    auth.set_role(engine, "ann", "reviewer", actor=admin)
    assert {u.user.name: u.user.role for u in auth.list_users(engine, actor=admin)}["ann"] == "reviewer"


def test_a_role_changed_or_an_account_removed_after_sign_in_counts_at_once(engine) -> None:
    """A service checks the account's role as the database has it now, not as it was when the actor signed in."""
    add(engine, "root", "admin")
    add(engine, "rev", "reviewer")
    signed_in = auth.login(engine, "rev", PASSWORD).actor
    auth.set_role(engine, "rev", "admin")
    assert [u.user.name for u in auth.list_users(engine, actor=signed_in)] == ["rev", "root"], "promoted: allowed"
    admin = auth.login(engine, "rev", PASSWORD).actor
    auth.set_role(engine, "rev", "annotator")
    with pytest.raises(AccessDenied, match=r"rev \(annotator\) may not manage users"):
        auth.add_user(engine, "mallory", "admin", PASSWORD, actor=admin)
    auth.remove_user(engine, "rev")
    with pytest.raises(AccessDenied, match="no longer exists"):
        auth.audit_trail(engine, actor=admin)
    assert "mallory" not in [u.user.name for u in auth.list_users(engine)]
    auth.add_user(engine, "newcomer", "admin", PASSWORD)  # SQLite may give it the removed user's id
    with pytest.raises(AccessDenied, match="no longer exists"):
        auth.audit_trail(engine, actor=admin)
    for reserved in ("local", "Anonymous", "oidc"):
        with pytest.raises(ValidationError, match="is the name the audit trail gives to"):
            add(engine, reserved, "annotator")
    auth.logout(engine, 12345)  # type: ignore[arg-type]  # a token that is not text ends nothing, raises nothing


def test_user_names_differing_only_in_letter_case_are_one_name(engine, cli) -> None:
    """`ANN` cannot be added beside `ann`; sign-in and every `users` command find `ann` whatever the case typed."""
    add(engine, "root", "admin")
    add(engine, "ann", "annotator")
    with pytest.raises(ValidationError, match="'ann' already exists"):
        add(engine, "ANN", "admin")
    result = auth.login(engine, "Ann", PASSWORD)
    assert result.actor is not None and result.actor.name == "ann"
    auth.set_role(engine, "ANN", "reviewer")
    assert {u.user.name: u.user.role for u in auth.list_users(engine)}["ann"] == "reviewer"
    from click.testing import CliRunner

    from segloop.platform.cli import main

    taken = CliRunner().invoke(main, ["users", "add", "ROOT", "--role", "admin"], input=PASSWORD + "\n")
    assert taken.exit_code == 1 and "'root' already exists" in taken.output


def test_audit_filter_takes_audit_actions_only(engine, cli) -> None:
    """`users audit --action` of a word that is no audit action is refused listing the actions, not an empty table."""
    add(engine, "root", "admin")
    assert auth.login(engine, "root", PASSWORD).actor is not None
    wrong = cli("users", "audit", "--action", "nope")
    assert wrong.exit_code == 1 and "'nope' is not an audit action" in wrong.output and "login_failed" in wrong.output
    right = cli("users", "audit", "--action", "login")
    assert right.exit_code == 0 and "root" in right.output
    added = " ".join(cli("users", "audit", "--action", "user_add").output.split())
    assert '{"role":' in added and '"admin"}' in added and "'role'" not in added, added  # JSON, not a Python dict


def test_loopback_detection() -> None:
    """Loopback addresses need no accounts; everything else does."""
    assert all(auth.is_loopback(a) for a in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(auth.is_loopback(a) for a in ("0.0.0.0", "::", "192.168.1.4", "example.org", ""))


def _free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ui_refuses_an_address_or_port_it_cannot_listen_on(engine, settings) -> None:
    """`segloop ui` on a busy port, a port out of range, an address that does not resolve or is not this machine's:
    one line naming it, before Streamlit starts (before: a streamlit traceback for --port 99999, a log line for a
    busy port)."""
    from tests.conftest import run_segloop

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        cases = [(["--port", port], 1, f"port {port} is in use on 127.0.0.1"),
                 (["--port", "99999"], 2, "99999 is not in the range 1<=x<=65535"),
                 (["--address", "999.1.1.1"], 1, "--address '999.1.1.1': not a host name or IP address"),
                 (["--address", "192.0.2.1"], 1, "--address 192.0.2.1: not an address of this machine")]
        for options, code, message in cases:
            refused = run_segloop("ui", *options, timeout=120)
            assert refused.returncode == code and message in refused.stderr, (options, refused.stderr)
            assert "Traceback" not in refused.stderr


def test_ui_on_all_addresses_needs_an_admin(engine, settings) -> None:
    """`segloop ui --address 0.0.0.0`: exit 1 with how to add an admin; with one, it serves."""
    from tests.conftest import SEGLOOP, run_segloop

    port = str(_free_port())
    refused = run_segloop("ui", "--address", "0.0.0.0", "--port", port, timeout=120)
    assert refused.returncode == 1
    assert "segloop users add NAME --role admin" in refused.stderr and "Traceback" not in refused.stderr
    add(engine, "root", "admin")
    server = subprocess.Popen([*SEGLOOP, "ui", "--address", "0.0.0.0", "--port", port], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        deadline, healthy = time.monotonic() + 90, False
        while time.monotonic() < deadline and not healthy and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                    healthy = response.status == 200
            except OSError:
                time.sleep(0.5)
        assert healthy, f"segloop ui did not serve (exit code {server.poll()})"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)


def _at_once(count: int, call) -> list:
    """`call(i)` in `count` threads released together; each outcome (a value or the exception raised)."""
    import threading

    barrier, outcomes = threading.Barrier(count), [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = call(i)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_account_checks_hold_when_requests_race(engine) -> None:
    """On PostgreSQL two admins demoting each other at once left no admin, parallel wrong passwords were all checked
    (no lockout), and a sign-in racing a password change kept a session opened with the old password."""
    add(engine, "a1", "admin")
    add(engine, "a2", "admin")
    add(engine, "ann", "annotator")
    for _ in range(3):
        outcomes = _at_once(2, lambda i: auth.set_role(engine, f"a{i + 1}", "annotator"))
        admins = [u.user.name for u in auth.list_users(engine) if u.user.role == "admin"]
        assert len(admins) == 1 and sum(isinstance(o, ValidationError) for o in outcomes) == 1, outcomes
        auth.set_role(engine, "a1" if admins == ["a2"] else "a2", "admin")
    guesses = _at_once(12, lambda i: auth.login(engine, "ann", f"wrong-{i}", client=f"198.51.100.{i}"))
    assert sum(o.retry_after == 0 for o in guesses) == 5, "a name's failures are counted one attempt at a time"
    for _ in range(3):
        outcomes = _at_once(2, lambda i: auth.login(engine, "a1", PASSWORD).token if i == 0
                            else auth.set_password(engine, "a1", PASSWORD))
        assert outcomes[0] is None or auth.session_actor(engine, outcomes[0]) is None, "old-password session kept"


def test_sign_in_names_emails_and_first_accounts_cannot_be_mistaken(engine) -> None:
    """An email differing only in case cannot go to a second user (single sign-on would pick either); a client's
    failures are not wiped by someone signing in from it; the web UI cannot make a non-admin the first account."""
    from segloop.platform.services import access

    add(engine, "root", "admin", email="Root@Example.org")
    with pytest.raises(ValidationError, match="already belongs"):
        add(engine, "rev", "reviewer", email="root@example.org")
    add(engine, "mallory", "annotator")
    for i in range(4):
        auth.login(engine, "root", f"wrong-{i}", client="203.0.113.7")
        assert auth.login(engine, "mallory", PASSWORD, client="203.0.113.7").actor is not None
    assert auth.login(engine, "root", "wrong-4", client="203.0.113.7").retry_after == 0
    assert auth.login(engine, "root", "wrong-5", client="203.0.113.7").retry_after > 0, "5 from one client: wait"
    auth.remove_user(engine, "mallory")
    auth.remove_user(engine, "root")
    with pytest.raises(ValidationError, match="add an admin first"):
        auth.add_user(engine, "ann", "annotator", PASSWORD, actor=access.LOCAL_ACTOR)
    assert auth.add_user(engine, "boss", "admin", PASSWORD, actor=access.LOCAL_ACTOR).role == "admin"


def test_passwords_read_as_typed_and_admins_listed_with_every_project(engine) -> None:
    """A password piped from a Windows text file kept its CR; one typed with decomposed accents (NFD) did not match
    the composed form; eight spaces were a password; `users list` showed an admin's old grants instead of all."""
    from click.testing import CliRunner

    from segloop.platform.cli import main
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import projects

    with session_scope(engine) as session:
        projects.get_or_create_project(session, "pa")
    runner = CliRunner()
    assert runner.invoke(main, ["users", "add", "kim", "--role", "annotator"], input="winpass123\r\n").exit_code == 0
    assert auth.login(engine, "kim", "winpass123").actor is not None
    assert runner.invoke(main, ["users", "grant", "kim", "--project", "pa"]).exit_code == 0
    assert runner.invoke(main, ["users", "role", "kim", "admin"]).exit_code == 0
    listing = runner.invoke(main, ["users", "list"]).output
    assert [line.split("│")[4].strip() for line in listing.splitlines() if "kim" in line] == ["all"], listing
    add(engine, "zoe", "annotator", password="café-crème-7")  # typed composed
    assert auth.login(engine, "zoe", "cafe\u0301-cre\u0300me-7").actor is not None  # typed decomposed
    with pytest.raises(ValidationError, match="not only spaces"):
        add(engine, "sam", "annotator", password=" " * 8)
