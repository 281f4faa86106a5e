"""Admin page: users (add, role, password, email, projects, remove) and the audit trail. Services act for the
signed-in user (`ui.signin`) and refuse anyone but an admin."""
from __future__ import annotations

import json
from functools import partial

import streamlit as st

from segloop.platform.services import access, auth
from segloop.ui import resources, signin
from segloop.ui.literal import literal

act = partial(resources.act, note_key="admin_note")  # run an action, then rerun with its note


def render() -> None:
    """Draw the page."""
    st.title("Admin")
    engine = resources.engine()
    note = st.session_state.pop("admin_note", None)
    if note:
        st.success(literal(note))
    try:
        users = auth.list_users(engine)
    except ValueError as exc:
        st.error(literal(exc))
        return
    if not users:
        st.info("No accounts yet: segloop runs as one local user. Adding the first account turns on sign-in "
                "(add an admin first).")
    else:
        st.dataframe([{"user": u.user.name, "role": u.user.role, "email": u.user.email or "",
                       "projects": "all" if u.user.role == "admin" else ", ".join(u.projects) or "none"}
                      for u in users], hide_index=True)
    add_user_form()
    if users:
        edit_user([u.user.name for u in users])
    audit_section()


def add_user_form() -> None:
    """A form that creates a user."""
    with st.expander("Add a user"), st.form("admin_add_user", clear_on_submit=True):
        name_col, role_col = st.columns(2)
        name = name_col.text_input("User name", max_chars=64, key="admin_new_name")
        role = role_col.selectbox("Role", access.ROLES, index=2, key="admin_new_role")
        password = name_col.text_input("Password (8+ characters)", type="password", key="admin_new_password",
                                       max_chars=auth.MAX_PASSWORD_LENGTH)
        email = role_col.text_input("Email for single sign-on (optional)", key="admin_new_email",
                                    max_chars=auth.MAX_EMAIL_LENGTH)
        if st.form_submit_button("Add user", type="primary"):
            act(lambda: auth.add_user(resources.engine(), name, role, password, email=email or None,
                                      client=signin.client_address()), f"Added {name.strip()} ({role}).")


def edit_user(names: list[str]) -> None:
    """Change one user's role, password, email and projects, or remove it."""
    engine = resources.engine()
    client = signin.client_address()
    with st.expander("Change a user", expanded=False):
        name = st.selectbox("User", names, key="admin_user")
        summary = next(u for u in auth.list_users(engine) if u.user.name == name)
        role_col, password_col = st.columns(2)
        role = role_col.selectbox("Role", access.ROLES, index=access.ROLES.index(summary.user.role),
                                  key=f"admin_role_{name}")
        if role_col.button("Save role", key="admin_save_role"):
            act(lambda: auth.set_role(engine, name, role, client=client), f"{name} is now {role}.")
        password = password_col.text_input("New password", type="password", key=f"admin_password_{name}",
                                           max_chars=auth.MAX_PASSWORD_LENGTH)
        if password_col.button("Set password", key="admin_set_password"):
            act(lambda: auth.set_password(engine, name, password, client=client), f"Password of {name} changed.")
        all_projects = [p.name for p in access.visible_projects(engine, None)]
        chosen = st.multiselect("Projects", all_projects, default=[p for p in summary.projects if p in all_projects],
                                key=f"admin_projects_{name}", disabled=summary.user.role == "admin",
                                help="Admins see every project.")
        if st.button("Save projects", key="admin_save_projects", disabled=summary.user.role == "admin"):
            act(lambda: _set_projects(name, set(summary.projects), set(chosen), client), f"Projects of {name} saved.")
        email = st.text_input("Email for single sign-on", value=summary.user.email or "", key=f"admin_email_{name}",
                              max_chars=auth.MAX_EMAIL_LENGTH)
        if st.button("Save email", key="admin_save_email"):
            act(lambda: auth.set_email(engine, name, email or None, client=client), f"Email of {name} saved.")
        confirm = st.checkbox(f"Yes, remove {name}", key=f"admin_confirm_remove_{name}")
        if st.button("Remove user", key="admin_remove", disabled=not confirm):
            act(lambda: auth.remove_user(engine, name, client=client), f"Removed {name}.")


def _set_projects(name: str, before: set[str], after: set[str], client: str) -> None:
    """Grant the added projects and revoke the removed ones."""
    engine = resources.engine()
    for project in sorted(after - before):
        auth.grant(engine, name, project, client=client)
    for project in sorted(before - after):
        auth.revoke(engine, name, project, client=client)


def audit_section() -> None:
    """The newest audit events."""
    with st.expander("Audit trail (newest 200)"):
        events = auth.audit_trail(resources.engine(), limit=200)
        st.dataframe([{"when": f"{e.created_at:%Y-%m-%d %H:%M:%S}", "actor": e.actor, "action": e.action,
                       "target": e.target, "client": e.client,
                       "detail": json.dumps(e.detail, ensure_ascii=False) if e.detail else ""} for e in events],
                     hide_index=True)
