"""The deployed model: the one callable that prediction and every attack use.

A ``Deployed`` is a model plus how it runs at inference. Calling it runs the model in exactly
that configuration and restores the model's flags, running statistics and routes afterwards, so
an attack differentiates the function that inference computes and the BN mode cannot differ
between attacking and predicting.

Modes:
- ``eval``: population (running) statistics, the usual deployment.
- ``batch``: the statistics of each query batch. One sample's output depends on the rest of its
  batch, so ``batch_dependent`` is true and attacks must not evaluate subsets of a batch.
- ``shaping``: norm shaping's inference ("Achieving Both Model Accuracy and Robustness by
  Adversarial Training with Batch Norm Shaping"): each query is grouped with ``n_ref`` clean
  reference samples and normalized with that group's batch statistics; only the query's output
  is kept. References are drawn at random for every call (``fixed_references=False``, a
  randomized deployment: evaluate it with EOT) or are one fixed set known to the attacker
  (``fixed_references=True``, the paper's adaptive threat model).

``route`` (a dict such as ``{"branch": 0}``) holds a norm route for multi-branch norms during
every call, through :func:`pipeline.norms.norm_route`.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Literal

import torch
from torch import nn

from pipeline.norms import frozen_bn_stats, ghost_batches, norm_route, training_mode

Mode = Literal["eval", "batch", "shaping"]
MODES = ("eval", "batch", "shaping")


class Deployed:
    def __init__(self, model: nn.Module, mode: Mode = "eval", *, route: dict | None = None,
                 references: torch.Tensor | None = None, n_ref: int = 9, fixed_references: bool = False,
                 seed: int = 0):
        if mode not in MODES:
            raise ValueError(f"unknown deployment mode {mode!r}; known: {', '.join(MODES)}")
        if mode == "shaping":
            if references is None or len(references) < n_ref:
                raise ValueError(f"shaping needs at least n_ref={n_ref} clean reference images")
            if n_ref < 1:
                raise ValueError("shaping needs n_ref >= 1")
        self.model, self.mode, self.route = model, mode, dict(route or {})
        self.references, self.n_ref, self.fixed_references = references, n_ref, fixed_references
        self._gen = torch.Generator().manual_seed(seed)
        if mode == "shaping" and fixed_references:
            self._fixed = references[torch.randperm(len(references), generator=self._gen)[:n_ref]]

    @property
    def batch_dependent(self) -> bool:
        """One sample's output depends on the other samples of its batch."""
        return self.mode == "batch"

    @property
    def randomized(self) -> bool:
        """Two calls on the same input may differ (attack it with EOT)."""
        return self.mode == "shaping" and not self.fixed_references

    def _shaping_batch(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) queries -> (B * (n_ref + 1), ...): each query after its own references."""
        b, n = len(x), self.n_ref
        if self.fixed_references:
            refs = self._fixed.to(x.device, x.dtype).expand(b, *self._fixed.shape)
        else:
            idx = torch.randint(0, len(self.references), (b, n), generator=self._gen)
            refs = self.references[idx].to(x.device, x.dtype)
        return torch.cat([refs, x[:, None]], dim=1).reshape(b * (n + 1), *x.shape[1:])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with ExitStack() as stack:
            stack.enter_context(training_mode(self.model, self.mode != "eval"))
            if self.route:
                stack.enter_context(norm_route(self.model, **self.route))
            if self.mode == "batch":
                stack.enter_context(frozen_bn_stats(self.model))
                return self.model(x)
            if self.mode == "shaping":
                stack.enter_context(ghost_batches(self.model, self.n_ref + 1))
                out = self.model(self._shaping_batch(x))
                return out.reshape(len(x), self.n_ref + 1, -1)[:, -1]
            return self.model(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Predicted labels; a batch-dependent deployment sees the whole input as one batch."""
        if self.batch_dependent:
            return self(x).argmax(1)
        return torch.cat([self(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])

    def __repr__(self) -> str:
        extra = f", route={self.route}" if self.route else ""
        if self.mode == "shaping":
            extra += f", n_ref={self.n_ref}, fixed_references={self.fixed_references}"
        return f"Deployed({type(self.model).__name__}, mode={self.mode!r}{extra})"


class DeployedNetwork(nn.Module):
    """A network and how it deploys, as one module whose ``forward`` gives the deployment's
    logits (a :class:`Deployed` per call). A logged model's pytorch flavor holds one, so
    ``mlflow.pytorch.load_model(uri)(x)`` equals the pyfunc flavor's ``predict``; ``network`` is
    the bare network. Norm shaping's deployment needs clean reference images, so its forward
    raises: deploy ``network`` with :class:`Deployed` and references instead."""

    def __init__(self, network: nn.Module, mode: Mode = "eval", route: dict | None = None):
        super().__init__()
        self.network = network
        self.mode, self.route = mode, dict(route or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Deployed(self.network, self.mode, route=self.route)(x)
