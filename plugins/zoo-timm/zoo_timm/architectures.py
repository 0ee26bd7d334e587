"""Every timm architecture as a zoo architecture.

Registration must stay cheap: it runs whenever the plugin loads, for 1,300+ models. Each model
gets one small ``TimmArchitecture`` holding only its name, and a summary from timm's registry
(module, default input size: dictionary look-ups, tens of milliseconds for all of them).

Each model's pretrained tags (``resnet50.a1_in1k``: Hub repository, input size, normalization,
licence; 1,800+ in all) are registered with it as ``extra={"pretrained": [...]}``, default tag
first, so zoo stores them in its registry cache and ``zoo list --pretrained`` answers without
importing timm.
"""

from __future__ import annotations

from typing import Any

from zoo.plugins.hookspecs import Register


class TimmArchitecture:
    """A timm architecture, built by timm.create_model with fresh weights (no download).

    Any keyword goes to timm's model class: drop_rate=0.2, drop_path_rate=0.1, global_pool=avg...
    img_size is set from --image-size for the models whose timm config has fixed_input_size
    (ViTs and other models with position embeddings), as timm's own builder does; give
    img_size=[h,w] to override. Start from timm's pretrained weights with --pretrained (NAME or
    NAME.TAG, see zoo list --pretrained), or from other weights with --init.
    """

    __slots__ = ("model_name",)

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    @property
    def default_image_size(self) -> tuple[int, int]:
        """The input size of timm's default pretrained config, ``(h, w)`` (read by ``zoo info``)."""
        from zoo_timm.models import default_input_size

        return default_input_size(self.model_name)

    def __call__(
        self,
        num_classes: int,
        in_chans: int,
        image_size: int | tuple[int, int],
        **params: Any,
    ) -> Any:
        from zoo_timm.models import create

        return create(self.model_name, num_classes, in_chans, image_size, params)

    def layer_decay_groups(
        self, net: Any, weight_decay: float, layer_decay: float
    ) -> list[dict[str, Any]]:
        """Parameter groups with layer-wise learning-rate decay (``lr_scale`` per group), by
        timm's ``param_groups_layer_decay`` on the model's ``group_matcher`` (read by zoo's
        ``--layer-decay``)."""
        from zoo_timm.models import layer_decay_groups

        return layer_decay_groups(self.model_name, net, weight_decay, layer_decay)

    def __repr__(self) -> str:
        return f"TimmArchitecture({self.model_name!r})"


def register_architectures(register: Register) -> None:
    """Register every model in ``timm.list_models()`` under its timm name."""
    import timm

    from zoo_timm.models import default_input_size, pretrained_tags
    from zoo_timm.names import zoo_name

    family = {name: module for module in timm.list_modules() for name in _models_in(module)}
    tags = pretrained_tags()
    for name in timm.list_models():
        h, w = default_input_size(name)
        register(
            zoo_name("architecture", name),
            TimmArchitecture(name),
            summary=f"timm {family.get(name, 'timm')} model, default input {h}x{w}",
            extra={"pretrained": tags[name]} if name in tags else None,
        )


def _models_in(module: str) -> list[str]:
    import timm

    return timm.list_models(module=module)
