"""core.specs: typed coercion of JSON/CLI values into params dataclasses, each kind of refusal named."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from segloop.platform.core.errors import ValidationError
from segloop.platform.core.specs import coerce, describe, param, to_json


@dataclass
class Crop:
    """A nested section."""

    size: int = param(64, min=16)
    scale: tuple[float, float] = (0.35, 1.0)


@dataclass
class Example:
    """Every shape of field the specs support."""

    name: str = param(help="A required name.")
    epochs: int = param(30, min=1, help="Passes.")
    rate: float = param(0.5, min=0, max=1, min_exclusive=True)
    head: str = param("linear", choices=("linear", "multiscale"))
    mode: Literal["fast", "slow"] = "fast"
    limit: int | None = None
    ids: list[int] = param(default_factory=list, min=1)
    sizes: tuple[int, ...] = ()
    extra: dict = field(default_factory=dict)
    flag: bool = False
    keys: str | None = param(None, pattern=r"first|[0-9]+", pattern_hint="first or a number")
    path: Path | None = None
    crop: Crop = field(default_factory=Crop)


@pytest.mark.parametrize(("values", "message"), [
    ({"name": "a", "bogus": 1}, "ex: bogus: unknown field (allowed: name, epochs"),
    ({}, "ex: name: is required"),
    ({"name": 3}, "ex: name: expected a string, got 3"),
    ({"name": "a", "epochs": "ten"}, "ex: epochs: expected an integer, got 'ten'"),
    ({"name": "a", "epochs": 2.5}, "ex: epochs: expected an integer, got 2.5"),
    ({"name": "a", "epochs": True}, "ex: epochs: expected an integer, got True"),
    ({"name": "a", "epochs": -3}, "ex: epochs: must be >= 1, got -3"),
    ({"name": "a", "epochs": 2**63}, f"ex: epochs: {2**63} is out of range (integers lie between -{2**63} and "),
    ({"name": "a", "ids": [1, 10**23]}, "ex: ids[1]: 100000000000000000000000 is out of range"),
    ({"name": "a", "rate": 0}, "ex: rate: must be > 0, got 0"),
    ({"name": "a", "rate": 1.5}, "ex: rate: must be <= 1, got 1.5"),
    ({"name": "a", "head": "deep"}, "ex: head: must be one of linear, multiscale; got 'deep'"),
    ({"name": "a", "mode": "medium"}, "ex: mode: must be one of fast, slow; got 'medium'"),
    ({"name": "a", "limit": "x"}, "ex: limit: expected an integer, got 'x'"),
    ({"name": "a", "ids": 3}, "ex: ids: expected a list, got 3"),
    ({"name": "a", "ids": [1, "x"]}, "ex: ids[1]: expected an integer, got 'x'"),
    ({"name": "a", "ids": [0]}, "ex: ids: must be >= 1, got 0"),
    ({"name": "a", "extra": [1]}, "ex: extra: expected a mapping (JSON object), got [1]"),
    ({"name": "a", "flag": 1}, "ex: flag: expected true/false, got 1"),
    ({"name": "a", "keys": "banana"}, "ex: keys: 'banana' is not valid; expected first or a number"),
    ({"name": "a", "crop": {"size": 8}}, "ex: crop.size: must be >= 16, got 8"),
    ({"name": "a", "epochs": -1000000}, "ex: epochs: must be >= 1, got -1000000"),  # in full, not -1e+06
    ({"name": "a", "crop": {"scale": [0.1]}}, "ex: crop.scale: expected a list of 2 values, got [0.1]"),
    ({"name": "a", "crop": {"nope": 1}}, "ex: crop.nope: unknown field (allowed: size, scale)"),
    ({"name": "a", "crop": 3}, "ex: crop: expected a mapping (JSON object), got 3"),
    ([1], "ex: expected a mapping (JSON object), got [1]"),
])
def test_each_refusal_names_the_field_and_the_reason(values, message: str) -> None:
    """Unknown field, missing field, wrong type, out of bounds, not a choice, bad pattern, nested paths."""
    with pytest.raises(ValidationError) as info:
        coerce(Example, values, where="ex")
    assert str(info.value).startswith(message), str(info.value)


def test_good_values_are_typed() -> None:
    """Ints widen to floats, lists to tuples where declared, None for Optional, nested sections partial."""
    got = coerce(Example, {"name": "a", "rate": 1, "limit": None, "sizes": [1, 2], "path": "x/y",
                           "crop": {"scale": [0.2, 0.9]}, "keys": "12"})
    assert got.rate == 1.0 and isinstance(got.rate, float)
    assert got.sizes == (1, 2) and got.path == Path("x/y") and got.limit is None
    assert got.crop == Crop(64, (0.2, 0.9))
    assert to_json(got)["crop"] == {"size": 64, "scale": [0.2, 0.9]}


def test_base_gives_the_values_not_in_the_mapping() -> None:
    """A partial update onto an existing instance keeps its values, recursing into nested sections."""
    base = Example(name="b", epochs=5, crop=Crop(size=32))
    got = coerce(Example, {"crop": {"scale": [0.5, 1.0]}}, base=base)
    assert (got.name, got.epochs, got.crop) == ("b", 5, Crop(32, (0.5, 1.0)))


def test_describe_lists_fields_with_defaults_bounds_choices_and_help() -> None:
    """What forms and CLI options are derived from."""
    fields = {f.name: f for f in describe(Example)}
    assert fields["name"].required and fields["name"].default is None
    assert (fields["epochs"].kind, fields["epochs"].default, fields["epochs"].help) == ("int", 30, "Passes. (>= 1)")
    assert fields["rate"].help == "(> 0, <= 1)" or fields["rate"].help.endswith("(> 0, <= 1)")
    assert fields["head"].rules.choices == ("linear", "multiscale")
    assert fields["mode"].rules.choices == ("fast", "slow") and fields["mode"].kind == "choice"
    assert fields["limit"].optional and fields["limit"].kind == "int"
    assert (fields["ids"].kind, fields["ids"].item_kind, fields["ids"].default) == ("list", "int", [])
    assert fields["crop"].kind == "dataclass" and fields["flag"].kind == "bool"


@dataclass
class Shares:
    """Upper bounds that exclude themselves."""

    share: float = param(0.0, min=0, max=1, max_exclusive=True, help="A fraction.")
    slots: int = param(1, min=1, max=4, max_exclusive=True)


def test_an_exclusive_upper_bound_reaches_the_check_the_help_the_cli_and_the_form() -> None:
    """`max_exclusive` (a dropout of 1, a jitter of a whole crop): refused at the bound, said in the help, derived
    into the CLI option's range and left to the submit check by the form."""
    import click
    from click.testing import CliRunner

    from segloop.platform.cli.options import spec_options
    from segloop.platform.services.forms import form_field

    assert coerce(Shares, {"share": 0.99, "slots": 3}) == Shares(0.99, 3)
    for values, message in (({"share": 1}, "ex: share: must be < 1, got 1"),
                            ({"slots": 4}, "ex: slots: must be < 4, got 4")):
        with pytest.raises(ValidationError, match=f"^{message}$"):
            coerce(Shares, values, where="ex")
    fields = {f.name: f for f in describe(Shares)}
    assert fields["share"].help == "A fraction. (>= 0, < 1)"

    @click.command()
    @spec_options(Shares)
    def command(**values) -> None:
        click.echo(values)

    assert CliRunner().invoke(command, ["--share", "0.5", "--slots", "3"]).exit_code == 0
    for args, message in ((["--share", "1"], "1.0 is not in the range 0<=x<1"),
                          (["--slots", "4"], "4 is not in the range 1<=x<=3")):
        result = CliRunner().invoke(command, args)
        assert result.exit_code == 2 and message in result.output, result.output
    assert all(form_field(None, "ex", fields[name], None, None).max_value is None for name in ("share", "slots"))
