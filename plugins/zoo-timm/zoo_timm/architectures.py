"""Every timm architecture as a zoo architecture.

Registration must stay cheap: it runs whenever the plugin loads, for 1,300+ models. Each model
gets one small ``TimmArchitecture`` holding only its name, and a summary from timm's registry
(module, default input size: dictionary look-ups, tens of milliseconds for all of them).
"""

from __future__ import annotations

from typing import Any

from zoo.plugins.hookspecs import Register


class TimmArchitecture:
    """A timm architecture, built by timm.create_model with fresh weights (no download).

    Any keyword goes to timm's model class: drop_rate=0.2, drop_path_rate=0.1, global_pool=avg...
    img_size is set from --image-size for the models whose timm config has fixed_input_size
    (ViTs and other models with position embeddings), as timm's own builder does; give
    img_size=[h,w] to override. Start from trained weights with --init FOLDER (a timm or
    Hugging Face folder, or a zoo run).
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

    def __repr__(self) -> str:
        return f"TimmArchitecture({self.model_name!r})"


def register_architectures(register: Register) -> None:
    """Register every model in ``timm.list_models()`` under its timm name."""
    import timm

    from zoo_timm.models import default_input_size
    from zoo_timm.names import zoo_name

    family = {name: module for module in timm.list_modules() for name in _models_in(module)}
    for name in timm.list_models():
        h, w = default_input_size(name)
        register(
            zoo_name("architecture", name),
            TimmArchitecture(name),
            summary=f"timm {family.get(name, 'timm')} model, default input {h}x{w}",
        )


def _models_in(module: str) -> list[str]:
    import timm

    return timm.list_models(module=module)
