"""The device a model runs on, and how: which device (``placement``), the precision its forward
pass autocasts to (``precision``), zoo's memory-format and precision defaults for a network
(``defaults``) and the CPU's features (``cpu``).

Training, loading, evaluation, prediction, serving and benchmarks all take these decisions
here, so that a model runs the same way whichever command runs it. Importing this package (and
``precision``'s names) does not import torch.
"""
