"""CLI command modules: each module listed here exposes `command` (a click command or group) or `commands`.

`segloop.platform.cli` adds them to the `segloop` group; bench modules (in `segloop.platform.bench`)
are added under `segloop bench`. Modules import heavy libraries (torch, faiss) inside functions so
that `segloop --help` stays fast.
"""

COMMAND_MODULES: list[str] = [
    "segloop.platform.cli.commands.db",
    "segloop.platform.cli.commands.ingest",
    "segloop.platform.cli.commands.synth",
    "segloop.platform.cli.commands.jobs",
    "segloop.platform.cli.commands.worker",
    "segloop.platform.cli.commands.exchange",
    "segloop.platform.cli.commands.demo",
    "segloop.platform.cli.commands.ui",
    "segloop.platform.cli.commands.users",
    "segloop.platform.cli.commands.tags",
    "segloop.platform.cli.commands.select",
    "segloop.platform.cli.commands.eval",
    "segloop.platform.cli.commands.vos",
    "segloop.platform.cli.commands.pretrain",
    "segloop.platform.cli.commands.finetune",
]

BENCH_MODULES: list[str] = [
    "segloop.platform.bench.ingest",
    "segloop.platform.bench.scale",
    "segloop.platform.bench.vos",
    "segloop.platform.bench.pretrain",
    "segloop.platform.bench.embed",
    "segloop.platform.bench.select",
    "segloop.platform.bench.active_learning",
    "segloop.platform.bench.keyframes",
    "segloop.platform.bench.vss",
]
