"""Built-in architectures."""

from __future__ import annotations

from typing import Any

from zoo.plugins.hookspecs import Register, hookimpl


def simplecnn(
    num_classes: int,
    in_chans: int,
    image_size: int | tuple[int, int],
    hidden: int = 128,
    dropout: float = 0.5,
    widths: list[int] | None = None,
    padding: str = "same",
    pool: str = "flatten",
    norm: bool = False,
) -> Any:
    """The Keras tutorial CNN: conv 32/64/128 + max-pool, dense 128, dropout 0.5; any input size.

    hidden: units of the dense layer. dropout: its dropout rate. widths: conv channels per
    block (default [32, 64, 128]). padding: "same" (padded convolutions and ceil pooling: any
    input size) or "valid", the tutorial's exact Keras network (unpadded convolutions, floor
    pooling, Keras' parameter count; at least 22 px). pool: "flatten" the last feature map
    into the dense layer, or pool it over every position first ("max", "avg"): a feature
    counts wherever it is. norm: batch normalization after each convolution.
    """
    from zoo.builtins.nets import SimpleCNN

    return SimpleCNN(
        num_classes,
        in_chans=in_chans,
        image_size=image_size,
        widths=tuple(widths or (32, 64, 128)),
        hidden=hidden,
        dropout=dropout,
        padding=padding,
        pool=pool,
        norm=norm,
    )


@hookimpl
def zoo_register_architectures(register: Register) -> None:
    register("simplecnn", simplecnn)
