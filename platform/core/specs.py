"""Typed params specs: dataclass fields carrying help, bounds and choices; JSON/CLI values coerced into them.

A params class is a plain dataclass whose fields are declared with `param(...)`. `coerce` turns a
mapping of JSON (or CLI) values into an instance, refusing bad values with a `ValidationError` that
names the field and the reason; `describe` lists the fields (name, type, default, bounds, choices,
help) from which CLI options and UI forms are derived, so the three cannot drift.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import operator
import re
import types
import typing
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from segloop.platform.core.errors import ValidationError

SPEC_KEY = "segloop_spec"
MIN_INT, MAX_INT = -(2**63), 2**63 - 1  # a stored integer (a row id, a count) is a signed 64-bit one in every database


@dataclass(frozen=True)
class Rules:
    """What a field accepts beyond its type, and how to explain it."""

    help: str = ""
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    choices: tuple[Any, ...] | None = None
    pattern: str | None = None
    pattern_hint: str = ""
    ref: str | None = None
    min_items: int | None = None


def param(default: Any = MISSING, *, default_factory: Any = MISSING, help: str = "", min: float | None = None,
          max: float | None = None, min_exclusive: bool = False, max_exclusive: bool = False,
          choices: typing.Iterable[Any] | None = None, pattern: str | None = None, pattern_hint: str = "",
          ref: str | None = None, min_items: int | None = None) -> Any:
    """A dataclass field with its rules: help text, bounds (`min`/`max`), `choices`, a regex `pattern`, and `ref`
    (what the value refers to, checked by the service that accepts it: a project, a checkpoint, a file...) and
    `min_items` (the least number of items of a list)."""
    rules = Rules(help=help, min=min, max=max, min_exclusive=min_exclusive, max_exclusive=max_exclusive,
                  choices=tuple(choices) if choices is not None else None, pattern=pattern,
                  pattern_hint=pattern_hint, ref=ref, min_items=min_items)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={SPEC_KEY: rules})


def rules_of(field: dataclasses.Field) -> Rules:
    """The rules of a dataclass field (empty rules for a field declared without `param`)."""
    return field.metadata.get(SPEC_KEY, Rules())


@dataclass(frozen=True)
class FieldSpec:
    """One field of a params class, as forms and CLI options see it."""

    name: str
    annotation: Any
    type_name: str
    kind: str
    item_kind: str | None
    optional: bool
    required: bool
    default: Any
    rules: Rules

    @property
    def help(self) -> str:
        """The help text with bounds and choices spelled out."""
        extra = []
        if self.rules.min is not None:
            extra.append(f"{'>' if self.rules.min_exclusive else '>='} {self.rules.min:g}")
        if self.rules.max is not None:
            extra.append(f"{'<' if self.rules.max_exclusive else '<='} {self.rules.max:g}")
        if self.rules.pattern_hint:
            extra.append(self.rules.pattern_hint)
        text = self.rules.help
        return f"{text} ({', '.join(extra)})" if extra else text


def describe(cls: type) -> list[FieldSpec]:
    """The fields of a params dataclass with their type, default, bounds, choices and help."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        annotation = hints[field.name]
        inner, optional = _strip_optional(annotation)
        rules = rules_of(field)
        if typing.get_origin(inner) is typing.Literal and rules.choices is None:
            rules = dataclasses.replace(rules, choices=typing.get_args(inner))
        required = field.default is MISSING and field.default_factory is MISSING
        default = None if required else (field.default if field.default is not MISSING else field.default_factory())
        kind = _kind(inner)
        item = _kind(typing.get_args(inner)[0]) if kind in ("list", "tuple") and typing.get_args(inner) else None
        found.append(FieldSpec(field.name, annotation, _type_name(annotation), kind, item, optional, required,
                               default, rules))
    return found


def coerce(cls: type, mapping: Any, where: str = "params", base: Any = None) -> Any:
    """An instance of the params dataclass `cls` from JSON/CLI values, or ValidationError naming the field.

    Missing fields take `base`'s values (a partial update, recursing into nested dataclasses) or the defaults.
    """
    return _coerce_dataclass(cls, mapping, where, "", base)


def to_json(value: Any) -> Any:
    """A params instance (or any value inside one) as plain JSON values (tuples become lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def parse_json(text: str) -> Any:
    """A JSON text a person typed as its value; ValueError also when an object names one key twice."""
    return json.loads(text, object_pairs_hook=_unique_keys)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict, refusing a repeated key (json keeps the last one silently)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} is given twice")
        seen[key] = value
    return seen


def _fail(where: str, path: str, reason: str) -> ValidationError:
    """A ValidationError '<where>: <path>: <reason>'."""
    located = f"{path}: {reason}" if path else reason
    return ValidationError(f"{where}: {located}" if where else located)


def _coerce_dataclass(cls: type, mapping: Any, where: str, prefix: str, base: Any) -> Any:
    """The dataclass `cls` with the mapping's values checked and applied (onto `base` when given)."""
    if not isinstance(mapping, dict):
        raise _fail(where, prefix, f"expected a mapping (JSON object), got {_shown(mapping)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in mapping if k not in fields]
    if unknown:
        raise _fail(where, _join(prefix, str(unknown[0])),
                    f"unknown field (allowed: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        path = _join(prefix, name)
        current = getattr(base, name) if base is not None else MISSING
        if name not in mapping:
            if current is MISSING and field.default is MISSING and field.default_factory is MISSING:
                raise _fail(where, path, "is required")
            if current is not MISSING:
                values[name] = current
            continue
        values[name] = _coerce_value(mapping[name], hints[name], where, path, current)
    instance = cls(**values)
    for name, field in fields.items():
        _check_rules(getattr(instance, name), rules_of(field), where, _join(prefix, name))
    return instance


def _coerce_value(value: Any, annotation: Any, where: str, path: str, current: Any = MISSING) -> Any:
    """`value` checked against a type annotation (ints widened to floats, lists to tuples where declared)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce_value(value, option, where, path, current)
            except ValidationError as exc:
                errors.append(exc)
        raise errors[0] if errors else _fail(where, path, "must not be null")
    if origin is typing.Literal:
        if value not in args:
            raise _fail(where, path, f"must be one of {', '.join(map(str, args))}; got {_shown(value)}")
        return value
    if dataclasses.is_dataclass(annotation):
        base = current if dataclasses.is_dataclass(current) else None
        return _coerce_dataclass(annotation, value, where, path, base)
    if origin in (list, tuple) or annotation in (list, tuple):
        return _coerce_sequence(value, annotation, where, path)
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise _fail(where, path, f"expected a mapping (JSON object), got {_shown(value)}")
        inner = args[1] if len(args) == 2 else Any
        return {k: _coerce_value(v, inner, where, f"{path}.{k}") for k, v in value.items()}
    return _coerce_scalar(value, annotation, where, path)


def _coerce_sequence(value: Any, annotation: Any, where: str, path: str) -> list | tuple:
    """A list (`list[X]`, `tuple[X, ...]`) or a fixed-length tuple (`tuple[X, Y]`) of checked items."""
    origin, args = typing.get_origin(annotation) or annotation, typing.get_args(annotation)
    if not isinstance(value, (list, tuple)):
        raise _fail(where, path, f"expected a list, got {_shown(value)}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise _fail(where, path, f"expected a list of {len(args)} values, got {_shown(value)}")
        return tuple(_coerce_value(v, a, where, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    inner = args[0] if args else Any
    items = [_coerce_value(v, inner, where, f"{path}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _coerce_scalar(value: Any, annotation: Any, where: str, path: str) -> Any:
    """A bool, int, float, str or Path checked (no silent conversion between them, except int → float)."""
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise _fail(where, path, f"expected true/false, got {_shown(value)}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(where, path, f"expected an integer, got {_shown(value)}")
        if not MIN_INT <= value <= MAX_INT:
            raise _fail(where, path, f"{value} is out of range (integers lie between {MIN_INT} and {MAX_INT})")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(where, path, f"expected a number, got {_shown(value)}")
        if not math.isfinite(value):
            raise _fail(where, path, f"expected a finite number, got {_shown(value)}")
        return float(value)
    if annotation in (str, Path):
        if not isinstance(value, (str, Path)):
            raise _fail(where, path, f"expected a string, got {_shown(value)}")
        return annotation(value)
    raise _fail(where, path, f"unsupported parameter type {_type_name(annotation)}")


def _check_rules(value: Any, rules: Rules, where: str, path: str) -> None:
    """ValidationError when a coerced value is out of bounds, not a choice, or does not match the pattern."""
    if value is None:
        return
    if rules.min_items is not None and isinstance(value, (list, tuple)) and len(value) < rules.min_items:
        raise _fail(where, path, f"must list at least {rules.min_items} item(s)")
    if rules.choices is not None and value not in rules.choices:
        raise _fail(where, path, f"must be one of {', '.join(map(str, rules.choices))}; got {_shown(value)}")
    numbers = [v for v in (value if isinstance(value, (list, tuple)) else [value])
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for number in numbers:
        if rules.min is not None and (number <= rules.min if rules.min_exclusive else number < rules.min):
            bound = f"{'>' if rules.min_exclusive else '>='} {rules.min:g}"
            raise _fail(where, path, f"must be {bound}, got {_number(number)}")
        if rules.max is not None and (number >= rules.max if rules.max_exclusive else number > rules.max):
            bound = f"{'<' if rules.max_exclusive else '<='} {rules.max:g}"
            raise _fail(where, path, f"must be {bound}, got {_number(number)}")
    if rules.pattern is not None and isinstance(value, str) and not re.fullmatch(rules.pattern, value.strip()):
        raise _fail(where, path, f"{_shown(value)} is not valid; expected {rules.pattern_hint or rules.pattern}")


def _number(value: float) -> str:
    """A value as given: an integer in full (1000000, not 1e+06), a float in short form."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        return (args[0] if len(args) == 1 else functools.reduce(operator.or_, args)), optional
    return annotation, False


def _kind(annotation: Any) -> str:
    """A short name of the shape of a type: bool, int, float, str, list, tuple, dict, dataclass, choice or any."""
    annotation, _ = _strip_optional(annotation)
    origin = typing.get_origin(annotation) or annotation
    if origin is typing.Literal:
        return "choice"
    if dataclasses.is_dataclass(annotation):
        return "dataclass"
    names = {bool: "bool", int: "int", float: "float", str: "str", Path: "str", list: "list", tuple: "tuple",
             dict: "dict"}
    return names.get(origin, "any")


def _type_name(annotation: Any) -> str:
    """A readable type name (`int | None`, `list[int]`)."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def _join(prefix: str, name: str) -> str:
    """A dotted field path."""
    return f"{prefix}.{name}" if prefix else name


def _shown(value: Any) -> str:
    """A value as a message shows it (short)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
