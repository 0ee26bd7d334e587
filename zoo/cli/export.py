"""``zoo export``: a trained network as an ONNX or TorchScript file, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import typer

from zoo.cli.common import command, stdout


def register(app: typer.Typer) -> None:
    app.command("export")(export)


@command
def export(
    weights: str = typer.Argument(
        ..., metavar="WEIGHTS", help="A run, a weights file or hf-hub:ORG/NAME[@REVISION]."
    ),
    format: str = typer.Option(
        ..., "--format", "-f", metavar="FORMAT", help="onnx or torchscript."
    ),
    out: str | None = typer.Option(
        None,
        "--out",
        metavar="PATH",
        help="Output file (default: beside the weights; ./NAME.EXT for a Hub model).",
    ),
    input: str = typer.Option(
        "normalized",
        "--input",
        metavar="KIND",
        help="What the exported model takes: normalized (the bare network; mean and std are "
        "in the metadata), uint8 (0-255 images) or float (0-1 images).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
) -> None:
    """Export a model to ONNX or TorchScript with a dynamic batch axis and the class names,
    input size, mean and std in the file's metadata; the file is run back and its logits
    compared with PyTorch's."""
    from zoo.errors import ZooError, shown
    from zoo.models import hub
    from zoo.models.export import INPUTS, SUFFIXES, default_output, require
    from zoo.models.export import export as export_model
    from zoo.models.loading import load, weights_path

    fmt = format.lower()
    require(fmt)
    if input not in INPUTS:
        raise ZooError(f"--input must be one of {', '.join(INPUTS)}, got {shown(input)}")
    if out is None and hub.is_hub_ref(weights):  # never write into the Hugging Face cache
        out = hub.parse_ref(weights).repo_id.rpartition("/")[2] + SUFFIXES[fmt]
    target = Path(out) if out is not None else default_output(weights_path(weights), fmt)
    if target.is_dir():
        raise ZooError(f"--out {target} is a directory; give a file name")
    if target.exists() and not overwrite:
        raise ZooError(f"{target} exists; add --overwrite to replace it")
    model = load(weights, device="cpu")
    result = export_model(model.net, model.info, fmt, target, input)
    console = stdout()
    console.print(f"wrote {result.path} ({fmt})")
    names = (f" {result.input_name!r}", " 'logits'") if fmt == "onnx" else ("", "")
    console.print(f"input{names[0]}: {result.input_spec}")
    console.print(f"output{names[1]}: {result.output_spec}")
    if result.max_abs_diff is None:
        console.print(f"not checked: {result.unchecked}")
    else:
        runner = "onnxruntime" if fmt == "onnx" else "torch.jit.load"
        console.print(
            f"checked with {runner}: max abs difference from PyTorch {result.max_abs_diff:.2e}"
        )
