"""``python -m zoo`` (what ``torchrun -m zoo train ...`` runs)."""

from zoo.cli import main

if __name__ == "__main__":
    main()
