"""A run's full training state: captured into ``checkpoints/*.safetensors`` after every epoch
and restored by ``--resume``, so a resumed run ends bit-identical to an uninterrupted one.

Tensors (weights, EMA weights, optimizer and scheduler tensors, RNG states) are safetensors
entries; everything else is JSON in the file's metadata, with tensors referenced by name. No
pickle anywhere.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.models.weights import load_tensors, read_header

if TYPE_CHECKING:
    from zoo.train.config import TrainConfig
    from zoo.train.trainer import Trainer

PRECISION_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def capture(trainer: Trainer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the JSON state of everything that decides the rest of the run."""
    tensors = {f"model.{k}": v for k, v in trainer.net.state_dict().items()}
    if trainer.ema is not None:
        tensors.update({f"ema.{k}": v for k, v in trainer.ema.state_dict().items()})
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    np_state = np.random.get_state()
    rng["numpy"] = [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]
    if trainer.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(trainer.device)
    best = trainer.best
    state = {
        "epoch": len(trainer.history),
        "history": trainer.history,
        "best": {
            "metric": best.metric,
            "value": best.value,
            "epoch": best.epoch,
            "bad_epochs": best.bad_epochs,
        },
        "optimizer": flatten_state(trainer.optimizer.state_dict(), "optimizer", tensors),
        "scheduler": flatten_state(trainer.scheduler.state_dict(), "scheduler", tensors),
        "scaler": (
            flatten_state(trainer.scaler.state_dict(), "scaler", tensors)
            if trainer.scaler
            else None
        ),
        "rng": flatten_state(rng, "rng", tensors),
        "ema_updates": trainer.ema.updates if trainer.ema is not None else None,
        "callbacks": flatten_state(trainer.events.state_dict(), "callbacks", tensors),
        "config": trainer.cfg.to_dict(saved_only=True),
        # What "auto" chose on this device: a resume on the same kind of device keeps it.
        "runtime": {
            "device": trainer.device.type,
            "channels_last": trainer.channels_last,
            "precision": PRECISION_NAMES[trainer.amp_dtype],
        },
    }
    return tensors, state


def restore(trainer: Trainer, path: Path) -> None:
    """Load a saved training state into a freshly built trainer."""
    from zoo.models.loading import check_state

    header = read_header(path)
    assert header.state is not None
    tensors = load_tensors(path)
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    check_state(trainer.net, model_state, path)
    trainer.net.load_state_dict(model_state)
    state = header.state
    if trainer.ema is not None:
        trainer.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        trainer.ema.updates = int(state.get("ema_updates") or 0)
    trainer.optimizer.load_state_dict(unflatten_state(state["optimizer"], tensors))
    trainer.scheduler.load_state_dict(unflatten_state(state["scheduler"], tensors))
    if trainer.scaler is not None and state.get("scaler"):
        trainer.scaler.load_state_dict(unflatten_state(state["scaler"], tensors))
    rng = unflatten_state(state["rng"], tensors)
    torch.set_rng_state(rng["torch"])
    random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
    np.random.set_state(
        (rng["numpy"][0], rng["numpy"][1].numpy().astype(np.uint32), *rng["numpy"][2:])
    )
    if "cuda" in rng and trainer.device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], trainer.device)
    best = state["best"]
    trainer.best.value, trainer.best.epoch = best["value"], best["epoch"]
    trainer.best.bad_epochs = best["bad_epochs"]
    trainer.history = list(state["history"])
    left = trainer.events.load_state_dict(unflatten_state(state.get("callbacks"), tensors) or {})
    for key in left:
        trainer.reporter.note(f"resume: the saved state of callback {key} is not used")


def kept_runtime(cfg: TrainConfig, last: Path, device: torch.device) -> TrainConfig:
    """``cfg`` for resuming from ``last`` with the memory format and precision the run trained
    in, where they were left to ``auto`` and the device is of the same kind: what ``auto``
    picks may differ on another machine (or in another zoo version), and with it the last bits
    of every step. A checkpoint that predates this record was written by a zoo whose ``auto``
    meant contiguous fp32 on every device but CUDA."""
    header = read_header(last)
    saved = (header.state or {}).get("runtime")
    if saved is None:
        saved = {"device": "cpu", "channels_last": False, "precision": "fp32"}
    if saved.get("device") != device.type:
        return cfg
    changes: dict[str, Any] = {}
    if cfg.channels_last is None:
        changes["channels_last"] = bool(saved["channels_last"])
    if cfg.precision == "auto":
        changes["precision"] = str(saved["precision"])
    return cfg.replace(**changes)


def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors inside a nested state (optimizer, scheduler...) by references, moving
    them into ``tensors``; the result is JSON. Refuses values JSON cannot hold."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise ZooError(f"cannot store state at {prefix}: non-string keys")
        return {
            "__dict__": [[k, flatten_state(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]
        }
    if isinstance(obj, tuple):
        return {
            "__tuple__": [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        }
    if isinstance(obj, list):
        return [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ZooError(f"cannot store state at {prefix}: {type(obj).__name__} is not JSON or a tensor")


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of flatten_state."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(unflatten_state(v, tensors) for v in obj["__tuple__"])
        return {k: unflatten_state(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj
