"""``python -m srdistill`` (also what ``torchrun -m srdistill`` runs)."""

from .cli import run

run()
