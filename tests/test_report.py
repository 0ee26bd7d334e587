"""``zoo report``: one self-contained HTML file, rendered in a real headless Chromium and
checked from its DOM (sections, embedded pictures, the script's sorting and charts) and from a
screenshot."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
from browser import FLAGS, chromium
from PIL import Image

SECTIONS = (
    "summary",
    "settings",
    "environment",
    "curves",
    "confusion",
    "per-class",
    "top-losses",
    "calibration",
    "model-card",
)
CARD = "# Digits model\n\nTrained for one epoch. <script>alert('not run')</script>\n"


def browse(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Open a file in headless Chromium, offline, with a fresh profile."""
    command = [
        chromium(),
        *FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


def test_the_report_renders_in_headless_chromium(cli, evaluated_run, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)  # evaluated with --top-losses 8 --cam --tta-mode flip
    (run / "README.md").write_text(CARD)
    assert cli("report", run).stdout.strip() == f"wrote {run / 'report.html'}"
    page = run / "report.html"
    html = page.read_text()
    # Self-contained: every picture embedded, nothing to fetch.
    assert not re.findall(r'(?:src|href)="(?!data:|#)', html)
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    assert "&lt;script&gt;alert" in html  # the model card is shown as text, not run

    dom = browse(page, tmp_path, "--dump-dom").stdout
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom, section
    shown = re.sub(r"<noscript>.*?</noscript>", "", dom, flags=re.S)  # for browsers without JS
    pictures = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', shown)
    assert pictures == ["confusion matrix", "top losses", "reliability diagram"]
    assert 'data-report="ready"' in dom  # the inline script ran to its end
    assert 'data-drawn="3"' in dom and dom.count('class="series"') >= 4  # the curves' charts
    # The per-class table is sorted by F1, worst first, by the script.
    per_class = dom[dom.index('<section id="per-class">') : dom.index('<section id="top-losses">')]
    assert 'data-sorted="f1 asc"' in per_class
    f1 = [
        float(v)
        for v in re.findall(
            r"<tr><td>\d</td>(?:<td[^>]*>[^<]*</td>){2}"
            r'<td class="num" data-value="([^"]+)"',
            per_class,
        )
    ]
    assert len(f1) == 10 and f1 == sorted(f1)
    for text in ("without TTA", "with TTA", "Grad-CAM", "features.7", "Trained for one epoch"):
        assert text in dom, text

    shot = tmp_path / "report.png"
    browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,3000")
    picture = np.asarray(Image.open(shot).convert("RGB"))
    assert picture.shape == (3000, 1200, 3)
    assert shot.stat().st_size > 50_000
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 500  # text, charts and pictures


def test_report_evaluates_a_run_without_eval_json(cli, small_run, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    (run / "README.md").unlink()  # evaluating writes the model card again, with its results
    result = cli("report", run, "--out", tmp_path / "out" / "digits.html")
    assert f"no eval.json in {run}: evaluating first" in result.stdout
    assert (run / "eval.json").is_file() and (run / "top_losses.png").is_file()
    html = (tmp_path / "out" / "digits.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    assert (run / "README.md").is_file() and "library_name: zoo" in html
    assert not (run / "report.html").exists()


def test_report_refuses_an_evaluation_folder_without_eval_json(cli, small_run, tmp_path) -> None:
    result = cli("report", small_run, "--eval", tmp_path, code=2)
    assert result.stderr.startswith(f"error: {tmp_path} holds no eval.json")


def test_a_damaged_record_is_a_note_not_a_traceback(cli, evaluated_run, tmp_path) -> None:
    """A metrics line that is valid JSON but not an object, and a summary.json that is not
    JSON: the report is written without them, and says so in one note each."""
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write("[1, 2]\n")
    (run / "summary.json").write_bytes(b"\xff")
    result = cli("report", run)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert result.stdout.splitlines() == [
        f"note: {run} is damaged: metrics.jsonl line {len(lines)} holds an array, not a JSON "
        "object; the report has no training curves",
        f"note: {run} is damaged: summary.json cannot be read: not UTF-8 text (byte 0); the "
        "report leaves it out",
        f"wrote {run / 'report.html'}",
    ]
    page = (run / "report.html").read_text()
    assert "The run has no metrics.jsonl." in page and "The run has no summary.json." in page
