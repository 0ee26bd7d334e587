"""Files as zoo reads and writes them, torch-free and below every other package: only regular
files are opened from the paths users give and what the system refuses becomes one line
(``reading``), a run directory's records are read with one rule for a damaged one
(``records``), and every file is written atomically, never through a link (``atomic``), so the
light commands and the plugin registry's cache write the same way as a training run."""
