"""Built-in augmentations: everything Keras' ImageDataGenerator does, plus erasing, mixup and
cutmix. Consecutive geometric ones (flips, rotate, shift, zoom, shear, affine) are fused into
one random affine per sample; see zoo.data.augment and zoo.builtins.transforms."""

from __future__ import annotations

from typing import Any

from zoo.plugins.hookspecs import Register, hookimpl


def _pair(value: float | list[float], name: str) -> tuple[float, float]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{name} takes one number or [low, high]")
        return float(value[0]), float(value[1])
    return float(value), float(value)


def hflip(p: float = 0.5) -> Any:
    """Flip left-right with probability p."""
    from zoo.builtins.transforms import Flip

    return Flip(horizontal=True, p=p)


def vflip(p: float = 0.5) -> Any:
    """Flip upside-down with probability p."""
    from zoo.builtins.transforms import Flip

    return Flip(horizontal=False, p=p)


def rotate(degrees: float = 15.0, fill: str = "nearest") -> Any:
    """Rotate by a random angle in [-degrees, degrees] (Keras rotation_range).

    fill: nearest | reflect | constant, for pixels coming from outside the image.
    """
    from zoo.builtins.transforms import RandomAffine

    return RandomAffine(degrees=degrees, fill=fill)


def shift(fraction: float | list[float] = 0.1, fill: str = "nearest") -> Any:
    """Translate by up to a fraction of the width and height (Keras width/height_shift_range).

    fraction: one number for both axes or [horizontal, vertical].
    """
    from zoo.builtins.transforms import RandomAffine

    return RandomAffine(shift=_pair(fraction, "fraction"), fill=fill)


def zoom(amount: float | list[float] = 0.1, fill: str = "nearest") -> Any:
    """Zoom each axis by a factor in [1 - amount, 1 + amount] (Keras zoom_range).

    amount: a number, or [low, high] factors as in Keras.
    """
    from zoo.builtins.transforms import RandomAffine

    low, high = (
        (1 - amount, 1 + amount) if not isinstance(amount, list) else _pair(amount, "amount")
    )
    return RandomAffine(zoom=(low, high), fill=fill)


def shear(degrees: float = 10.0, fill: str = "nearest") -> Any:
    """Shear by a random angle in [-degrees, degrees] (Keras shear_range)."""
    from zoo.builtins.transforms import RandomAffine

    return RandomAffine(shear=degrees, fill=fill)


def affine(
    degrees: float = 0.0,
    shift: float | list[float] = 0.0,
    zoom: float = 0.0,
    shear: float = 0.0,
    fill: str = "nearest",
) -> Any:
    """Rotation, shift, zoom and shear in one random affine per sample (ImageDataGenerator).

    degrees: rotation range. shift: fraction of width/height. zoom: factor range
    [1 - zoom, 1 + zoom]. shear: angle range in degrees. fill: nearest | reflect | constant.
    """
    from zoo.builtins.transforms import RandomAffine

    return RandomAffine(
        degrees=degrees,
        shift=_pair(shift, "shift"),
        zoom=(1 - zoom, 1 + zoom),
        shear=shear,
        fill=fill,
    )


def brightness(amount: float = 0.2) -> Any:
    """Scale brightness by a factor in [1 - amount, 1 + amount] (Keras brightness_range)."""
    from zoo.builtins.transforms import Brightness

    return Brightness(amount)


def contrast(amount: float = 0.2) -> Any:
    """Scale contrast around each image's mean by a factor in [1 - amount, 1 + amount]."""
    from zoo.builtins.transforms import Contrast

    return Contrast(amount)


def channel_shift(amount: float = 0.1, per_channel: bool = True) -> Any:
    """Shift intensities by up to amount (images are in [0, 1]; Keras channel_shift_range)."""
    from zoo.builtins.transforms import ChannelShift

    return ChannelShift(amount, per_channel)


def random_erasing(
    p: float = 0.25,
    scale: list[float] | None = None,
    ratio: list[float] | None = None,
    value: str | float = "random",
) -> Any:
    """Erase one random rectangle per sample with probability p.

    scale: [low, high] area fraction (default [0.02, 0.33]). ratio: aspect range (default
    [0.3, 3.3]). value: 'random' noise or a fill value in [0, 1].
    """
    from zoo.builtins.transforms import RandomErasing

    return RandomErasing(
        p, _pair(scale or [0.02, 0.33], "scale"), _pair(ratio or [0.3, 3.3], "ratio"), value
    )


def mixup(num_classes: int, alpha: float = 0.2, p: float = 1.0) -> Any:
    """Blend samples pairwise with a Beta(alpha, alpha) weight; soft targets."""
    from zoo.builtins.transforms import Mixup

    return Mixup(num_classes, alpha, p)


def cutmix(num_classes: int, alpha: float = 1.0, p: float = 1.0) -> Any:
    """Paste a random box from another sample; targets mixed by area (soft targets)."""
    from zoo.builtins.transforms import CutMix

    return CutMix(num_classes, alpha, p)


@hookimpl
def zoo_register_augmentations(register: Register) -> None:
    register("hflip", hflip, aliases=("horizontal_flip",))
    register("vflip", vflip, aliases=("vertical_flip",))
    register("rotate", rotate, aliases=("rotation",))
    register("shift", shift, aliases=("translate",))
    register("zoom", zoom)
    register("shear", shear)
    register("affine", affine)
    register("brightness", brightness)
    register("contrast", contrast)
    register("channel_shift", channel_shift)
    register("random_erasing", random_erasing, aliases=("erasing",))
    register("mixup", mixup)
    register("cutmix", cutmix)
