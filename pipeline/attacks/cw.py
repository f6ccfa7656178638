"""Carlini-Wagner L2 (Carlini and Wagner, "Towards Evaluating the Robustness of Neural Networks").

A minimal-norm attack: per sample it minimizes ||x' - x||_2^2 + c * max(z_y - max_{j != y} z_j, -kappa)
with Adam over w, where x' = (tanh(w) + 1) / 2 keeps x' inside [0, 1] without clipping, and a
binary search over c finds, per sample, the smallest c that still fools the model. The loss is a
sum over samples and Adam is elementwise, so the samples of a batch are optimized independently
(for a batch-dependent deployment the whole batch is attacked jointly, never a subset of it).

The result is the smallest-L2 misclassified point found per sample, or ``x`` where none was.
With ``eps`` given, the perturbation is then projected onto the L-inf ball of radius ``eps``
(and clipped to [0, 1]), so that accuracy "at eps" is the accuracy on the returned points. As an
evaluation attack, ``bound: none`` scores the unbounded point instead (an L2 attack as the
norm-shaping paper runs it: accuracy is the share of samples it found no adversarial point for).
"""

from __future__ import annotations

from typing import Annotated, Callable, Literal

import torch
from pydantic import Field

from pipeline.attacks.base import At, Attack, AttackEntry, Run, Target
from pipeline.attacks.pgd import margin_loss
from pipeline.schema import PositiveInt

_BIG = 1e10  # the upper bound on c before any success: "not found yet"


def project_linf(x: torch.Tensor, x_adv: torch.Tensor, eps: float | None) -> torch.Tensor:
    """``x_adv`` with its perturbation clipped to the L-inf ball of radius ``eps``, inside [0, 1]."""
    if eps is None:
        return x_adv.clamp(0, 1)
    return (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1)


def _to_tanh_space(x: torch.Tensor) -> torch.Tensor:
    """w with (tanh(w) + 1) / 2 = x; pixels at exactly 0 or 1 are pulled in so atanh stays finite."""
    return torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6))


def _update_c(c: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, success: torch.Tensor) -> None:
    """Carlini and Wagner's binary search: halve towards lo on success; grow 10x until a first one."""
    hi[success] = torch.minimum(hi[success], c[success])
    lo[~success] = torch.maximum(lo[~success], c[~success])
    found = hi < _BIG
    c[:] = torch.where(found, (lo + hi) / 2, c * 10)


class _Adam:
    """Adam (Kingma and Ba, "Adam: A Method for Stochastic Optimization") on one tensor.

    Written out rather than torch.optim.Adam: it is handed w's gradient alone, so the model
    parameters' ``.grad`` are never touched, and it is reset cheaply per binary-search step.
    """

    def __init__(self, w: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.w, self.lr, self.betas, self.eps = w, lr, betas, eps
        self.m, self.v, self.t = torch.zeros_like(w), torch.zeros_like(w), 0

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t += 1
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        m_hat, v_hat = self.m / (1 - b1 ** self.t), self.v / (1 - b2 ** self.t)
        self.w.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))


def cw_l2(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
          steps: int = 100, c_init: float = 1e-2, binary_steps: int = 5, lr: float = 0.01,
          kappa: float = 0.0, eps: float | None = None) -> torch.Tensor:
    """Smallest-L2 adversarial examples found for ``f`` (see the module docstring for ``eps``)."""
    x = x.detach()
    w0 = _to_tanh_space(x)
    n = len(x)
    c = torch.full((n,), c_init, dtype=x.dtype, device=x.device)
    lo, hi = torch.zeros_like(c), torch.full_like(c, _BIG)
    best_l2 = torch.full_like(c, float("inf"))
    best = x.clone()
    for _ in range(binary_steps):
        w = w0.clone().requires_grad_(True)
        opt = _Adam(w, lr)
        success = torch.zeros(n, dtype=torch.bool, device=x.device)
        for _ in range(steps):
            x_adv = (torch.tanh(w) + 1) / 2
            logits = f(x_adv)
            l2 = (x_adv - x).pow(2).flatten(1).sum(1)
            gap = -margin_loss(logits, y)  # z_y - max_{j != y} z_j
            loss = (l2 + c * gap.clamp_min(-kappa)).sum()
            grad, = torch.autograd.grad(loss, w)
            with torch.no_grad():
                fooled = -gap > kappa
                better = fooled & (l2 < best_l2)
                best_l2[better] = l2[better]
                best[better] = x_adv[better]
                success |= fooled
            opt.step(grad)
        _update_c(c, lo, hi, success)
    return project_linf(x, best, eps)


# ---------------------------------------------------------------- as an evaluation attack


Bound = Literal["linf", "none"]


def as_linf(unbounded: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], t: Target, bound: Bound = "linf") -> Run:
    """A minimal-perturbation attack scored at an L-inf eps: its unbounded result, recorded in
    ``t.minimal`` (success and L2 norm per sample), projected onto the eps ball (``bound:
    none``: scored as found, whatever its size)."""
    def run(x, y, eps):
        x_min = unbounded(x, y)
        if t.minimal is not None:
            with torch.no_grad():
                fooled = t.deployed(x_min).argmax(1) != y
            t.minimal.setdefault("success", []).extend(fooled.tolist())
            t.minimal.setdefault("l2", []).extend((x_min - x).flatten(1).norm(dim=1).tolist())
        return project_linf(x, x_min, eps if bound == "linf" else None)
    return run


def minimal_details(spec) -> str:
    if spec.bound == "none":
        return f" ({spec.steps} steps; unbounded: its minimal L2 perturbation as found, whatever its size)"
    return f" ({spec.steps} steps; its minimal L2 perturbation projected onto the eps ball)"


def minimal_label(name: str) -> Callable[[AttackEntry], str]:
    """The column of a minimal attack: ``name``, marked where it is scored unbounded."""
    return lambda spec: spec.label or (name if spec.bound == "linf" else f"{name} (unbounded)")


class CWSpec(AttackEntry):
    """CW-L2 (Carlini and Wagner): its minimal perturbation projected onto the L-inf ball of eps
    for the accuracy at eps (``bound: none``: scored as found), and reported unbounded as the
    papers do (success rate, median L2)."""

    name: Literal["cw"]
    at: At = "threat"
    steps: PositiveInt = 100
    c_init: Annotated[float, Field(gt=0.0)] = 1.0
    binary_steps: PositiveInt = 1
    lr: Annotated[float, Field(gt=0.0)] = 0.01
    kappa: Annotated[float, Field(ge=0.0)] = 0.0
    bound: Bound = "linf"


CW = Attack("cw", CWSpec, lambda spec, t: as_linf(lambda x, y: cw_l2(
    t.deployed, x, y, eps=None, steps=spec.steps, c_init=spec.c_init, binary_steps=spec.binary_steps, lr=spec.lr,
    kappa=spec.kappa), t, spec.bound), minimal_label("CW-L2"), details=minimal_details, minimal=True)
