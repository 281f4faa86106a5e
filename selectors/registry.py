"""Registry of selection strategies: name -> documented function, as used by `segloop select --strategy`.

Every strategy has the signature `fn(pool: CandidatePool, constraints: Constraints, **params) ->
list[Pick]`; its parameters are keyword-only with defaults that run on a 2-core CPU.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from segloop.selectors.constraints import Constraints
from segloop.selectors.types import CandidatePool, Pick, SelectorError

StrategyFn = Callable[..., list[Pick]]

MAX_SEED = 2**31 - 1  # seeds reach FAISS and NumPy as 32-bit integers
MAX_PREFILTER_FACTOR = 1000.0  # candidates kept per budgeted pick: more is the whole pool anyway

STRATEGY_MODULES = (
    "segloop.selectors.baselines",
    "segloop.selectors.diversity",
    "segloop.selectors.typicality",
    "segloop.selectors.clustering",
    "segloop.selectors.uncertainty",
    "segloop.selectors.hybrid",
    "segloop.selectors.keyframes",
)

_STRATEGIES: dict[str, StrategyInfo] = {}


@dataclass(frozen=True)
class Rule:
    """What a strategy parameter accepts beyond its type: inclusive limits, values allowed outside them, choices."""

    low: float | None = None
    high: float | None = None
    special: tuple = ()  # accepted outside the limits, e.g. -1 meaning "one cluster per budgeted pick"
    choices: tuple = ()

    def violation(self, value: Any) -> str | None:
        """Why `value` breaks the rule, or None."""
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(map(str, self.choices))}, got {value!r}"
        if value in self.special or isinstance(value, str):
            return None
        also = "".join(f" or {v}" for v in self.special)
        if self.low is not None and self.high is not None and not self.low <= value <= self.high:
            return f"must lie in [{self.low}, {self.high}]{also}, got {value}"
        if self.low is not None and value < self.low:
            return f"must be >= {self.low}{also}, got {value}"
        if self.high is not None and value > self.high:
            return f"must be <= {self.high}{also}, got {value}"
        return None


@dataclass(frozen=True)
class StrategyInfo:
    """A registered strategy: its name, function, one-line summary, parameter defaults, types and rules."""

    name: str
    fn: StrategyFn
    summary: str
    params: dict[str, Any]
    param_types: dict[str, tuple[type, ...]] = field(default_factory=dict)
    rules: dict[str, Rule] = field(default_factory=dict)


def _accepted_types(hint: Any) -> tuple[type, ...]:
    """The plain types a parameter annotation accepts (`float | None` -> (float, NoneType))."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(t for arg in typing.get_args(hint) for t in _accepted_types(arg))
    return (hint,) if isinstance(hint, type) else (object,)


def _type_violation(value: Any, accepted: tuple[type, ...]) -> str | None:
    """Why `value` is not of the accepted types (an int is a float; a bool is neither; floats are finite), or None."""
    if value is None:
        return None if type(None) in accepted or object in accepted else "must be given, got null"
    if object in accepted:
        return None
    if isinstance(value, bool):
        return None if bool in accepted else f"must be {_type_words(accepted)}, got {value!r}"
    integral = isinstance(value, numbers.Integral)
    if isinstance(value, numbers.Real) and (float in accepted or (int in accepted and integral)):
        return None if math.isfinite(value) else f"must be a finite number, got {value}"
    if isinstance(value, str) and str in accepted:
        return None
    return f"must be {_type_words(accepted)}, got {value!r}"


def _type_words(accepted: tuple[type, ...]) -> str:
    """'an integer', 'a number' or 'text' for messages."""
    words = {int: "an integer", float: "a number", str: "text", bool: "true or false"}
    return " or ".join(words[t] for t in accepted if t in words) or "a value"


def check_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of strategy `name`, checked for unknown names, types and rules (SelectorError naming one)."""
    info = get_strategy(name)
    unknown = sorted(set(params) - set(info.params))
    if unknown:
        raise SelectorError(f"strategy {name!r}: unknown parameter(s) {unknown}; accepted: {sorted(info.params)}")
    for key, value in params.items():
        problem = _type_violation(value, info.param_types.get(key, (object,)))
        if problem is None and value is not None and key in info.rules:
            problem = info.rules[key].violation(value)
        if problem:
            raise SelectorError(f"{name}: {key} {problem}")
    return params


def register(name: str, **rules: Rule) -> Callable[[StrategyFn], StrategyFn]:
    """Decorator adding a strategy function to the registry under `name`; its parameters are checked on every call
    against their annotations and `rules` (limits and choices by parameter name)."""

    def decorate(fn: StrategyFn) -> StrategyFn:
        if name in _STRATEGIES and _STRATEGIES[name].fn.__wrapped__ is not fn:
            raise SelectorError(f"strategy {name!r} is registered twice")
        keyword_only = [p for p in inspect.signature(fn).parameters.values()
                        if p.kind is inspect.Parameter.KEYWORD_ONLY]
        hints = typing.get_type_hints(fn)
        unruled = set(rules) - {p.name for p in keyword_only}
        if unruled:
            raise SelectorError(f"strategy {name!r}: rules for parameters it does not have: {sorted(unruled)}")

        @functools.wraps(fn)
        def checked(pool: CandidatePool, constraints: Constraints, **params: Any) -> list[Pick]:
            return fn(pool, constraints, **check_params(name, params))

        summary = (inspect.getdoc(fn) or "").splitlines()[0] if fn.__doc__ else ""
        _STRATEGIES[name] = StrategyInfo(name, checked, summary, {p.name: p.default for p in keyword_only},
                                         {p.name: _accepted_types(hints.get(p.name)) for p in keyword_only}, rules)
        return checked

    return decorate


def _load_all() -> None:
    """Import every strategy module so that their @register decorators have run."""
    for module in STRATEGY_MODULES:
        importlib.import_module(module)


def strategies() -> dict[str, StrategyInfo]:
    """All registered strategies by name, sorted."""
    _load_all()
    return dict(sorted(_STRATEGIES.items()))


def get_strategy(name: str) -> StrategyInfo:
    """The strategy registered as `name` (SelectorError listing the known names otherwise)."""
    known = strategies()
    if name not in known:
        raise SelectorError(f"strategy {name!r} is unknown; known strategies: {', '.join(known)}")
    return known[name]


def run_strategy(
    name: str, pool: CandidatePool, constraints: Constraints, **params: Any
) -> list[Pick]:
    """Run strategy `name` on the pool under the constraints with the given parameters."""
    info = get_strategy(name)
    picks = info.fn(pool, constraints, **params)
    if len(picks) > constraints.budget:
        raise AssertionError(f"strategy {name!r} returned {len(picks)} picks for budget {constraints.budget}")
    return picks
