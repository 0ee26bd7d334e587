"""``zoo probe``: which pretrained backbone suits this data? Frozen penultimate features of each
candidate, a linear probe and a kNN on them, ranked with their speed here.

``settings`` (the options, parsed once), ``candidates`` (which pretrained weights, measured on
the meta device), ``features`` (the backbone and its penultimate features), ``cache`` (features
on disk, keyed by weights, data and size), ``linear`` (logistic regression and kNN),
``multilabel`` (their one-vs-rest form for multi-label data, ranked by mAP), ``runner`` (the
loop: budget, resume, failures), ``outputs`` (table, CSV, JSON, plot, the ``zoo train``
command). Nothing here imports torch at import time.
"""
