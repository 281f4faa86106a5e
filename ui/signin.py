"""Sign-in for the web UI: the login form before any page, a session cookie that survives a reload, logout,
optional OIDC (`st.login`), and the signed-in actor every service call made from a page acts for.

The session token lives in a cookie set by a small script (`st.html` with JavaScript: Streamlit has no
cookie-writing API); the server keeps only its SHA-256 with an expiry, so logging out or removing the user
ends the session even if the browser keeps the cookie. `st.context.cookies` reads it back after a reload.
"""
from __future__ import annotations

import streamlit as st
from sqlalchemy import Engine

from segloop.platform.services import access, auth
from segloop.platform.services.access import Actor
from segloop.ui.literal import literal

COOKIE = "segloop_session"
GATED_KEY = "signin_gated"
ACTOR_KEY, TOKEN_KEY, OIDC_KEY = "signin_actor", "signin_token", "signin_oidc"


def _signed_in_actor(engine: Engine) -> Actor | None:
    """The actor of a Streamlit session that went through `gate` (ANONYMOUS before sign-in, or once its session has
    ended: signed out in another tab, a password change, expiry); None elsewhere: outside a script run, or a page
    script run on its own (tests), which are trusted callers."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if get_script_run_ctx() is None or not st.session_state.get(GATED_KEY):
        return None
    actor = st.session_state.get(ACTOR_KEY) or access.ANONYMOUS
    if actor.user_id is None or st.session_state.get(OIDC_KEY):  # the local user; an identity provider's session
        return actor
    return auth.session_actor(engine, _token()) or access.ANONYMOUS


def _token() -> str | None:
    """This browser session's sign-in token (signed in here, else the cookie of an earlier sign-in)."""
    return st.session_state.get(TOKEN_KEY) or st.context.cookies.get(COOKIE)


def still_signed_in(engine: Engine) -> bool:
    """Whether the actor the page was drawn for is still signed in with the same role (checked by fragments, whose
    reruns skip `gate`)."""
    actor = st.session_state.get(ACTOR_KEY)
    if not st.session_state.get(GATED_KEY) or actor is None or actor.user_id is None or st.session_state.get(OIDC_KEY):
        return True
    return auth.session_actor(engine, _token()) == actor


def fragment(body, engine: Engine, run_every: float | None = None):
    """`st.fragment(body)` that reruns the whole app (and so `gate`: the login form once the session has ended, the
    navigation of a changed role) instead of drawing the fragment for someone no longer signed in as before."""
    import functools

    @functools.wraps(body)
    def guarded(*args, **kwargs):
        if not still_signed_in(engine):
            st.rerun(scope="app")
        return body(*args, **kwargs)

    return st.fragment(guarded, run_every=run_every)


def current_actor() -> Actor:
    """The signed-in actor (ANONYMOUS before sign-in; the local user for a page run on its own, as in tests)."""
    if not st.session_state.get(GATED_KEY):
        return access.LOCAL_ACTOR
    return st.session_state.get(ACTOR_KEY) or access.ANONYMOUS


def may(action: str) -> bool:
    """Whether the signed-in user's role allows an action (to grey out buttons; the services check again)."""
    return access.can(current_actor(), action)


def client_address() -> str:
    """The browser's address as Streamlit sees it ('' when unknown)."""
    try:
        address = st.context.ip_address
    except (AttributeError, RuntimeError):
        return ""
    return address if isinstance(address, str) else ""  # a test harness may stand in something else


def _write_cookie(token: str | None, max_age: int, where=st) -> None:
    """Set (or, with no token, delete) the session cookie in the browser."""
    value = token or ""
    where.html(f"<script>document.cookie = '{COOKIE}={value}; path=/; max-age={max_age}; SameSite=Strict'"
            " + (location.protocol === 'https:' ? '; Secure' : '');</script>", unsafe_allow_javascript=True)


def _oidc_configured() -> bool:
    """Whether `.streamlit/secrets.toml` has an [auth] section (Streamlit's OIDC login)."""
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError, OSError, ValueError):
        return False


def _oidc_actor(engine: Engine) -> Actor | None:
    """The segloop user mapped to the identity provider's email, when signed in through OIDC (audited once)."""
    if not _oidc_configured() or not st.user.get("is_logged_in"):
        return None
    email = st.user.get("email")
    first = st.session_state.get(OIDC_KEY) != email
    actor = auth.identity_actor(engine, email, client_address(), audit_login=first)
    st.session_state[OIDC_KEY] = email if actor is not None else None
    return actor


def gate(engine: Engine, server_address: str) -> Actor:
    """The signed-in actor; otherwise the login form is drawn and the script stops here.

    With no accounts at all and a loopback address, the single local user (an admin) is signed in, as before.
    """
    access.install_actor_resolver(lambda: _signed_in_actor(engine))
    st.session_state[GATED_KEY] = True
    if not auth.has_users(engine):
        if not auth.is_loopback(server_address):
            st.error(auth.serve_refusal(engine, server_address))
            st.stop()
        st.session_state[ACTOR_KEY] = access.LOCAL_ACTOR
        return access.LOCAL_ACTOR
    actor = auth.session_actor(engine, _token()) or _oidc_actor(engine)
    if actor is None:
        st.session_state.pop(ACTOR_KEY, None)
        login_form(engine)
        st.stop()
    st.session_state[ACTOR_KEY] = actor
    signed_in_here = st.session_state.get(TOKEN_KEY)
    if signed_in_here and st.context.cookies.get(COOKIE) != signed_in_here:
        # Written on every run of this browser session (in the sidebar: no gap in the page): a run cut short
        # by a rerun may never have delivered the script, and the cookie is what keeps the user signed in on
        # a reload or another address. A new page load reads it back and stops this.
        _write_cookie(signed_in_here, int(auth.AuthPolicy().session_hours * 3600), where=st.sidebar)
    return actor


def login_form(engine: Engine) -> None:
    """The sign-in form (and the identity-provider button when OIDC is configured)."""
    if st.session_state.pop("signin_logged_out", False):
        _write_cookie(None, 0)
    st.title("segloop")
    st.caption("Sign in to continue.")
    with st.form("signin_form"):
        name = st.text_input("User name", key="signin_name", max_chars=64)
        password = st.text_input("Password", type="password", key="signin_password", max_chars=auth.MAX_PASSWORD_LENGTH)
        submitted = st.form_submit_button("Sign in", type="primary")
    if _oidc_configured() and st.button("Sign in with your organisation's account"):
        st.login()
    if not submitted:
        return
    result = auth.login(engine, name, password, client_address())
    if result.actor is None:
        st.error(literal(result.message))
        return
    st.session_state[ACTOR_KEY] = result.actor
    st.session_state[TOKEN_KEY] = result.token
    st.session_state.pop("signin_password", None)
    st.rerun()


def logout_button(engine: Engine, actor: Actor) -> None:
    """The sidebar's who-am-I line and Sign out button (ends the server session and clears the cookie)."""
    st.sidebar.caption(f"Signed in as **{literal(actor.name)}** ({actor.role})")
    if actor.user_id is None or not st.sidebar.button("Sign out", key="signin_logout"):
        return
    auth.logout(engine, _token(), actor, client_address())
    for key in (ACTOR_KEY, TOKEN_KEY, OIDC_KEY):
        st.session_state.pop(key, None)
    st.session_state["signin_logged_out"] = True
    if _oidc_configured() and st.user.get("is_logged_in"):
        st.logout()
    st.rerun()
