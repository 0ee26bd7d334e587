"""Data: the contract dataset factories fulfil (``DataSplits``, ``ImageTensors``), the
data-source protocol's engine side (``source``), the sources (folders, tables, Hugging Face
datasets, WebDataset shards) and the decoder, decoded cache and loader they share, batch
sources and the batched augmentation machinery.

``zoo.data.DataSplits`` and ``zoo.data.ImageTensors`` are the public names plugins use.
"""

from zoo.data.splits import DataSplits, ImageTensors

__all__ = ["DataSplits", "ImageTensors"]
