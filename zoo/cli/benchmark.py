"""``zoo benchmark``: training and inference images/s and peak memory of an architecture."""

from __future__ import annotations

from typing import Any, Optional

import typer

from zoo.cli import options
from zoo.cli.common import command, print_json, stdout


def register(app: typer.Typer) -> None:
    app.command("benchmark")(benchmark)


@command
def benchmark(
    arch: str = typer.Option(..., "--arch", help="Architecture NAME[:key=value,...]."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per step."),
    image_size: Optional[str] = typer.Option(  # noqa: UP045 - a runtime type for typer
        None,
        "--image-size",
        metavar="N|HxW",
        help="N or HxW (default: the architecture's own, else 224).",
    ),
    in_chans: int = typer.Option(3, "--in-chans", help="Input channels."),
    num_classes: int = typer.Option(1000, "--num-classes", help="Classifier outputs."),
    device: str = options.device(),
    amp: Optional[bool] = typer.Option(  # noqa: UP045
        None, "--amp/--no-amp", help="bf16 autocast (default: as zoo train --precision auto)."
    ),
    channels_last: Optional[bool] = typer.Option(  # noqa: UP045
        None,
        "--channels-last/--no-channels-last",
        help="Channels-last memory format (default: as zoo train).",
    ),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model."),
    compile_mode: str = typer.Option(
        "default",
        "--compile-mode",
        help="default | reduce-overhead (CUDA graphs) | max-autotune; implies --compile.",
    ),
    warmup: int = typer.Option(3, "--warmup", help="Untimed steps first."),
    steps: int = typer.Option(10, "--steps", help="Timed steps per phase."),
    train: bool = typer.Option(True, "--train/--no-train", help="Measure training steps."),
    inference: bool = typer.Option(True, "--inference/--no-inference", help="Measure inference."),
    json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Measure training and inference images/s and peak memory on synthetic inputs."""
    from zoo.tasks.benchmark import BenchConfig, run
    from zoo.train.allocator import keep_freed_memory
    from zoo.train.config import parse_image_size

    keep_freed_memory()  # as zoo train does
    report = run(
        BenchConfig(
            arch=arch,
            batch_size=batch_size,
            image_size=parse_image_size(image_size),
            in_chans=in_chans,
            num_classes=num_classes,
            device=device,
            amp=amp,
            channels_last=channels_last,
            compile=compile or compile_mode != "default",
            compile_mode=compile_mode,
            warmup=warmup,
            steps=steps,
            train=train,
            inference=inference,
        )
    )
    if json:
        print_json(report)
    else:
        _show(report)


def _show(r: dict[str, Any]) -> None:
    console = stdout()
    h, w = r["image_size"]
    console.print(
        f"[bold]{r['qualified']}[/]  {r['params']:,} params  batch {r['batch_size']} x "
        f"{r['in_chans']}x{h}x{w}  {r['device']} ({r['device_name']}, {r['threads']} threads)  "
        f"{r['precision']}{'  channels-last' if r['channels_last'] else ''}"
        f"{'  compiled (' + r['compile_mode'] + ')' if r['compile'] else ''}"
    )
    for phase in ("train", "inference"):
        if phase not in r:
            continue
        p = r[phase]
        memory = f"peak RSS {p['peak_rss_mb']:,.0f} MB" if p["peak_rss_mb"] is not None else ""
        if "peak_gpu_mb" in p:
            memory += f"  GPU {p['peak_gpu_mb']:,.0f} MB"
        console.print(
            f"{phase:<10} {p['images_per_second']:>10,.1f} img/s  {p['step_ms']:>9,.1f} ms/step"
            f"  (warm-up {p['warmup_seconds']:.1f}s)  {memory}"
        )
