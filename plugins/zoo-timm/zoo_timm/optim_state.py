"""Optimizer state that zoo's JSON checkpoints can hold.

A few of timm's optimizers keep a ``torch.dtype`` in their parameter groups (adafactorbv's
``momentum_dtype``). zoo stores optimizer state as JSON plus tensors, never pickle, so the
dtype is saved by name and turned back into a dtype when the state is loaded.
"""

from __future__ import annotations

from typing import Any

import torch


def with_json_state(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Attach state-dict hooks that store dtypes in parameter groups by name, where needed."""
    groups = optimizer.param_groups
    if not any(isinstance(v, torch.dtype) for g in groups for v in g.values()):
        return optimizer
    if not hasattr(optimizer, "_optimizer_state_dict_post_hooks"):  # a wrapper like Lookahead
        raise ValueError(
            f"{type(optimizer).__name__} would keep a torch dtype in its state, which zoo's "
            "checkpoints cannot store; drop lookahead=true"
        )
    optimizer.register_state_dict_post_hook(_dtypes_to_names)
    optimizer.register_load_state_dict_pre_hook(_names_to_dtypes)
    return optimizer


def _dtypes_to_names(optimizer: Any, state: dict[str, Any]) -> dict[str, Any]:
    state["param_groups"] = [{k: _name(v) for k, v in g.items()} for g in state["param_groups"]]
    return state


def _name(value: Any) -> Any:
    return str(value).removeprefix("torch.") if isinstance(value, torch.dtype) else value


def _names_to_dtypes(optimizer: Any, state: dict[str, Any]) -> dict[str, Any]:
    groups = []
    for live, saved in zip(optimizer.param_groups, state["param_groups"], strict=False):
        saved = dict(saved)
        for key, value in live.items():
            if isinstance(value, torch.dtype) and isinstance(saved.get(key), str):
                saved[key] = getattr(torch, saved[key])
        groups.append(saved)
    return {**state, "param_groups": groups}
