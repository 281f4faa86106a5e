"""The `segloop` command line: one click group assembled from the command modules."""
from __future__ import annotations

import importlib
import os
import sys

# Idle OpenMP threads spin by default; on shared cores that slows FAISS and torch down (measured 3x).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from segloop.platform.cli.commands import BENCH_MODULES, COMMAND_MODULES


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """segloop: raw video in, segmentation models out, with as few labels as possible."""


@main.group()
def bench() -> None:
    """Benchmarks: results printed as tables and saved as JSON."""


def _register() -> None:
    """Attach every command module's `command` (or `commands` list) to the right group."""
    for group, names in ((main, COMMAND_MODULES), (bench, BENCH_MODULES)):
        for name in names:
            module = importlib.import_module(name)
            for command in getattr(module, "commands", None) or [module.command]:
                group.add_command(command)


_register()

if __name__ == "__main__":
    sys.exit(main())
