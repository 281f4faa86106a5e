"""`segloop ui`: start the Streamlit web UI."""
from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path

import click

from segloop.platform.core.errors import friendly_errors


@click.command("ui")
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Listen address; any non-loopback address needs at least one admin account (`segloop users`).")
@friendly_errors
def command(port: int, address: str) -> None:
    """Serve the web UI (upload, library, jobs) on http://ADDRESS:PORT."""
    import segloop.ui
    from segloop.platform.db.migrate import ensure_db
    from segloop.platform.services import auth

    check_listen(address, port)
    refusal = auth.serve_refusal(ensure_db(), address)
    if refusal:
        raise click.ClickException(refusal)
    app = Path(segloop.ui.__file__).parent / "app.py"
    args = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
            "--server.port", str(port), "--server.address", address, "--browser.gatherUsageStats", "false"]
    os.execv(sys.executable, args)  # become the Streamlit server: stopping `segloop ui` stops it


def check_listen(address: str, port: int) -> None:
    """ClickException unless this machine can listen on ADDRESS:PORT now (an address of its own, a free port)."""
    try:
        family, kind, proto, _, where = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError):
        raise click.ClickException(f"--address {address!r}: not a host name or IP address this machine can "
                                   "resolve") from None
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(where)
    except OSError as exc:
        reasons = {errno.EADDRINUSE: f"port {port} is in use on {address} (another `segloop ui`?); choose "
                                     "another --port",
                   errno.EADDRNOTAVAIL: f"--address {address}: not an address of this machine",
                   errno.EACCES: f"port {port} needs administrator rights on this machine; choose one above 1023"}
        raise click.ClickException(reasons.get(exc.errno, f"cannot listen on {address}:{port} "
                                                          f"({exc.strerror or 'refused'})")) from None
