"""mkdocs build hooks: fill in what is generated from the code (zoo.cli.reference): the CLI
reference from the typer app and the plugin contract and data-source tables from
zoo.plugins.hookspecs; and
generate the pictures of the evaluation page from a real run (zoo train, zoo eval, zoo report).

The pictures are made at build time, so they always show what this version of zoo draws. They
are cached under zoo's cache folder, keyed by a digest of zoo's sources and this file: a
rebuild of unchanged sources reuses them, and any change to zoo draws them again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path
from typing import Any

MARKERS = {
    "<!-- cli-reference -->": "cli_reference",
    "<!-- plugin-contract -->": "plugin_contract",
    "<!-- data-source-protocol -->": "data_source_contract",
}
# Where the generated files appear in the site, relative to docs/.
PICTURES = "img/evaluation"
GENERATED = ("top_losses.png", "calibration.png", "confusion_matrix.png", "report.html")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    import zoo.cli.reference

    for marker, generator in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, getattr(zoo.cli.reference, generator)())
    return markdown


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    folder = _pictures()
    for name in GENERATED:
        files.append(File.generated(config, f"{PICTURES}/{name}", abs_src_path=str(folder / name)))
    return files


def _digest() -> str:
    import zoo

    package = Path(zoo.__file__).parent
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for path in sorted(package.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".html", ".js", ".css"):
            digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _pictures() -> Path:
    """The pictures of a two-epoch digits run at 16x16, evaluated with --top-losses 8 --cam
    --tta-mode crops, and its report (made once per version of zoo's sources).

    They are made in a scratch folder and moved into place one by one, so builds running at
    the same time never see a half-written file; older versions' pictures are removed.
    """
    import os
    import shutil
    import tempfile

    from zoo.plugins.cache import cache_dir

    base = cache_dir() / "docs"
    key = _digest()
    folder = base / key
    if all((folder / name).is_file() for name in GENERATED):
        return folder
    from zoo.models.loading import weights_path
    from zoo.models.weights import read_header
    from zoo.tasks import report
    from zoo.tasks.eval_outputs import EvalOptions, evaluate
    from zoo.train.config import TrainConfig
    from zoo.train.trainer import Trainer

    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=base))
    try:
        run = work / "run"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            Trainer(TrainConfig(out=str(run), epochs=2, image_size="16")).fit()
            evaluate(str(run), EvalOptions(top_losses=8, cam=True, tta="crops"), str(work))
        info = read_header(weights_path(run)).info
        (work / "report.html").write_text(report.render(report.read_run(run, info, work)))
        folder.mkdir(exist_ok=True)
        for name in GENERATED:
            os.replace(work / name, folder / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for old in base.iterdir():
        if old.is_dir() and old.name != key and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)
    return folder
