"""Training methods: each is a norm conversion plus a per-batch loss; ``pipeline.train`` owns the loop.

Adding a method: a module with its loss and ``Method(...)``, and one entry below.
"""

from __future__ import annotations

from pipeline.methods.advprop import ADVPROP
from pipeline.methods.afa import AFA, AFA_FUSION
from pipeline.methods.base import Method, StepResult
from pipeline.methods.clean_ratio import CLEAN_RATIO
from pipeline.methods.iat import IAT
from pipeline.methods.mart import MART
from pipeline.methods.norm_shaping import NORM_SHAPING
from pipeline.methods.pgd_at import PGD_AT
from pipeline.methods.robmask import ROBMASK
from pipeline.methods.standard import STANDARD
from pipeline.methods.trades import TRADES

METHODS: dict[str, Method] = {m.name: m for m in (STANDARD, PGD_AT, TRADES, MART, IAT, ADVPROP, CLEAN_RATIO,
                                                   ROBMASK, AFA, AFA_FUSION, NORM_SHAPING)}

__all__ = ["METHODS", "Method", "StepResult"]
