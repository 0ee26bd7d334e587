"""Built-in optimizers. ``params`` arrive as parameter groups, each with its own weight decay
(zoo never decays norms and biases)."""

from __future__ import annotations

from typing import Any

from zoo.plugins.hookspecs import Register, hookimpl


def sgd(
    params: Any, lr: float, momentum: float = 0.9, nesterov: bool = False, dampening: float = 0.0
) -> Any:
    """Stochastic gradient descent with momentum (and optional Nesterov momentum)."""
    import torch

    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, dampening=dampening)


def adam(
    params: Any,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    amsgrad: bool = False,
) -> Any:
    """Adam (Keras' default optimizer); weight decay is L2 added to the gradient."""
    import torch

    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps, amsgrad=amsgrad)


def adamw(
    params: Any,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    amsgrad: bool = False,
) -> Any:
    """AdamW: Adam with decoupled weight decay."""
    import torch

    return torch.optim.AdamW(params, lr=lr, betas=(beta1, beta2), eps=eps, amsgrad=amsgrad)


@hookimpl
def zoo_register_optimizers(register: Register) -> None:
    register("sgd", sgd)
    register("adam", adam)
    register("adamw", adamw)
