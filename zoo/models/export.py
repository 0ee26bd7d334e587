"""Exporting a trained network to ONNX or TorchScript, with zoo's metadata inside the file.

The exported graph takes a batch of any size. By default it is the bare network, fed
normalized float input (``(x - mean) / std`` of images in ``[0, 1]``), with the mean and std
in the metadata. With ``input="uint8"`` or ``input="float"`` the scaling and normalization are
part of the graph, so raw images at the model's size go straight in. Resizing never is: the
input must already have the model's height and width (recorded in the metadata).
"""

from __future__ import annotations

import importlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import ZooError, shown
from zoo.models.weights import ModelInfo

SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
INPUTS = ("normalized", "uint8", "float")
METADATA_FILE = "zoo.json"  # TorchScript: the extra file holding the metadata


class Preprocessed(nn.Module):
    """The network behind zoo's preprocessing: raw uint8 (0-255) or float (0-1) images in,
    logits out. Scaling and normalization are one fused multiply-add."""

    def __init__(self, net: nn.Module, info: ModelInfo, uint8: bool) -> None:
        super().__init__()
        self.net = net
        mean = torch.tensor(info.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(info.std, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("scale", 1.0 / (std * (255.0 if uint8 else 1.0)))
        self.register_buffer("shift", -mean / std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(torch.addcmul(self.shift, images.float(), self.scale))


class Sigmoid(nn.Module):
    """A multi-label network with its sigmoid: probabilities out, one per class, so the
    exported file answers as the model does and its check compares probabilities."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).float().sigmoid()


@dataclass
class Exported:
    """What was written, and how far its outputs are from PyTorch's (None: not checked, and
    ``unchecked`` says why)."""

    path: Path
    input_name: str
    input_spec: str
    output_spec: str
    max_abs_diff: float | None
    unchecked: str | None = None


def default_output(weights: Path, fmt: str) -> Path:
    """``run/model.safetensors`` -> ``run/model.onnx`` (or ``.pt`` for TorchScript)."""
    return weights.with_suffix(SUFFIXES[fmt])


def require(fmt: str) -> None:
    """Refuse early, in one line, when the packages a format needs are missing."""
    if fmt not in SUFFIXES:
        raise ZooError(f"--format must be one of {', '.join(SUFFIXES)}, got {shown(fmt)}")
    if fmt == "onnx":
        missing = [m for m in ("onnx", "onnxscript") if not _importable(m)]
        if missing:
            raise ZooError(f"--format onnx needs {' and '.join(missing)}: pip install 'zoo[onnx]'")


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def metadata(info: ModelInfo, input_kind: str) -> dict[str, Any]:
    """What a consumer needs to feed the exported model, and where it came from."""
    h, w = info.image_size
    dtype = "uint8" if input_kind == "uint8" else "float32"
    meaning = {
        "normalized": "(x - mean) / std of images x in [0, 1]",
        "uint8": "images in 0-255, normalized inside the graph",
        "float": "images in [0, 1], normalized inside the graph",
    }[input_kind]
    found = {
        "classes": list(info.classes),
        "image_size": [h, w],
        "in_chans": info.in_chans,
        "mean": list(info.mean),
        "std": list(info.std),
        "input": input_kind,
        "input_spec": f"{dtype} [N, {info.in_chans}, {h}, {w}]: {meaning}",
        "output_spec": f"float32 [N, {info.num_classes}] logits (softmax gives probabilities)",
        "arch": info.arch,
        "zoo_version": info.zoo_version,
        "zoo.model": info.to_json(),
    }
    if info.thresholds is not None:  # multi-label: the graph ends with its sigmoid
        found["output_spec"] = (
            f"float32 [N, {info.num_classes}] probabilities, a sigmoid per class (an image's "
            "labels: the classes at or above their thresholds)"
        )
        found["thresholds"] = dict(zip(info.classes, info.thresholds, strict=True))
    return found


def _example(info: ModelInfo, input_kind: str, batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (batch, info.in_chans, *info.image_size)
    if input_kind == "uint8":
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    if input_kind == "float":
        return torch.rand(shape, generator=g)
    return torch.randn(shape, generator=g)


def export(
    net: nn.Module, info: ModelInfo, fmt: str, out: Path, input_kind: str = "normalized"
) -> Exported:
    """Export ``net`` (on the CPU, in eval mode) to ``out``: the file is run back (onnxruntime
    or torch.jit) on a batch of another size and its logits compared with PyTorch's before it
    is written (atomically); a multi-label model's file ends with its sigmoid, and its
    probabilities are compared. Non-finite logits, PyTorch's or the file's, fail the export:
    nothing is written (a NaN difference would pass any comparison)."""
    from zoo.files.atomic import write_output

    require(fmt)
    if input_kind not in INPUTS:
        raise ZooError(f"--input must be one of {', '.join(INPUTS)}, got {shown(input_kind)}")
    net = net.cpu().eval()
    module: nn.Module = (
        net if input_kind == "normalized" else Preprocessed(net, info, input_kind == "uint8")
    ).eval()
    if info.thresholds is not None:
        module = Sigmoid(module).eval()
    meta = metadata(info, input_kind)
    input_name = "input" if input_kind == "normalized" else "images"
    check = _example(info, input_kind, 3, seed=1)
    with torch.inference_mode():
        expected = module(check).float()
    if not torch.isfinite(expected).all():
        raise ZooError(
            "the model's own outputs (PyTorch's) are not finite (NaN or infinite) on a test "
            "batch: its weights are damaged or diverged; nothing was written",
            exit_code=1,
        )
    example = _example(info, input_kind, 2, seed=0)
    if fmt == "onnx":
        data = onnx_bytes(module, example, input_name, meta, info)
    else:
        data = _torchscript_bytes(module, example, meta, info)
    exported = Exported(out, input_name, meta["input_spec"], meta["output_spec"], None)
    if fmt == "onnx" and not _importable("onnxruntime"):
        exported.unchecked = "onnxruntime is not installed (pip install 'zoo[onnx]')"
    else:
        try:
            run = _run_onnx if fmt == "onnx" else _run_torchscript
            got = run(data, input_name, check)
        except Exception as exc:  # a runtime that cannot load or run the file: report, keep it
            exported.unchecked = f"running the file back failed: {_first_line(exc)}"
        else:
            if not torch.isfinite(got).all():
                raise ZooError(
                    f"the exported {fmt} model's outputs are not finite (NaN or infinite) "
                    "where PyTorch's are: the export is wrong; nothing was written",
                    exit_code=1,
                )
            exported.max_abs_diff = float((got - expected).abs().max())
    write_output(out, data, "--out")
    return exported


def onnx_bytes(
    module: nn.Module,
    example: torch.Tensor,
    input_name: str,
    meta: dict[str, Any],
    info: ModelInfo,
    quick: bool = False,
) -> bytes:
    """Export with torch.export (the exporter PyTorch maintains), the batch axis dynamic.

    ``quick``: with the TorchScript-based exporter first, which PyTorch deprecates but which
    exports a network 10 to 30 times as fast (it needs neither torch._dynamo nor onnxscript,
    whose imports alone take seconds): the inference engines' cache (``zoo.models.engines``),
    which checks what it gets against PyTorch, uses it; where it fails or is gone, torch.export.
    """
    if quick:
        data = _torchscript_onnx(module, example, input_name)
        if data is not None:
            return data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                (example,),
                None,
                dynamo=True,
                verbose=False,
                input_names=[input_name],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
    except Exception as exc:  # the exporter raises many types; each names the failing op
        raise ZooError(
            f"ONNX export of {info.arch} failed: {_first_line(exc)}", exit_code=1
        ) from None
    proto = program.model_proto
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    try:
        return proto.SerializeToString()
    except ValueError as exc:  # protobuf's 2 GB limit
        raise ZooError(f"ONNX export of {info.arch}: {exc}", exit_code=1) from None


def _torchscript_onnx(module: nn.Module, example: torch.Tensor, input_name: str) -> bytes | None:
    """The TorchScript-based ONNX export, batch axis dynamic (None where it fails)."""
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation, tracer warnings
            torch.onnx.export(
                module,
                (example,),
                buffer,
                dynamo=False,
                input_names=[input_name],
                output_names=["logits"],
                dynamic_axes={input_name: {0: "batch"}, "logits": {0: "batch"}},
            )
    except Exception:  # an exporter that no longer exists, or an op it cannot export
        return None
    return buffer.getvalue()


def _torchscript_bytes(
    module: nn.Module, example: torch.Tensor, meta: dict[str, Any], info: ModelInfo
) -> bytes:
    """Trace the module (PyTorch marks torch.jit deprecated; the format still loads
    everywhere libtorch does). The metadata travels as an extra file in the archive."""
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            traced = torch.jit.trace(module, example)
            torch.jit.save(traced, buffer, _extra_files={METADATA_FILE: json.dumps(meta)})
    except Exception as exc:  # tracing fails on data-dependent control flow, among others
        raise ZooError(
            f"TorchScript export of {info.arch} failed: {_first_line(exc)}", exit_code=1
        ) from None
    return buffer.getvalue()


def _first_line(exc: BaseException) -> str:
    """An exception's first line, capped: exporters' messages run to pages."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _run_onnx(data: bytes, input_name: str, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {input_name: x.numpy()})
    return torch.from_numpy(logits).float()


def _run_torchscript(data: bytes, input_name: str, x: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated")
        loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
    with torch.inference_mode():
        return loaded(x).float()
