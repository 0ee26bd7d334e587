"""Component specs: ``[plugin:]name[:k=v,...]`` and typed values."""

from __future__ import annotations

import pytest

from zoo.errors import ZooError
from zoo.plugins.specs import (
    Spec,
    call_factory,
    check_params,
    format_spec,
    parse_spec,
    parse_value,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("resnet18", Spec("resnet18")),
        ("timm:resnet18", Spec("resnet18", "timm")),
        ("resnet50:drop_path_rate=0.1", Spec("resnet50", None, {"drop_path_rate": 0.1})),
        (
            "timm:vit:img_size=32,global_pool=avg",
            Spec("vit", "timm", {"img_size": 32, "global_pool": "avg"}),
        ),
        (
            "folder:root=/data/x:y,channels=1",
            Spec("folder", None, {"root": "/data/x:y", "channels": 1}),
        ),
        ("SimpleCNN", Spec("simplecnn")),
    ],
)
def test_parse_spec(text: str, expected: Spec) -> None:
    assert parse_spec(text) == expected


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("3", 3),
        ("-2", -2),
        ("0.5", 0.5),
        ("1e-3", 1e-3),
        ("true", True),
        ("False", False),
        ("none", None),
        ("avg", "avg"),
        ('"3"', "3"),
        ("[32,48]", [32, 48]),
        ("[0.1, 'a']", [0.1, "a"]),
        ("rand-m9-mstd0.5", "rand-m9-mstd0.5"),
    ],
)
def test_values_are_typed(raw: str, value: object) -> None:
    assert parse_value(raw) == value
    assert type(parse_value(raw)) is type(value)


def test_format_round_trips() -> None:
    params = {"a": 1, "b": 0.5, "c": True, "d": "x", "e": "1.5", "f": [1, 2], "g": None}
    assert parse_spec(format_spec("n", params)).params == params


@pytest.mark.parametrize("bad", ["", "a:b:c", ":x", "x:lr=1,lr=2", "x:1a=2", "a b"])
def test_malformed_specs_are_refused(bad: str) -> None:
    with pytest.raises(ZooError):
        parse_spec(bad)


def test_unknown_key_lists_accepted_ones() -> None:
    def factory(num_classes: int, width: int = 2, depth: int = 3) -> None: ...

    with pytest.raises(
        ZooError,
        match=r"unknown parameter 'widht'; did you mean width\? "
        r"\(accepted: width, depth\)",
    ):
        check_params("architecture 'x:y'", factory, {"widht": 3}, ["num_classes"])
    with pytest.raises(ZooError, match="set by zoo"):
        check_params("architecture 'x:y'", factory, {"num_classes": 3}, ["num_classes"])


def test_kwargs_factories_accept_anything_and_receive_it() -> None:
    def factory(num_classes: int, **kwargs: object) -> dict:
        return {"num_classes": num_classes, **kwargs}

    check_params("architecture 'x:y'", factory, {"anything": 1}, ["num_classes"])
    built = call_factory("architecture 'x:y'", factory, {"anything": 1}, {"num_classes": 3})
    assert built == {"num_classes": 3, "anything": 1}


def typed(
    n: int,
    x: float = 1.0,
    flag: bool = False,
    name: str = "a",
    sizes: list[int] | None = None,
    pair: tuple[float, float] = (0.1, 0.2),
    either: str | float = "random",
    anything=None,
    legacy=0,
):
    """A factory with every kind of parameter zoo checks."""


@pytest.mark.parametrize(
    "params",
    [
        {"n": 3, "x": 2},  # an int is a float
        {"x": 0.5, "flag": True, "name": "b", "sizes": [8, 16], "pair": [1, 2.5]},
        {"sizes": None, "either": 0.5, "anything": [1, "a"], "legacy": 0.25},
    ],
)
def test_values_that_fit_the_factory_are_accepted(params: dict) -> None:
    check_params("thing 'x'", typed, params, ())


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n": "abc"}, "parameter n must be int, got 'abc'"),
        ({"n": 1.5}, "parameter n must be int, got 1.5"),
        ({"n": True}, "parameter n must be int, got True"),
        ({"x": "fast"}, "parameter x must be float, got 'fast'"),
        ({"x": float("nan")}, "parameter x must be a finite number, got nan"),
        ({"flag": 1}, "parameter flag must be bool, got 1"),
        ({"name": 7}, 'parameter name must be str, got 7 (quote it for text: name="7")'),
        ({"sizes": [8, "big"]}, "parameter sizes must be list[int] | None, got [8, 'big']"),
        ({"pair": 0.5}, "parameter pair must be tuple[float, float], got 0.5"),
        ({"legacy": "zero"}, "parameter legacy must be float, got 'zero'"),  # by its default
    ],
)
def test_values_of_the_wrong_type_are_refused_in_one_line(params: dict, message: str) -> None:
    with pytest.raises(ZooError) as err:
        check_params("thing 'x'", typed, params, ())
    assert str(err.value) == f"thing 'x': {message}" and err.value.exit_code == 2
