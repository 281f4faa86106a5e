"""CLI command modules: each module listed here exposes `command` (a click command or group) or `commands`.

`segloop.platform.cli` adds them to the `segloop` group; bench modules (in `segloop.platform.bench`)
are added under `segloop bench`. Modules import heavy libraries (torch, faiss) inside functions so
that `segloop --help` stays fast.
"""

COMMAND_MODULES: list[str] = [
    "segloop.platform.commands.db",
    "segloop.platform.commands.ingest",
    "segloop.platform.commands.synth",
    "segloop.platform.commands.jobs",
    "segloop.platform.commands.worker",
    "segloop.platform.commands.exchange",
    "segloop.platform.commands.demo",
    "segloop.platform.commands.ui",
    "segloop.platform.commands.select",
    "segloop.platform.commands.eval",
    "segloop.platform.commands.vos",
    "segloop.platform.commands.pretrain",
    "segloop.platform.commands.finetune",
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
]
