"""The Python API beside the CLI: ``create_model``, ``list_components``, ``load``, ``probe``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.plugins.registry import Component, normalize_kind

if TYPE_CHECKING:
    import torch


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    num_classes: int = 1000,
    in_chans: int = 3,
    image_size: int | tuple[int, int] | None = None,
    **params: Any,
) -> torch.nn.Module:
    """Build an architecture by name (``resnet50``, ``timm:resnet50``, ``simplecnn:hidden=64``);
    extra keywords are the architecture's own parameters.

    With ``pretrained=True``, the weights of the name's pretrained tag (``resnet50.a1_in1k``; a
    bare name takes the default tag) come from the Hugging Face Hub, as ``--pretrained`` does:
    the classifier is re-created when ``num_classes`` differs and the first convolution adapted
    to ``in_chans``. ``image_size`` defaults to the size the weights were trained at (else the
    architecture's own default, else 224).
    """
    from zoo.models.finetune import create_network

    return create_network(
        name,
        pretrained=pretrained,
        num_classes=num_classes,
        in_chans=in_chans,
        image_size=image_size,
        **params,
    )


def build(kind: str, spec: str, **keywords: Any) -> Any:
    """Build any component from a spec: ``zoo.build("augmentation", "mixup:alpha=0.4",
    num_classes=10)``. ``keywords`` are the ones zoo itself passes to that kind's factories
    (see docs/plugins.md); the user's parameters go in the spec."""
    from zoo.plugins.components import resolve

    return resolve(normalize_kind(kind), spec).build(**keywords)


def list_components(kind: str | None = None, pattern: str | None = None) -> list[Component]:
    """Registered components (of one kind, optionally filtered by a glob such as ``res*``)."""
    from zoo.plugins.build import get_registry

    return get_registry().components(normalize_kind(kind) if kind else None, pattern)


def load(
    path: str | Path, *, device: str = "cpu", precision: str = "fp32", engine: str = "eager"
) -> Any:
    """Load a run directory, a weights file, a timm/Hugging Face folder (``config.json`` +
    ``model.safetensors``) or a Hub repository (``hf-hub:ORG/NAME[@REVISION]``, downloaded into
    the Hugging Face cache): the model in eval mode, ready for inference, with its class names,
    image size and normalization (a ``zoo.models.inference.LoadedModel``). ``precision``
    (fp32, bf16, fp16, or auto: as ``zoo train`` chooses) is what its forward pass runs in.
    ``engine`` runs the network in inference: ``eager`` (PyTorch), ``auto`` (the fastest on
    this CPU, measured once and cached beside the weights, as ``zoo predict`` does),
    ``torchscript`` or ``onnxruntime``."""
    from zoo.models.loading import load as load_model

    return load_model(path, device=device, precision=precision, engine=engine)


def probe(
    data: str,
    archs: str | list[str],
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Rank pretrained backbones on ``data`` as ``zoo probe`` does: ``archs`` are names and
    globs over pretrained weights (``"resnet18.a1_in1k"``, ``"convnext_*"``); ``options`` are
    the command's (``image_size``, ``max_models``, ``max_params``, ``max_gmacs``,
    ``min_img_s``, ``budget``, ``batch_size``, ``device``, ``precision``, ``workers``,
    ``seed``, ``val_split``). Returns the table: one dict per candidate, ranked (``rank``,
    ``name``, ``task``, ``accuracy``, ``f1``, ``knn_accuracy``, ``images_per_second``,
    ``params``, ``gmacs``, ...; for multi-label data ranked by ``map``, with ``f1_micro``,
    ``f1`` (macro) and ``knn_map`` instead of the accuracies; failed and skipped ones last,
    with their ``reason``). With ``out``, the folder gets ``probe.json``, ``probe.csv`` and
    ``probe.png``; ``resume`` continues the interrupted probe in that folder (``data`` and
    ``archs`` must then be its own)."""
    from zoo.errors import ZooError
    from zoo.probing.outputs import read_record
    from zoo.probing.runner import probe as run_probe
    from zoo.probing.settings import settings

    cfg = settings(data, archs, **options)
    done = None
    if resume is not None:
        saved, done = read_record(Path(resume))
        if (saved.data, saved.archs) != (cfg.data, cfg.archs):
            raise ZooError(f"resume={str(resume)!r} probed {saved.data} with {list(saved.archs)}")
        cfg, out = saved, resume
    result, _, _ = run_probe(cfg, out=None if out is None else Path(out), done=done)
    return result.rows
