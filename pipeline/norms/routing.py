"""Routes: which branch, strength or fusion weights a routed norm uses for the next forwards.

A route is state on the norm modules, set by :func:`norm_route` and restored on exit (also when
the block raises), so no ``forward`` in the network has to carry it. A route value may be one
number for the whole batch or a tensor with one entry per sample; a per-sample value whose length
differs from the batch is an error, never a silent broadcast.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


class RoutedNorm(nn.Module):
    """Base of norms whose behaviour depends on a route (a BN branch, a perturbation strength,
    fusion weights). Subclasses read ``self.route`` in ``forward``; ``default_route`` is what they
    use when no route is set (the deployed behaviour of a plain ``model(x)``)."""

    default_route: dict = {}
    route_keys: tuple[str, ...] = ()  # the route keys this norm reads (a route with others is a typo)

    def __init__(self) -> None:
        super().__init__()
        self.route: dict = {}

    def routed(self, key: str, batch: int):
        """The route's ``key`` (or the default's) as a Python number or a per-sample tensor."""
        value = self.route.get(key, self.default_route.get(key))
        if value is None:
            raise ValueError(f"{type(self).__name__} needs a route with {key!r} "
                             f"(use pipeline.norms.norm_route(model, {key}=...))")
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            if len(value) != batch:
                raise ValueError(f"route {key!r} has {len(value)} entries for a batch of {batch}")
            return value
        return value.item() if isinstance(value, torch.Tensor) else value


def routed_norms(model: nn.Module) -> list[RoutedNorm]:
    return [m for m in model.modules() if isinstance(m, RoutedNorm)]


@contextmanager
def norm_route(model: nn.Module, **route) -> Iterator[nn.Module]:
    """Route every routed norm of ``model``: ``with norm_route(model, branch=1): model(x)``."""
    norms = routed_norms(model)
    if not norms:
        raise ValueError("norm_route: the model has no routed norms (convert its norms first)")
    saved = [(m, m.route) for m in norms]
    for m in norms:
        m.route = dict(route)
    try:
        yield model
    finally:
        for m, r in saved:
            m.route = r
