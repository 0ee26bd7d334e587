"""Files as zoo reads them from the paths users give: only regular files are opened, what the
system refuses becomes one line (``reading``), and a run directory's records are read with one
rule for a damaged one (``records``). Torch-free, and below every other package."""
