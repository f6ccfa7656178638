"""Square Attack alone (Andriushchenko et al., "Square Attack: a query-efficient black-box
adversarial attack via random search"), L-inf, from the official ``pyautoattack`` code.

It queries only ``f``'s outputs, never its gradients, so it is the check against gradient
masking: a model that resists PGD but falls to Square has gradients that mislead, not robustness.
Square evaluates subsets of a batch (the samples still standing), so batch-dependent deployments
are refused. Its seed is set inside a forked RNG, so the caller's random stream is left as it was.
"""

from __future__ import annotations

from typing import Callable

import torch


def square(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
           eps: float, n_queries: int = 1000, p_init: float = 0.8, n_restarts: int = 1,
           loss: str = "margin", seed: int = 0) -> torch.Tensor:
    """Adversarial examples for ``f`` within ``eps`` of ``x`` (L-inf) and inside [0, 1]."""
    from pyautoattack.square import SquareAttack

    if getattr(f, "batch_dependent", False):
        raise ValueError("square evaluates subsets of a batch; not valid for a batch-dependent deployment")
    adversary = SquareAttack(f, norm="Linf", eps=eps, n_queries=n_queries, p_init=p_init,
                             n_restarts=n_restarts, loss=loss, seed=seed, device=x.device)
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())), torch.no_grad():
        x_adv = adversary.perturb(x.detach(), y)
    return x_adv.detach()
