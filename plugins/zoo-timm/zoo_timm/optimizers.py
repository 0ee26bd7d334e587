"""timm's optimizer factory (``timm.optim.list_optimizers()``) as zoo optimizers.

Each factory shows the keywords of timm's optimizer class, with the defaults timm's factory
applies, so ``zoo info lamb`` lists them and zoo refuses unknown keys before training starts.
Weight decay is zoo's ``--weight-decay``: it arrives in the parameter groups, never on norms
and biases.
"""

from __future__ import annotations

import inspect
from typing import Any

from zoo.plugins.hookspecs import Register


class TimmOptimizer:
    """One of timm's optimizers, built by timm.optim.create_optimizer_v2.

    The keywords are those of timm's optimizer class (betas=[0.9,0.95], eps=1e-6...), with
    timm's defaults. lookahead=true wraps it in timm's Lookahead. Weight decay is --weight-decay
    (never applied to norms and biases).
    """

    def __init__(self, opt_name: str, description: str) -> None:
        self.opt_name = opt_name
        # timm's description first: ``zoo info`` shows this docstring.
        own = inspect.cleandoc(TimmOptimizer.__doc__ or "")
        self.__doc__ = f"{description}\n\n{own}" if description else own

    @property
    def __signature__(self) -> inspect.Signature:
        return optimizer_signature(self.opt_name)

    def __call__(self, params: Any, lr: float, **options: Any) -> Any:
        from timm.optim import create_optimizer_v2

        from zoo_timm.optim_state import with_json_state

        lookahead = bool(options.pop("lookahead", False))
        if isinstance(options.get("betas"), list):
            options["betas"] = tuple(options["betas"])
        name = f"lookahead_{self.opt_name}" if lookahead else self.opt_name
        return with_json_state(create_optimizer_v2(params, opt=name, lr=lr, **options))

    def __repr__(self) -> str:
        return f"TimmOptimizer({self.opt_name!r})"


def optimizer_signature(opt_name: str) -> inspect.Signature:
    """``(params, lr, *, <the optimizer class's keywords>, lookahead=False)``, with the defaults
    that timm's factory sets (momentum 0.9, the variant's own defaults)."""
    from timm.optim import get_optimizer_info

    P = inspect.Parameter
    head = [P("params", P.POSITIONAL_OR_KEYWORD), P("lr", P.POSITIONAL_OR_KEYWORD)]
    lookahead = P("lookahead", P.KEYWORD_ONLY, default=False)
    info = get_optimizer_info(opt_name)
    if isinstance(info.opt_class, str):  # apex / bitsandbytes: imported only when built
        return inspect.Signature([*head, lookahead, P("options", P.VAR_KEYWORD)])
    defaults: dict[str, Any] = {}
    for p in inspect.signature(info.opt_class.__init__).parameters.values():
        if p.name in ("self", "params", "lr", "weight_decay"):
            continue
        if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY):
            defaults[p.name] = None if p.default is P.empty else p.default
    if info.has_momentum and "momentum" in defaults:
        defaults["momentum"] = 0.9
    defaults.update({k: v for k, v in (info.defaults or {}).items() if k in defaults})
    options = [P(k, P.KEYWORD_ONLY, default=v) for k, v in defaults.items()]
    return inspect.Signature([*head, *options, lookahead])


def register_optimizers(register: Register) -> None:
    """Register every optimizer of timm's factory, except the second-order ones (adahessian):
    they need ``loss.backward(create_graph=True)``, which zoo's trainer does not do."""
    from timm.optim import get_optimizer_info, list_optimizers

    from zoo_timm.names import zoo_name

    for name in list_optimizers():
        info = get_optimizer_info(name)
        if info.second_order:
            continue
        description = info.description.strip()
        summary = f"timm: {description}" if description else f"timm's {name}"
        register(zoo_name("optimizer", name), TimmOptimizer(name, description), summary=summary)
