"""The CPU inference options side by side, in one process, on the same batch: the figures behind
``zoo.models.engines``' candidates.

For each network (``--arch NAME:SIZE``, built by ``zoo.create_model`` in eval mode, fp32):

- ``eager``: PyTorch, contiguous memory format;
- ``channels-last``: PyTorch, channels-last weights and input;
- ``torchscript``: ``torch.jit.trace``, ``torch.jit.freeze`` and
  ``torch.jit.optimize_for_inference`` (``zoo.models.engines.TorchScript``), contiguous;
- ``torchscript channels-last``: the same, traced channels-last;
- ``compile``: ``torch.compile`` (inductor, default mode) under ``torch.inference_mode``
  (with ``--compile``: its compilation takes minutes on two cores);
- ``onnxruntime``: zoo's ONNX export run by ONNX Runtime (``zoo.models.engines.OnnxRuntime``).

Each is built (its set-up time is reported), checked against eager PyTorch (largest difference
of the logits), run once, then timed: ``--rounds`` rounds of every option in turn (so a change
in the machine's load falls on all), each round ``--repeats`` passes of the batch; the median of
the rounds' milliseconds per image, and the ratio to eager.

    python benchmarks/inference.py --arch simplecnn:64 resnet18:224 vit_tiny_patch16_224:224
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

import zoo
from zoo.models.engines import OnnxRuntime, TorchScript


def options(
    net: torch.nn.Module, x: torch.Tensor, compile_too: bool
) -> dict[str, Callable[[], Callable[[torch.Tensor], Any]]]:
    """How to build each option: a function returning the callable to time."""
    from zoo.models import export
    from zoo.models.weights import ModelInfo

    last = copy.deepcopy(net).to(memory_format=torch.channels_last)
    c, h, w = x.shape[1:]
    info = ModelInfo("bench", {}, 10, c, (h, w), [str(i) for i in range(10)], (0.5,), (0.25,), "")

    def onnx() -> Callable[[torch.Tensor], Any]:
        data = export.onnx_bytes(net, x[:2], "input", {}, info)
        return OnnxRuntime(data, torch.get_num_threads())

    built = {
        "eager": lambda: net,
        "channels-last": lambda: last,
        "torchscript": lambda: TorchScript(net, x[:2], False),
        "torchscript channels-last": lambda: TorchScript(last, _last(x[:2]), True),
        "onnxruntime": onnx,
    }
    if compile_too:
        built["compile"] = lambda: torch.compile(net)
    return built


def _last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def measure(
    arch: str, size: int, batch: int, rounds: int, repeats: int, compile_too: bool
) -> dict[str, Any]:
    torch.manual_seed(0)
    net = zoo.create_model(arch, num_classes=10, in_chans=3, image_size=size).eval()
    x = torch.randn(batch, 3, size, size)
    inputs = {False: x, True: _last(x)}
    with torch.inference_mode():
        expected = net(x)
    runners: dict[str, Any] = {}
    report: dict[str, Any] = {"arch": arch, "image_size": size, "batch": batch, "options": {}}
    for name, build in options(net, x, compile_too).items():
        start = time.perf_counter()
        try:
            with warnings.catch_warnings(), torch.inference_mode():
                warnings.simplefilter("ignore")
                runner = build()
                got = runner(inputs["channels-last" in name])
        except Exception as exc:  # an option that does not work for this network
            report["options"][name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        report["options"][name] = {
            "setup_s": round(time.perf_counter() - start, 2),
            "max_abs_diff": float((got.float() - expected).abs().max()),
        }
        runners[name] = runner
    times: dict[str, list[float]] = {name: [] for name in runners}
    with torch.inference_mode():
        for _ in range(rounds):
            for name, runner in runners.items():
                batch_input = inputs["channels-last" in name]
                start = time.perf_counter()
                for _ in range(repeats):
                    runner(batch_input)
                times[name].append((time.perf_counter() - start) * 1000 / repeats / batch)
    eager = statistics.median(times["eager"])
    for name, values in times.items():
        ms = statistics.median(values)
        report["options"][name].update(ms_per_image=round(ms, 4), ratio=round(ms / eager, 3))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--arch",
        nargs="+",
        default=["simplecnn:64", "resnet18:224", "vit_tiny_patch16_224:224"],
        help="NAME:SIZE of each network (timm's need zoo-timm)",
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    before = os.getloadavg()[0]
    reports = []
    for spec in args.arch:
        name, _, size = spec.rpartition(":")
        reports.append(
            measure(name, int(size), args.batch, args.rounds, args.repeats, args.compile)
        )
        print(f"measured {spec}", file=sys.stderr, flush=True)
    out = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": [round(before, 2), round(os.getloadavg()[0], 2)],
        "networks": reports,
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{torch.get_num_threads()} threads, batch {args.batch}; load {out['load_average']}")
    for r in reports:
        print(f"{r['arch']} at {r['image_size']} px:")
        for name, o in r["options"].items():
            if "error" in o:
                print(f"  {name:>26}: {o['error']}")
                continue
            print(
                f"  {name:>26}: {o['ms_per_image']:8.3f} ms/image  x{o['ratio']:.2f}  "
                f"set-up {o['setup_s']:.1f} s  max diff {o['max_abs_diff']:.1e}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
