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
