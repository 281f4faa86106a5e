"""Click options derived from an operation's params spec: same names, defaults, bounds, choices and help."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from segloop.platform.core.console import FiniteFloatRange
from segloop.platform.core.specs import FieldSpec, coerce, describe, parse_json

SCALAR_TYPES = {"int": int, "float": float, "str": str}


def spec_options(cls: type, *, exclude: Iterable[str] = (), names: dict[str, str] | None = None,
                 required: Iterable[str] = ()) -> Callable:
    """Decorator adding one click option per field of the params dataclass `cls` (`--field-name`, or the
    declaration in `names`, e.g. {"finetune_backbone": "--finetune-backbone/--frozen-backbone"})."""
    skipped, renamed, needed = set(exclude), names or {}, set(required)

    def decorate(func: Callable) -> Callable:
        for spec in reversed(describe(cls)):
            if spec.name not in skipped:
                func = _option(spec, renamed.get(spec.name), spec.name in needed)(func)
        return func

    return decorate


def params_from_options(cls: type, values: dict[str, Any], where: str = "options", **extra: Any) -> Any:
    """The params dataclass from a command's option values (plus `extra` fields), checked against the spec."""
    fields = {spec.name for spec in describe(cls)}
    given = {k: list(v) if isinstance(v, tuple) else v for k, v in {**values, **extra}.items()
             if k in fields and v is not None}  # None: an option not given, so the spec's default
    return coerce(cls, given, where=where)


def checked_params(kind: str, params_class: type, values: dict[str, Any], **extra: Any) -> Any:
    """An operation's params from a command's option values (plus `extra` fields), references checked in the DB."""
    from segloop.platform.db.migrate import ensure_db
    from segloop.platform.services.jobs import verify_params

    params = params_from_options(params_class, values, where=kind.replace("_", " "), **extra)
    return verify_params(ensure_db(), kind, params)


def checkpoint_fields(checkpoint: str | None) -> dict[str, Any]:
    """`--checkpoint PATH|ID` as params fields: {"weights": PATH} for a weights file or `segloop pretrain --out`
    folder, {"checkpoint_id": ID} for a number."""
    if checkpoint is None:
        return {}
    if Path(checkpoint).exists():
        return {"weights": str(Path(checkpoint).resolve())}
    if checkpoint.isdigit():
        return {"checkpoint_id": int(checkpoint)}
    raise click.BadParameter(f"{checkpoint} is neither a weights file, a `segloop pretrain --out` folder nor a "
                             "checkpoint id", param_hint="--checkpoint")


def _option(spec: FieldSpec, declaration: str | None, required: bool) -> Callable:
    """The click option of one field."""
    flag = "--" + spec.name.replace("_", "-")
    required = required or spec.required
    common = {"help": spec.rules.help or None,  # click shows ranges and choices itself
              "show_default": not required and spec.default not in (None, [], {})}
    if spec.kind == "bool":
        declaration = declaration or f"{flag}/--no-{spec.name.replace('_', '-')}"
        return click.option(declaration, spec.name, default=bool(spec.default), **common)
    options = {"required": True} if required else {"required": False, "default": spec.default}  # a default given,
    # even None, is a value to click 8.3+: a required option must have none, or click never asks for it
    if spec.kind in ("list", "tuple"):
        options.update(multiple=True, default=tuple(spec.default or ()), type=_scalar(spec, spec.item_kind))
        common["show_default"] = False
    elif spec.kind == "dict":
        options.update(type=str, default=None, callback=_json_object)
        common["help"] = f"{spec.rules.help} (a JSON object)"
    else:
        options["type"] = _scalar(spec, spec.kind)
    return click.option(declaration or flag, spec.name, **options, **common)


def _scalar(spec: FieldSpec, kind: str | None) -> Any:
    """The click type of a scalar field: a Choice, a bounded number, or the plain type."""
    rules = spec.rules
    if rules.choices is not None:
        return click.Choice([str(c) for c in rules.choices])
    if kind == "int" and (rules.min is not None or rules.max is not None):
        low = None if rules.min is None else int(rules.min) + (1 if rules.min_exclusive else 0)
        high = None if rules.max is None else int(rules.max) - (1 if rules.max_exclusive else 0)
        return click.IntRange(min=low, max=high)
    if kind == "float" and (rules.min is not None or rules.max is not None):
        return FiniteFloatRange(min=rules.min, max=rules.max, min_open=rules.min_exclusive,
                                max_open=rules.max_exclusive)
    return SCALAR_TYPES.get(kind or "str", str)


def _json_object(ctx: click.Context, param: click.Parameter, value: str | None) -> dict | None:
    """A JSON object option's value parsed (None when not given)."""
    if value is None:
        return None
    try:
        parsed = parse_json(value)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("expected a JSON object")
    return parsed
