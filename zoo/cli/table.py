"""Aligned tables for long listings, drawn as one rich ``Text``.

rich's ``Table`` measures and wraps every cell through its layout engine: half a second for the
1,300 rows of timm's architectures, most of ``zoo list``'s time. The listings need only
left-aligned columns and a last column wrapped to the terminal, which this does in milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

GAP = "  "
_WORD = re.compile(r"\S+")


def cell(*parts: tuple[str, str]) -> Any:
    """A cell from ``(text, style)`` parts ("" for no style)."""
    from rich.text import Text

    return Text.assemble(*parts)


def render(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int) -> Any:
    """The table as one ``rich.text.Text``: a bold header, columns padded to their widest cell,
    the last column word-wrapped into what is left of ``width`` (at least 30 characters)."""
    from rich.text import Text

    cells = [[c if isinstance(c, Text) else Text(str(c)) for c in row] for row in rows]
    head = [Text(h, style="bold") for h in headers]
    fixed = [max(len(r[i]) for r in [head, *cells]) for i in range(len(headers) - 1)]
    indent = sum(fixed) + len(GAP) * len(fixed)
    last = max(30, width - indent)
    out = Text(no_wrap=True)
    for row in [head, *cells]:
        for text, size in zip(row, fixed, strict=False):
            out.append_text(text)
            out.append(" " * (size - len(text)) + GAP)
        lines = wrap(row[-1], last)
        out.append_text(lines[0])
        out.append("\n")
        for line in lines[1:]:
            out.append(" " * indent)
            out.append_text(line)
            out.append("\n")
    return out


def wrap(text: Any, width: int) -> list[Any]:
    """Greedy word wrap keeping styles; words longer than ``width`` are folded."""
    plain = text.plain
    if len(plain) <= width:
        return [text]
    offsets: list[int] = []
    start = 0  # where the current line starts
    for match in _WORD.finditer(plain):
        begin, end = match.span()
        if end - start > width and begin > start:
            offsets.append(begin)
            start = begin
        while end - start > width:  # a word longer than a line
            start += width
            offsets.append(start)
    lines = list(text.divide(offsets)) if offsets else [text]
    for line in lines:
        line.rstrip()  # in place: the space before each break
    return lines
