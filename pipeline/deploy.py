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
  randomized deployment: evaluate it with EOT), are one fixed set for every query
  (``fixed_references=True``), or each query of a batch has its own fixed set (``per_query``:
  indices into ``references``, one row per position in the batch; the paper's adaptive threat
  model, where the attacker knows each query's shaping images). A query's output then depends on
  its position in the batch, so ``batch_dependent`` is true: attacks keep the batch whole.

``route`` (a dict such as ``{"branch": 0}``) holds a norm route for multi-branch norms during
every call, through :func:`pipeline.norms.norm_route`.

Entering the mode and route costs about a tenth of a forward pass of the default's small network;
an attack calls the model thousands of times, so evaluation holds them for a whole attack run
(:meth:`Deployed.held`), which computes the same numbers.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterator, Literal

import torch
from torch import nn

from pipeline.norms import frozen_bn_stats, ghost_batches, norm_route, training_mode

Mode = Literal["eval", "batch", "shaping"]
MODES = ("eval", "batch", "shaping")
_HOLDERS: dict[int, "Deployed"] = {}  # id(model) -> the deployment holding it (Deployed.held)


class Deployed:
    def __init__(self, model: nn.Module, mode: Mode = "eval", *, route: dict | None = None,
                 references: torch.Tensor | None = None, n_ref: int = 9, fixed_references: bool = False,
                 per_query: torch.Tensor | None = None, seed: int = 0):
        if mode not in MODES:
            raise ValueError(f"unknown deployment mode {mode!r}; known: {', '.join(MODES)}")
        if mode == "shaping":
            if references is None or len(references) < n_ref:
                raise ValueError(f"shaping needs at least n_ref={n_ref} clean reference images")
            if n_ref < 1:
                raise ValueError("shaping needs n_ref >= 1")
            if per_query is not None and (per_query.dim() != 2 or per_query.shape[1] != n_ref):
                raise ValueError(f"per_query: one row of n_ref={n_ref} reference indices per query, got "
                                 f"shape {tuple(per_query.shape)}")
        elif per_query is not None:
            raise ValueError("per_query references belong to the shaping mode")
        self.model, self.mode, self.route = model, mode, dict(route or {})
        self.references, self.n_ref, self.fixed_references = references, n_ref, fixed_references
        self.per_query = per_query
        self._gen = torch.Generator().manual_seed(seed)
        self._held = False
        if mode == "shaping" and fixed_references:
            self._fixed = references[torch.randperm(len(references), generator=self._gen)[:n_ref]]

    @property
    def batch_dependent(self) -> bool:
        """One sample's output depends on the other samples of its batch (or its place in it)."""
        return self.mode == "batch" or self.per_query is not None

    @property
    def randomized(self) -> bool:
        """Two calls on the same input may differ (attack it with EOT)."""
        return self.mode == "shaping" and not self.fixed_references and self.per_query is None

    def _shaping_batch(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) queries -> (B * (n_ref + 1), ...): each query after its own references."""
        b, n = len(x), self.n_ref
        if self.per_query is not None:
            if b != len(self.per_query):
                raise ValueError(f"per_query references are set for batches of {len(self.per_query)}, got {b}")
            refs = self.references[self.per_query.to(self.references.device)].to(x.device, x.dtype)
        elif self.fixed_references:
            refs = self._fixed.to(x.device, x.dtype).expand(b, *self._fixed.shape)
        else:
            idx = torch.randint(0, len(self.references), (b, n), generator=self._gen)
            refs = self.references[idx].to(x.device, x.dtype)
        return torch.cat([refs, x[:, None]], dim=1).reshape(b * (n + 1), *x.shape[1:])

    def _enter(self, stack: ExitStack) -> None:
        stack.enter_context(training_mode(self.model, self.mode != "eval"))
        if self.route:
            stack.enter_context(norm_route(self.model, **self.route))

    @contextmanager
    def held(self) -> Iterator["Deployed"]:
        """Enter the mode and route once for every call inside the block (an attack run), and
        stop the parameters from requiring gradients there: attacks differentiate the input only,
        and an attack that calls ``backward`` (FAB) would otherwise also compute and accumulate
        every weight's gradient. Outputs and input gradients are the same as per-call entry;
        flags, routes and ``requires_grad`` are restored on exit. A call of another deployment of
        the same model inside the block enters and restores its own mode and route around
        itself, so the two can interleave (crafting on one route, scoring on another)."""
        if self._held:
            yield self
            return
        holder = _HOLDERS.get(id(self.model))
        if holder is not None:
            raise RuntimeError(f"{holder!r} already holds this model; a second held deployment of it would "
                               "run the first one's calls in its own mode")
        params = [p for p in self.model.parameters() if p.requires_grad]
        with ExitStack() as stack:
            self._enter(stack)
            for p in params:
                p.requires_grad_(False)
            self._held = True
            _HOLDERS[id(self.model)] = self
            try:
                yield self
            finally:
                self._held = False
                del _HOLDERS[id(self.model)]
                for p in params:
                    p.requires_grad_(True)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with ExitStack() as stack:
            if not self._held:
                self._enter(stack)
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
            extra += f", n_ref={self.n_ref}, " + ("per_query" if self.per_query is not None
                                                  else f"fixed_references={self.fixed_references}")
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
