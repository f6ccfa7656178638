"""Attacks on a deployed model, all in [0, 1] pixel space under an L-inf ball."""

from pipeline.attacks.pgd import fgsm, pgd

__all__ = ["fgsm", "pgd"]
