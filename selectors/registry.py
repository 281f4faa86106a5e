"""Registry of selection strategies: name -> documented function, as used by `segloop select --strategy`.

Every strategy has the signature `fn(pool: CandidatePool, constraints: Constraints, **params) ->
list[Pick]`; its parameters are keyword-only with defaults that run on a 2-core CPU.
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from segloop.selectors.constraints import Constraints
from segloop.selectors.types import CandidatePool, Pick, SelectorError

StrategyFn = Callable[..., list[Pick]]

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
class StrategyInfo:
    """A registered strategy: its name, function, one-line summary and parameter defaults."""

    name: str
    fn: StrategyFn
    summary: str
    params: dict[str, Any]


def register(name: str) -> Callable[[StrategyFn], StrategyFn]:
    """Decorator adding a strategy function to the registry under `name`."""

    def decorate(fn: StrategyFn) -> StrategyFn:
        if name in _STRATEGIES and _STRATEGIES[name].fn is not fn:
            raise SelectorError(f"strategy {name!r} is registered twice")
        signature = inspect.signature(fn)
        params = {
            param.name: param.default
            for param in signature.parameters.values()
            if param.kind is inspect.Parameter.KEYWORD_ONLY
        }
        summary = (inspect.getdoc(fn) or "").splitlines()[0] if fn.__doc__ else ""
        _STRATEGIES[name] = StrategyInfo(name, fn, summary, params)
        return fn

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
        raise SelectorError(f"unknown strategy {name!r}; known strategies: {', '.join(known)}")
    return known[name]


def run_strategy(
    name: str, pool: CandidatePool, constraints: Constraints, **params: Any
) -> list[Pick]:
    """Run strategy `name` on the pool under the constraints with the given parameters."""
    info = get_strategy(name)
    unknown = sorted(set(params) - set(info.params))
    if unknown:
        raise SelectorError(
            f"strategy {name!r}: unknown parameter(s) {unknown}; accepted: {sorted(info.params)}"
        )
    picks = info.fn(pool, constraints, **params)
    if len(picks) > constraints.budget:
        raise AssertionError(f"strategy {name!r} returned {len(picks)} picks for budget {constraints.budget}")
    return picks
