"""`segloop ui`: start the Streamlit web UI."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from segloop.platform.core.errors import friendly_errors


@click.command("ui")
@click.option("--port", type=int, default=8501, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Listen address; any non-loopback address needs at least one admin account (`segloop users`).")
@friendly_errors
def command(port: int, address: str) -> None:
    """Serve the web UI (upload, library, jobs) on http://ADDRESS:PORT."""
    import segloop.ui
    from segloop.platform.db.migrate import ensure_db
    from segloop.platform.services import auth

    refusal = auth.serve_refusal(ensure_db(), address)
    if refusal:
        raise click.ClickException(refusal)
    app = Path(segloop.ui.__file__).parent / "app.py"
    args = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
            "--server.port", str(port), "--server.address", address, "--browser.gatherUsageStats", "false"]
    os.execv(sys.executable, args)  # become the Streamlit server: stopping `segloop ui` stops it
