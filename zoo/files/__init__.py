"""Writing files safely, below every other package: atomic writes (``atomic``), torch-free,
so the light commands and the plugin registry's cache write the same way as a training run."""
