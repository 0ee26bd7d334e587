"""Loading a trained model for inference: from a run directory, a weights file, a
timm/Hugging Face folder or a Hub repository (``hf-hub:ORG/NAME``), rebuilt through the registry
and checked tensor by tensor."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError

if TYPE_CHECKING:
    import torch

    from zoo.models.inference import LoadedModel
    from zoo.models.weights import ModelInfo


def weights_path(path: str | Path) -> Path:
    """A weights file from a path that may be a run directory or a timm/Hugging Face folder,
    or from ``hf-hub:ORG/NAME[@REVISION]`` (downloaded into the Hugging Face cache)."""
    from zoo.models import hub

    if hub.is_hub_ref(path):
        return hub.fetch(str(path)) / hub.WEIGHTS
    path = Path(path).expanduser()
    if path.is_dir():
        if (path / "model.safetensors").is_file():
            return path / "model.safetensors"
        if (path / "pytorch_model.bin").is_file():
            raise ZooError(
                f"{path} holds only pytorch_model.bin, a pickle file that zoo does not load; "
                "convert it to model.safetensors"
            )
        raise ZooError(
            f"{path} holds no model.safetensors (is it a zoo run directory or a timm folder?)"
        )
    if not path.exists():
        raise ZooError(f"{path} does not exist")
    return path


def build_from_info(info: ModelInfo, state: dict[str, torch.Tensor], source: Path) -> Any:
    """Rebuild an architecture from its ModelInfo and load the weights strictly."""
    from zoo.plugins.components import resolve

    resolved = resolve("architecture", info.arch, **info.arch_params)
    net = resolved.build(
        num_classes=info.num_classes, in_chans=info.in_chans, image_size=info.image_size
    )
    check_state(net, state, source)
    net.load_state_dict(state, strict=True)
    return net


def check_state(net: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Refuse weights that do not fit the network, naming the first mismatched tensors."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    if unexpected:
        problems.append(
            f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}"
        )
    if shapes:
        problems.append(f"shape mismatch {', '.join(shapes[:3])}")
    if problems:
        raise ZooError(f"{source} does not match the architecture: {'; '.join(problems)}")


def load(
    path: str | Path, *, device: str = "cpu", precision: str = "fp32", engine: str = "eager"
) -> LoadedModel:
    """Load a run directory, a weights file, a timm/Hugging Face folder (``config.json`` +
    ``model.safetensors``) or a Hub repository (``hf-hub:ORG/NAME[@REVISION]``): the model in
    eval mode, ready for inference, with its class names, image size and normalization (a
    ``zoo.models.inference.LoadedModel``). ``precision``: what its forward pass autocasts to
    (``auto``: as ``zoo train`` chooses for this device and network); the memory format
    follows it. ``engine``: what runs the network for inference (``zoo.models.engines``:
    ``auto`` measures, or reuses what was measured, on this CPU; the default runs it
    eagerly)."""
    import torch

    from zoo.device.defaults import use_channels_last
    from zoo.device.placement import resolve_device
    from zoo.device.precision import resolve_precision
    from zoo.models import hub
    from zoo.models.engines import check_engine
    from zoo.models.inference import LoadedModel
    from zoo.models.weights import load_tensors, read_header

    check_engine(engine)
    file = weights_path(path)
    header = read_header(file)
    info = header.info
    if info is None:
        info = _info_from_config(file)
    prefix = "model." if header.state is not None else ""
    state = load_tensors(file, prefix)
    net = build_from_info(info, state, file)
    target = resolve_device(device)
    resolve_precision(precision, target)  # bad combinations fail before loading
    model = LoadedModel(net, info).to(target).eval()
    model.amp_dtype = resolve_precision(precision, target, net)
    if use_channels_last(None, target, net, precision):  # zoo's default, as in training
        model.net.to(memory_format=torch.channels_last)
        model.channels_last = model.net_channels_last = True
    model.source, model.hub = file, hub.is_hub_ref(path)
    if engine != "eager":
        from zoo.models.engines import prepare

        prepare(model, engine)
    return model


def _info_from_config(file: Path) -> ModelInfo:
    """ModelInfo for weights without zoo metadata, from the ``config.json`` beside them."""
    from zoo.models import hfconfig

    config = hfconfig.read(file.parent)
    if config is None:
        raise ZooError(
            f"{file} has no zoo metadata (architecture, classes) and no {hfconfig.CONFIG} "
            "beside it; it is neither a zoo weights file nor a timm/Hugging Face folder"
        )
    return hfconfig.model_info(config, file.parent / hfconfig.CONFIG)
