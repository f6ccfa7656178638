"""The deployed model: the one callable that prediction and every attack use.

A ``Deployed`` is a model plus how it runs at inference. Calling it runs the model in exactly
that configuration and restores the model's flags afterwards, so an attack differentiates the
function that inference computes and the BN mode cannot differ between attacking and predicting.

Modes:
- ``eval``: population (running) statistics, the usual deployment.
- ``batch``: batch statistics of each query batch; running statistics are left untouched. The
  output of one sample depends on the rest of its batch, so ``batch_dependent`` is true and
  attacks must not evaluate subsets of a batch as if they were independent.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Literal

import torch
from torch import nn

from pipeline.norms import frozen_bn_stats, training_mode

Mode = Literal["eval", "batch"]


class Deployed:
    def __init__(self, model: nn.Module, mode: Mode = "eval"):
        if mode not in ("eval", "batch"):
            raise ValueError(f"unknown deployment mode {mode!r}; known: eval, batch")
        self.model = model
        self.mode = mode

    @property
    def batch_dependent(self) -> bool:
        return self.mode == "batch"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with ExitStack() as stack:
            stack.enter_context(training_mode(self.model, self.mode == "batch"))
            if self.mode == "batch":
                stack.enter_context(frozen_bn_stats(self.model))
            return self.model(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Predicted labels; a batch-dependent deployment sees the whole input as one batch."""
        if self.batch_dependent:
            return self(x).argmax(1)
        return torch.cat([self(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])

    def __repr__(self) -> str:
        return f"Deployed({type(self.model).__name__}, mode={self.mode!r})"
