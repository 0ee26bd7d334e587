"""The aligned listing table: columns line up, the last one wraps with its styles kept."""

from __future__ import annotations

from rich.text import Text

from zoo.cli.table import cell, render, wrap


def test_columns_align_and_the_last_one_wraps() -> None:
    rows = [
        ("loss", "ce", "zoo==0.1.0", "short"),
        ("architecture", cell(("tiny", ""), (" (conflict: a:tiny)", "yellow")), "a", "x " * 40),
    ]
    lines = render(("kind", "name", "source", "summary"), rows, width=80).plain.splitlines()
    assert lines[0].split() == ["kind", "name", "source", "summary"]
    start = lines[0].index("summary")
    assert lines[1][start:] == "short" and lines[2].index("x") == start
    assert lines[2][lines[0].index("name") :].startswith("tiny (conflict: a:tiny)")
    continued = lines[3:]
    assert continued and all(line[:start].strip() == "" for line in continued)
    assert all(len(line) <= 80 for line in lines[1:])
    assert " ".join(" ".join(line.split()) for line in lines[2:]).count("x") == 40


def test_wrap_keeps_styles_and_folds_long_words() -> None:
    text = Text.assemble(("alpha beta ", ""), ("gamma delta", "dim"))
    lines = wrap(text, 11)
    assert [line.plain for line in lines] == ["alpha beta", "gamma delta"]
    assert lines[1].spans and lines[1].spans[0].style == "dim"
    assert [line.plain for line in wrap(Text("a" * 25), 10)] == ["a" * 10, "a" * 10, "a" * 5]
    assert wrap(Text("fits"), 10)[0].plain == "fits"
