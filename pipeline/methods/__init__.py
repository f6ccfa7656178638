"""Training methods: each is a norm conversion plus a per-batch loss; ``pipeline.train`` owns the loop."""

from __future__ import annotations

from pipeline.methods.base import Method, StepResult
from pipeline.methods.pgd_at import PGD_AT
from pipeline.methods.standard import STANDARD

METHODS: dict[str, Method] = {m.name: m for m in (STANDARD, PGD_AT)}

__all__ = ["METHODS", "Method", "StepResult"]
