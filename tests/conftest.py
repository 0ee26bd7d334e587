"""Shared test set-up: an isolated zoo cache per session, a fresh registry per test, and small
image folders written to disk."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from zoo.cli import build_app

# Caches of the session's own, for this process and the ones it starts: zoo's decoded images,
# and torch.compile's kernels. Inductor's shared cache (/tmp/torchinductor_$USER) does not key
# its kernels by ATEN_CPU_CAPABILITY: a kernel built for other CPU kernels by another process
# gave wrong weights, or a crash, in test_compile_on_the_cpu_trains_the_same_weights.
SESSION_CACHES = {"ZOO_CACHE_DIR": "zoo-cache", "TORCHINDUCTOR_CACHE_DIR": "inductor-cache"}


@pytest.fixture(autouse=True, scope="session")
def _zoo_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    old = {name: os.environ.get(name) for name in SESSION_CACHES}
    for name, folder in SESSION_CACHES.items():
        os.environ[name] = str(tmp_path_factory.mktemp(folder))
    yield
    for name, value in old.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    from zoo.plugins.build import reset

    reset()
    yield
    reset()


class Cli:
    """Runs the real typer app in-process."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int | None = 0, input: str | None = None):
        result = self.runner.invoke(build_app(), [str(a) for a in args], input=input)
        if code is not None and result.exit_code != code:
            raise AssertionError(
                f"zoo {' '.join(map(str, args))} exited {result.exit_code}, expected {code}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n"
                f"exception: {result.exception!r}"
            )
        return result


@pytest.fixture
def cli() -> Cli:
    return Cli()


def write_image_folder(
    root: Path,
    classes: dict[str, int],
    size: tuple[int, int] = (20, 24),
    ext: str = ".png",
    seed: int = 0,
) -> Path:
    """Class folders of real image files whose mean colour depends on the class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for ci, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            base = np.zeros((*size, 3), dtype=np.float32)
            base[..., ci % 3] = 200
            pixels = (base + rng.normal(0, 25, base.shape)).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}{ext}")
    return root


def write_digit_folder(root: Path, digits: list[int], per_class: int = 6) -> Path:
    """Real digit scans as greyscale PNG files in ``root/<digit>/``."""
    from PIL import Image

    from zoo.builtins.loaders import digits_arrays

    pixels, labels = digits_arrays()
    for d in digits:
        (root / str(d)).mkdir(parents=True)
        for n, i in enumerate(np.flatnonzero(labels == d)[:per_class]):
            Image.fromarray(pixels[i, 0]).save(root / str(d) / f"{n}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images", {"cats": 12, "dogs": 10, "owls": 8})


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits run trained for one epoch at 8x8: quick, and imperfect enough that every
    metric is non-trivial. Tests must not modify it (copy it first)."""
    from zoo.train.config import TrainConfig
    from zoo.train.trainer import Trainer

    out = tmp_path_factory.mktemp("small-run") / "run"
    Trainer(TrainConfig(out=str(out), epochs=1, image_size="8", batch_size=128)).fit()
    return out


@pytest.fixture(scope="session")
def evaluated_run(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``small_run`` after ``zoo eval RUN --top-losses 8 --cam --tta-mode flip``: its
    eval.json and pictures beside it. Tests must not modify it (copy it first)."""
    import shutil

    run = tmp_path_factory.mktemp("evaluated-run") / "run"
    shutil.copytree(small_run, run)
    result = Cli()("eval", run, "--top-losses", "8", "--cam", "--tta-mode", "flip")
    (run / "eval.stdout").write_text(result.stdout)
    return run
