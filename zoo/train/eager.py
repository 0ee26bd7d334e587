"""Eager runs without ``torch._dynamo``: torch's optimizers import it (1.5 to 2 s on a 2-core
CPU, more than a short run's training) only to insert ``torch.compile`` graph breaks, which do
nothing when nothing is being compiled.

Two places do it in torch 2.x: ``Optimizer.add_param_group``, ``zero_grad``, ``state_dict`` and
``load_state_dict`` (``torch._disable_dynamo`` imports it on the first call) and every built-in
optimizer's ``step`` (``_use_grad_for_differentiable`` imports it on every call). ``skip_dynamo``
lets both call the plain functions while ``torch._dynamo`` is not imported, and hands back to
torch's own wrappers as soon as it is (``--compile``, or any other user of ``torch.compile`` in
the process), so compiled code sees exactly torch's behaviour. Where torch's optimizers are built
differently (another torch version), nothing is changed.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

DYNAMO = "torch._dynamo"
_DISABLED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def dynamo_loaded() -> bool:
    return DYNAMO in sys.modules


def skip_dynamo(optimizer: Any = None) -> None:
    """Without an argument, before optimizers are built: let their construction and state
    methods run without importing torch._dynamo; with one (any ``torch.optim.Optimizer``), its
    steps too."""
    import torch

    if dynamo_loaded():
        return
    for name in _DISABLED:
        _lazy_disable(getattr(torch.optim.Optimizer, name, None))
    if not isinstance(optimizer, torch.optim.Optimizer):
        return
    owner = next((c for c in type(optimizer).__mro__ if "step" in c.__dict__), None)
    if owner is not None and owner is not torch.optim.Optimizer:
        _lazy_step(owner)


def _lazy_disable(inner: Any) -> None:
    """``torch._disable_dynamo(fn)`` caches ``torch._dynamo.disable(fn)`` on ``fn`` as
    ``__dynamo_disable`` at the first call; cache a function that calls ``fn`` directly until
    torch._dynamo is imported, then drops itself and lets torch build the real one."""
    fn = getattr(inner, "__wrapped__", None)
    if fn is None or getattr(fn, "__dynamo_disable", None) is not None:
        return

    def plain(*args: Any, **kwargs: Any) -> Any:
        if dynamo_loaded():
            if getattr(fn, "__dynamo_disable", None) is plain:
                del fn.__dynamo_disable
            return inner(*args, **kwargs)
        return fn(*args, **kwargs)

    fn.__dynamo_disable = plain


def _lazy_step(cls: type) -> None:
    """Rebuild ``cls.step`` (torch's profiling/hook wrapper around ``_use_grad`` around the
    step) with a ``_use_grad`` that sets the grad mode without the graph breaks, falling back to
    torch's ``_use_grad`` once torch._dynamo is imported."""
    import torch

    hooked = cls.__dict__["step"]
    use_grad = getattr(hooked, "__wrapped__", None)
    raw = getattr(use_grad, "__wrapped__", None)
    if (
        getattr(hooked, "zoo_lazy_dynamo", False)
        or not getattr(hooked, "hooked", False)
        or getattr(getattr(use_grad, "__code__", None), "co_name", "") != "_use_grad"
        or raw is None
    ):
        return
    wrap: Callable[[Callable[..., Any]], Callable[..., Any]] = getattr(
        torch.optim.Optimizer, "profile_hook_step", None
    )  # type: ignore[assignment]
    if wrap is None:
        return

    @functools.wraps(raw)
    def step(*args: Any, **kwargs: Any) -> Any:
        if dynamo_loaded():
            return use_grad(*args, **kwargs)
        self = args[0]
        previous = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(self.defaults["differentiable"])
            return raw(*args, **kwargs)
        finally:
            torch.set_grad_enabled(previous)

    new = wrap(step)
    new.hooked = True  # type: ignore[attr-defined]
    new.zoo_lazy_dynamo = True  # type: ignore[attr-defined]
    cls.step = new  # type: ignore[attr-defined]
