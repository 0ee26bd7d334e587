"""Data: the contract dataset factories fulfil (``DataSplits``, ``ImageTensors``), image
folders, batch sources and the batched augmentation machinery.

``zoo.data.DataSplits`` and ``zoo.data.ImageTensors`` are the public names plugins use.
"""

from zoo.data.splits import DataSplits, ImageTensors

__all__ = ["DataSplits", "ImageTensors"]
