"""The docs are executed: every page's examples run against the real installation.

In each page, in document order:
- a fenced block with a ``title="path"`` is written to that path in a scratch directory;
- ``console`` blocks run their ``$ command`` lines there (``zoo``, ``pip install``, ``pytest``,
  ``python``). A command shown with output must print exactly that, standard output and error
  together in the order written (runs of spaces count as one, blank lines are left out): a
  ``...`` in a line stands for any text in it, a line of its own ``...`` for any lines. A
  command shown with an ``error:`` line must fail with that output; one shown without output
  must succeed;
- untitled ``python`` blocks run in one namespace per page.
Other languages (``bash``, ``text``, ``toml`` without a title) are illustrations only.

Pages never reach the network: every command and block runs with ``HF_HUB_OFFLINE=1`` and a
Hugging Face cache of the page's own (``HF_HUB_CACHE``), which a page about pretrained weights
fills itself.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hubtools import hub_environment

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```\s*$", re.S | re.M)


@dataclass
class Block:
    lang: str
    title: str | None
    text: str
    line: int  # where the block's code starts in the page


def blocks(page: Path) -> list[Block]:
    found = []
    for match in FENCE.finditer(page.read_text()):
        title = re.search(r'title="([^"]+)"', match.group(2))
        line = match.string.count("\n", 0, match.start(3)) + 1
        found.append(Block(match.group(1), title.group(1) if title else None, match.group(3), line))
    return found


def executable(page: Path) -> bool:
    return any(b.title or b.lang in ("console", "python") for b in blocks(page))


PAGES = sorted(p for p in DOCS.rglob("*.md") if executable(p))


ELLIPSIS = "..."


def _squash(text: str) -> str:
    return " ".join(text.split())


def shown_output(lines: list[str]) -> re.Pattern[str]:
    """What a page shows a command printing, as a pattern of its whole output: each line with
    its runs of spaces as one, ``...`` for any text (a line of its own: any lines)."""
    parts = []
    for line in lines:
        squashed = _squash(line)
        if squashed == ELLIPSIS:
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        pieces = [re.escape(piece) for piece in squashed.split(ELLIPSIS)]
        parts.append("[^\n]*?".join(pieces) + "\n")
    return re.compile("".join(parts))


def printed(text: str) -> str:
    """A command's output as compared: each line with its runs of spaces as one, blank lines
    left out."""
    return "".join(_squash(line) + "\n" for line in text.splitlines() if line.strip())


def _command(line: str, site: Path) -> list[str]:
    args = shlex.split(line)
    if args[:2] == ["pip", "install"]:
        return [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(site),
            *args[2:],
        ]
    if args[0] in ("zoo", "pytest"):
        return [sys.executable, "-m", args[0], *args[1:]]
    if args[0] == "python":
        return [sys.executable, *args[1:]]
    raise AssertionError(f"docs run only zoo, pip install, pytest and python, not: {line}")


def run_console(block: Block, cwd: Path, env: dict[str, str], site: Path) -> None:
    steps: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif line.strip() and steps:
            steps[-1][1].append(line)
    for command, expected in steps:
        result = subprocess.run(
            _command(command, site),
            cwd=cwd,
            env={**env, "PYTHONUNBUFFERED": "1"},  # standard output and error in their order
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
        )
        failing = any(line.startswith("error:") for line in expected)
        context = f"$ {command}\noutput:\n{result.stdout}"
        assert (result.returncode != 0) == failing, context
        if expected:
            shown = "\n".join(expected)
            assert shown_output(expected).fullmatch(printed(result.stdout)), (
                f"the page shows:\n{shown}\n{context}"
            )


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_docs_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    hub = {"HF_HUB_CACHE": str(tmp_path / "hf-cache"), "HF_HOME": str(tmp_path / "hf-home")}
    with hub_environment(**hub, HF_HUB_OFFLINE="1", HF_ENDPOINT=None, HF_TOKEN=None):
        run_page(page, tmp_path, site, monkeypatch)


def run_page(page: Path, tmp_path: Path, site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(tmp_path)]),
        "ZOO_CACHE_DIR": str(tmp_path / "zoo-cache"),
        "COLUMNS": "200",
    }
    page_blocks = blocks(page)
    for block in page_blocks:
        if block.title:
            target = tmp_path / block.title
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs.{page.stem}"}
    for block in page_blocks:
        if block.title:
            continue
        if block.lang == "console":
            run_console(block, tmp_path, env, site)
        elif block.lang == "python":
            code = "\n" * (block.line - 1) + block.text  # tracebacks point into the page
            exec(compile(code, str(page), "exec"), namespace)
