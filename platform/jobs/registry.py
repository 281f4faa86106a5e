"""Job kinds: a name, a params dataclass (validated on submit) and a handler run by the worker."""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

# Modules that register job kinds when imported (each calls `job_kind`).
HANDLER_MODULES: list[str] = [
    "segloop.platform.jobs.kinds.pipeline",
    "segloop.platform.jobs.kinds.finetune",
    "segloop.platform.jobs.kinds.map2d",
]


class JobParamsError(ValueError):
    """Job parameters that do not fit the kind's schema; the message names the field."""


class JobContext(Protocol):
    """What a handler can do while it runs: report progress, log, learn about cancellation."""

    job_id: int

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress in 0..1 with a short message."""

    def log(self, message: str) -> None:
        """Write a line to the job's log."""


@dataclass(frozen=True)
class JobKind:
    """A registered kind of job."""

    name: str
    params: type
    handler: Callable[[Any, JobContext], dict[str, Any]]
    description: str


_KINDS: dict[str, JobKind] = {}


def job_kind(name: str, params: type, description: str = ""):
    """Decorator registering `handler(params, ctx) -> result dict` as the job kind `name`."""

    def register(handler: Callable[[Any, JobContext], dict[str, Any]]):
        _KINDS[name] = JobKind(name, params, handler, description or (handler.__doc__ or "").strip())
        return handler

    return register


def kinds() -> dict[str, JobKind]:
    """All registered job kinds: built-in modules plus plugins named in SEGLOOP_JOB_PLUGINS."""
    plugins = [p for p in os.environ.get("SEGLOOP_JOB_PLUGINS", "").split(os.pathsep) if p]
    for module in HANDLER_MODULES + plugins:
        _import_handlers(module)
    return dict(_KINDS)


def _import_handlers(module: str) -> None:
    """Import a handler module by dotted name or by .py file path (plugins)."""
    if not module.endswith(".py"):
        importlib.import_module(module)
        return
    name = "segloop_job_plugin_" + os.path.basename(module)[:-3]
    if name in _LOADED_PLUGINS:
        return
    spec = importlib.util.spec_from_file_location(name, module)
    if spec is None or spec.loader is None:
        raise JobParamsError(f"{module}: cannot load job plugin file")
    plugin = importlib.util.module_from_spec(spec)
    sys.modules[name] = plugin
    spec.loader.exec_module(plugin)
    _LOADED_PLUGINS.add(name)


_LOADED_PLUGINS: set[str] = set()


def get_kind(name: str) -> JobKind:
    """The job kind `name`, or JobParamsError listing the known ones."""
    known = kinds()
    if name not in known:
        raise JobParamsError(f"job kind {name!r} is unknown; known kinds: {', '.join(sorted(known))}")
    return known[name]


def validate_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Params checked against the kind's dataclass (unknown keys, missing keys, types); JSON-ready."""
    return dataclasses.asdict(parse_params(kind, params))


def parse_params(kind: str, params: dict[str, Any]) -> Any:
    """The kind's params dataclass built from a JSON dict, or JobParamsError naming the field."""
    schema = get_kind(kind).params
    if not isinstance(params, dict):
        raise JobParamsError(f"{kind} params: expected a JSON object, got {type(params).__name__}")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise JobParamsError(f"{kind} params: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(fields)}")
    hints = typing.get_type_hints(schema)
    values = {}
    for name, field in fields.items():
        if name not in params:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise JobParamsError(f"{kind} params: field {name!r} is required")
            continue
        values[name] = _coerce(f"{kind} params: field {name!r}", params[name], hints[name])
    return schema(**values)


def _coerce(where: str, value: Any, annotation: Any) -> Any:
    """`value` checked (and ints widened to floats) against a simple type annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(where, value, option)
            except JobParamsError as exc:
                errors.append(str(exc))
        raise JobParamsError(errors[0] if errors else f"{where}: must not be null")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise JobParamsError(f"{where}: expected a list, got {type(value).__name__}")
        inner = args[0] if args else Any
        return [_coerce(f"{where}[{i}]", v, inner) for i, v in enumerate(value)]
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise JobParamsError(f"{where}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise JobParamsError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise JobParamsError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise JobParamsError(f"{where}: expected a string, got {value!r}")
        return value
    if annotation is dict or origin is dict:
        if not isinstance(value, dict):
            raise JobParamsError(f"{where}: expected an object, got {type(value).__name__}")
        return value
    raise JobParamsError(f"{where}: unsupported parameter type {annotation}")
