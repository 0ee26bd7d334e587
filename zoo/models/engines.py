"""The engine a loaded model's network runs on for inference, chosen per network by measurement.

On the CPU in fp32, ``prepare`` builds the network in each engine available, checks each one's
logits against eager PyTorch's on the same batch, times them in turn on that batch, and uses
the fastest:

- ``eager``: the PyTorch network in zoo's memory format (``zoo.device.defaults``);
- ``torchscript``: traced, ``torch.jit.freeze`` and ``torch.jit.optimize_for_inference``
  (convolutions fused with their batch normalization and activation, oneDNN's layouts);
- ``onnxruntime``: the network exported by zoo's ONNX exporter (``zoo.models.export``, its
  quick path) run by ONNX Runtime's CPU provider (``zoo[onnx]``).

The choice and the exported model are cached per weights, CPU and thread count
(``zoo.models.engine_cache``), so only the first run measures and exports. ``torch.compile`` is
not a candidate: compiling took longer on two cores than predicting a thousand images, and its
caches are pickles, which zoo never loads (benchmarks/inference.py measures it beside the
others). On a GPU, and in bf16 or fp16, the network runs eagerly, under the model's precision.

``zoo predict``, ``zoo eval`` and ``zoo serve`` call ``prepare`` after loading; a model without
an engine (``zoo.load``'s default) runs its network eagerly, as before.
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError, did_you_mean

if TYPE_CHECKING:
    import torch

ENGINES = ("auto", "eager", "torchscript", "onnxruntime")
# zoo predict and zoo eval measure and export only for this many images or more (unless the
# cache already holds the choice): below it, measuring would cost more than it saves.
MIN_IMAGES = 256
# The batch the engines are timed on, at most (timing large networks on the user's batch
# size would take seconds per engine).
PROBE_BATCH = 16
# Largest accepted difference from eager PyTorch's logits, relative to their largest value.
TOLERANCE = 1e-3


def check_engine(text: str) -> str:
    """An ``--engine`` value, refused in one line when it is not one of ``ENGINES``."""
    if text not in ENGINES:
        raise ZooError(
            f"unknown engine {text!r}{did_you_mean(text, ENGINES)}; choose {'|'.join(ENGINES)}"
        )
    return text


@dataclass
class Choice:
    """The engine in use and why: ``measured`` (timed now, fastest), ``cached`` (as measured
    by an earlier run on this CPU), ``asked`` (``--engine``), or a reason the network runs
    eagerly. ``ms_per_image``: the timings the choice was made by."""

    engine: str
    why: str
    ms_per_image: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        timings = ", ".join(f"{k} {v:.3g} ms" for k, v in self.ms_per_image.items())
        return f"engine {self.engine} ({self.why}{'; per image: ' + timings if timings else ''})"


class OnnxRuntime:
    """An exported ONNX model in an ONNX Runtime session on the CPU. Its threads do not spin
    while idle, so decoding threads keep the cores between batches."""

    name = "onnxruntime"
    channels_last = False

    def __init__(self, data: bytes, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            data, options, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        array = x.detach().to(torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input: array})[0])


class TorchScript:
    """The network traced, frozen and optimized for inference, in the model's memory format."""

    name = "torchscript"

    def __init__(self, net: torch.nn.Module, example: torch.Tensor, channels_last: bool) -> None:
        import torch

        self.channels_last = channels_last
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings, torch.jit's deprecation
            traced = torch.jit.trace(net, example, check_trace=False)
            self.module = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            return self.module(x)


def prepare(
    model: Any,
    engine: str = "auto",
    *,
    batch_size: int = 32,
    images: int | None = None,
    cache: bool = True,
) -> Choice:
    """Give ``model`` (a ``zoo.models.inference.LoadedModel``) the engine ``engine`` names;
    ``auto``: the cached choice for these weights on this CPU, else the fastest measured now
    (for ``images`` at least ``MIN_IMAGES``, or unknown, as when serving). ``batch_size``: the
    batches it will run (the timing batch is at most ``PROBE_BATCH``)."""
    import torch

    from zoo.models import engine_cache

    check_engine(engine)
    base_format = model.net_channels_last
    _install(model, None, base_format)
    if engine == "eager":
        return Choice("eager", "asked")
    device = model.mean.device
    if device.type != "cpu" or model.amp_dtype != torch.float32:
        precision = str(model.amp_dtype).removeprefix("torch.")
        if engine != "auto":
            raise ZooError(
                f"--engine {engine} runs on the CPU in fp32; this model runs on "
                f"{device.type} in {precision}: use --engine auto or eager"
            )
        return Choice("eager", f"compiled engines are for the CPU in fp32, not {precision}")
    entry = None
    if cache and getattr(model, "source", None) is not None:
        try:
            # The fastest engine depends on the threads a forward pass has (zoo serve runs
            # batches side by side, one thread each), so they are part of the key.
            keyed = {**versions(), "threads": str(torch.get_num_threads())}
            entry = engine_cache.entry_for(model.source, model.hub, keyed)
        except OSError:
            entry = None
    found = engine_cache.read(entry) if entry is not None else None
    if engine == "auto" and found is not None:
        manifest, data = found
        built = _build(model, str(manifest.get("engine")), data, base_format)
        if built is not None or manifest.get("engine") == "eager":
            _install(model, built, base_format)
            timings = {k: float(v) for k, v in (manifest.get("ms_per_image") or {}).items()}
            return Choice(str(manifest["engine"]), "cached", timings)
    if engine == "auto" and images is not None and images < MIN_IMAGES:
        return Choice("eager", f"{images} images: fewer than {MIN_IMAGES}, not worth compiling")
    names = [e for e in ENGINES[1:] if engine in ("auto", e)]
    cached_onnx = found[1] if found is not None else None
    runners, rejected, onnx = _candidates(model, names, base_format, cached_onnx)
    if engine != "auto":
        if engine not in runners:
            raise ZooError(f"--engine {engine}: {rejected.get(engine, 'not available')}")
        _install(model, runners[engine], base_format)
        return Choice(engine, "asked", rejected=rejected)
    timings = measure(model, runners, base_format, batch_size)
    best = min(timings, key=timings.__getitem__)
    _install(model, runners[best], base_format)
    if entry is not None:
        manifest = {
            "engine": best,
            "ms_per_image": timings,
            "rejected": rejected,
            "probe_batch": min(batch_size, PROBE_BATCH),
            "threads": torch.get_num_threads(),
            "versions": versions(),
        }
        engine_cache.write(entry, manifest, onnx if best == "onnxruntime" else None)
    return Choice(best, "measured", timings, rejected)


def versions() -> dict[str, str]:
    """The libraries whose versions change what is compiled and how fast it runs."""
    import torch

    import zoo

    out = {"zoo": zoo.__version__, "torch": torch.__version__}
    if importlib.util.find_spec("onnxruntime") is not None:
        from importlib.metadata import version

        out["onnxruntime"] = version("onnxruntime")
    return out


def _install(model: Any, runner: Any, base_format: bool) -> None:
    """Use ``runner`` (None: the eager network) and feed it the memory format it takes."""
    model.engine = runner
    model.channels_last = base_format if runner is None else runner.channels_last


def _probe(model: Any, batch: int, channels_last: bool) -> torch.Tensor:
    import torch

    info = model.info
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, info.in_chans, *info.image_size, generator=g)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _build(model: Any, name: str, onnx: bytes | None, base_format: bool) -> Any:
    """One engine (None for eager, or when it cannot be built)."""
    import torch

    try:
        if name == "onnxruntime" and onnx is not None:
            return OnnxRuntime(onnx, torch.get_num_threads())
        if name == "torchscript":
            return TorchScript(model.net, _probe(model, 2, base_format), base_format)
    except Exception:  # a library that cannot load what an older one wrote: measure again
        return None
    return None


def _candidates(
    model: Any, names: list[str], base_format: bool, cached_onnx: bytes | None
) -> tuple[dict[str, Any], dict[str, str], bytes | None]:
    """The engines that could be built and agree with eager PyTorch, the reasons for those
    left out, and the exported ONNX model (when built)."""
    runners: dict[str, Any] = {}
    rejected: dict[str, str] = {}
    onnx = cached_onnx
    for name in names:
        if name == "eager":
            runners[name] = None
            continue
        if name == "onnxruntime":
            if importlib.util.find_spec("onnxruntime") is None:
                rejected[name] = "onnxruntime is not installed (pip install 'zoo[onnx]')"
                continue
            try:
                onnx = onnx or _export_onnx(model)
            except ZooError as exc:
                rejected[name] = str(exc)
                continue
        try:
            runner = _build(model, name, onnx, base_format)
            if runner is None:
                raise RuntimeError("it could not be built")
            _check(model, runner, base_format)
        except Exception as exc:
            rejected[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            continue
        runners[name] = runner
    return runners, rejected, onnx


def _export_onnx(model: Any) -> bytes:
    from zoo.models import export

    meta = export.metadata(model.info, "normalized")
    example = _probe(model, 2, False)
    return export.onnx_bytes(model.net, example, "input", meta, model.info, quick=True)


def _check(model: Any, runner: Any, base_format: bool) -> None:
    """Refuse an engine whose logits differ from eager PyTorch's on a batch of 3."""
    import torch

    with torch.inference_mode():
        expected = model.net(_probe(model, 3, base_format)).float()
        got = runner(_probe(model, 3, runner.channels_last)).float()
    if got.shape != expected.shape or not torch.isfinite(got).all():
        raise ValueError("its outputs differ in shape or are not finite")
    difference = float((got - expected).abs().max())
    if difference > TOLERANCE * max(1.0, float(expected.abs().max())):
        raise ValueError(f"its logits differ from PyTorch's by {difference:.3g}")


def measure(
    model: Any, runners: dict[str, Any], base_format: bool, batch_size: int, rounds: int = 3
) -> dict[str, float]:
    """Milliseconds per image of each engine on one batch: a warm-up pass each, then
    ``rounds`` passes of each in turn (so a change in the machine's load falls on all of
    them), the fastest pass of each."""
    import torch

    batch = max(1, min(batch_size, PROBE_BATCH))
    inputs = {
        name: _probe(model, batch, base_format if r is None else r.channels_last)
        for name, r in runners.items()
    }
    calls: dict[str, Callable[[torch.Tensor], Any]] = {
        name: (model.net if r is None else r) for name, r in runners.items()
    }
    best = dict.fromkeys(calls, float("inf"))
    with torch.inference_mode():
        for name, call in calls.items():
            call(inputs[name])
        for _ in range(rounds):
            for name, call in calls.items():
                start = time.perf_counter()
                call(inputs[name])
                best[name] = min(best[name], time.perf_counter() - start)
    return {name: round(seconds * 1000 / batch, 4) for name, seconds in best.items()}
