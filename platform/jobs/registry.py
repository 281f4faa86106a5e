"""Job kinds: an operation of `services.operations` (name, params spec) and the handler the worker runs."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from segloop.platform.core.errors import ValidationError
from segloop.platform.core.specs import to_json
from segloop.platform.services import operations

# Modules that register the built-in handlers when imported (each calls `job_kind`).
HANDLER_MODULES: list[str] = [
    "segloop.platform.jobs.kinds.pipeline",
    "segloop.platform.jobs.kinds.finetune",
    "segloop.platform.jobs.kinds.map2d",
]

# Bad job params are ValidationErrors (the message names the field); the old name stays for plugins and tests.
JobParamsError = ValidationError


class JobContext(Protocol):
    """What a handler can do while it runs: report progress, log, learn about cancellation."""

    job_id: int

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress in 0..1 with a short message."""

    def log(self, message: str) -> None:
        """Write a line to the job's log."""


Handler = Callable[[Any, JobContext], dict[str, Any]]


@dataclass(frozen=True)
class JobKind:
    """A registered kind of job: its operation's params class and description, and its handler."""

    name: str
    params: type
    handler: Handler
    description: str


_HANDLERS: dict[str, Handler] = {}


def job_kind(name: str, params: type | None = None, description: str = ""):
    """Decorator registering `handler(params, ctx) -> result dict` as the job kind `name`.

    Built-in kinds name an operation of `services.operations`; a plugin passes its own params dataclass
    (and description), which registers a new operation.
    """

    def register(handler: Handler) -> Handler:
        if params is not None:
            operations.register_operation(name, params, description or (handler.__doc__ or "").strip())
        _HANDLERS[name] = handler
        return handler

    return register


def kinds() -> dict[str, JobKind]:
    """Every job kind with a handler: built-in modules plus plugins named in SEGLOOP_JOB_PLUGINS."""
    for module in HANDLER_MODULES:
        importlib.import_module(module)
    known = operations.operations()
    return {name: JobKind(name, known[name].params, handler, known[name].description)
            for name, handler in sorted(_HANDLERS.items()) if name in known}


def get_kind(name: str) -> JobKind:
    """The job kind `name`, or ValidationError listing the known ones."""
    known = kinds()
    if name not in known:
        raise ValidationError(f"job kind {name!r} is unknown; known kinds: {', '.join(sorted(known))}")
    return known[name]


def parse_params(kind: str, params: dict[str, Any]) -> Any:
    """The kind's params dataclass built from a JSON dict, or ValidationError naming the field."""
    get_kind(kind)
    return operations.parse_params(kind, params)


def validate_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Params checked against the kind's spec (types, bounds, choices; not references), as JSON values."""
    return to_json(parse_params(kind, params))
