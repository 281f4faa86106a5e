"""Helpers for the page tests (Streamlit AppTest)."""
from __future__ import annotations


def page_script(name: str) -> str:
    """A script that renders one page function on its own (pages are functions under st.navigation)."""
    return f"from segloop.ui.views import {name}\n{name}.render()\n"
