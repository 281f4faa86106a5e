"""The segloop command line: `segloop.platform.cli:main` assembles the command modules under `commands/`."""
from segloop.platform.cli.main import main

__all__ = ["main"]
