"""The one PGD core (Madry et al., "Towards Deep Learning Models Resistant to Adversarial
Attacks"), used by training and by evaluation.

- ``loss``: "ce" (cross-entropy), "margin" (the CW margin, max_{j != y} z_j - z_y), or any
  callable ``(logits, y) -> per-sample loss`` to maximize.
- ``eps`` is a float or a per-sample tensor; ``steps=1, step_size=eps, random_start=False`` is FGSM.
- ``init``: a starting perturbation (e.g. TRADES' small Gaussian noise) instead of the random start;
  it is clipped into the eps ball and [0, 1] like every step.
- ``restarts`` keep, per sample, the first restart that fools the model (or the last one). Later
  restarts attack only the samples still standing, except against a batch-dependent deployment,
  where every restart attacks the whole batch (a subset would be another function).
- ``early_stop`` (evaluation): a sample stops being attacked once it is misclassified, and each
  step computes only the samples still standing. Not allowed for batch-dependent deployments,
  whose outputs would change when the batch shrinks.
- ``perturb``: a mask of the samples that are attacked; the others stay exactly as they are in
  every step, while the loss (and, through batch statistics, the gradient) is the whole batch's:
  norm shaping's attack, Eq. 5 of "Achieving Both Model Accuracy and Robustness by Adversarial
  Training with Batch Norm Shaping", where a clean part keeps the batch statistics steady.
"""

from __future__ import annotations

from typing import Annotated, Callable, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.attacks.base import At, Attack, AttackEntry, Target
from pipeline.schema import PositiveInt

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return other.max(1).values - true


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


LOSSES: dict[str, LossFn] = {"ce": ce_loss, "margin": margin_loss}


def _loss_grad(f: Callable[[torch.Tensor], torch.Tensor], xs: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
               transform: Callable[[torch.Tensor], torch.Tensor] | None, eot: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of the first call and the loss gradient averaged over ``eot`` calls.

    One backward per call keeps one graph in memory at a time, whatever ``eot`` is.
    """
    first, total = None, None
    for _ in range(eot):
        logits = f(xs if transform is None else transform(xs))
        grad, = torch.autograd.grad(loss_fn(logits, y).sum(), xs)
        first = logits.detach() if first is None else first
        total = grad if total is None else total + grad
    return first, total if eot == 1 else total / eot


def _momentum(g: torch.Tensor | None, grad: torch.Tensor, mu: float) -> torch.Tensor:
    """MI-FGSM's accumulated direction: mu * g + grad scaled to unit L1 norm per sample."""
    l1 = grad.abs().flatten(1).sum(1).clamp_min(1e-12).reshape(-1, *([1] * (grad.dim() - 1)))
    return grad / l1 if g is None else mu * g + grad / l1


def _per_sample(value: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    return t.expand(len(x)).reshape(-1, *([1] * (x.dim() - 1))) if t.dim() == 0 else t.reshape(-1, *([1] * (x.dim() - 1)))


def pgd(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | torch.Tensor,
    step_size: float | torch.Tensor,
    steps: int,
    random_start: bool = True,
    restarts: int = 1,
    loss: str | LossFn = "ce",
    early_stop: bool = False,
    momentum: float = 0.0,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    eot: int = 1,
    init: torch.Tensor | None = None,
    perturb: torch.Tensor | None = None,
) -> torch.Tensor:
    """Adversarial examples for ``f`` within ``eps`` of ``x`` (L-inf) and inside [0, 1]."""
    if perturb is not None:
        if early_stop or restarts != 1:
            raise ValueError("perturb attacks part of one batch: not valid with early_stop or restarts")
        if perturb.shape != (len(x),):
            raise ValueError(f"perturb needs one flag per sample ({len(x)}), got shape {tuple(perturb.shape)}")
        # samples left alone get a zero ball: every step then leaves them exactly where they are
        eps = _per_sample(eps, x).flatten() * perturb.to(x.dtype)
    if early_stop and getattr(f, "batch_dependent", False):
        raise ValueError("early_stop evaluates subsets of a batch; not valid for a batch-dependent deployment")
    if early_stop and transform is not None:
        raise ValueError("early_stop decides on the plain f(x) prediction; not valid together with a transform")
    if eot < 1:
        raise ValueError(f"eot must be at least 1 (got {eot})")
    loss_fn = LOSSES[loss] if isinstance(loss, str) else loss
    x = x.detach()
    eps_t, step_t = _per_sample(eps, x), _per_sample(step_size, x)
    x_adv = x.clone()
    standing = torch.ones(len(x), dtype=torch.bool, device=x.device)  # not yet fooled

    whole_batches = getattr(f, "batch_dependent", False)
    for restart in range(restarts):
        subset = early_stop or (restart > 0 and not whole_batches)
        idx = standing.nonzero().squeeze(1) if subset else torch.arange(len(x), device=x.device)
        if len(idx) == 0:
            break
        delta = torch.zeros_like(x[idx])
        if init is not None:
            delta = init.to(x)[idx].clamp(-eps_t[idx], eps_t[idx])
        elif random_start:
            delta = (torch.rand_like(delta) * 2 - 1) * eps_t[idx]
        delta = (x[idx] + delta).clamp(0, 1) - x[idx]
        g = None  # MI-FGSM's accumulated direction, reset per restart
        for _ in range(steps):
            xs = (x[idx] + delta).requires_grad_(True)
            logits, grad = _loss_grad(f, xs, y[idx], loss_fn, transform, eot)
            if early_stop:
                fooled = logits.detach().argmax(1) != y[idx]
                if fooled.any():  # keep the point that fools, stop attacking it
                    x_adv[idx[fooled]] = xs.detach()[fooled]
                    standing[idx[fooled]] = False
                    keep = ~fooled
                    idx, delta, grad = idx[keep], delta[keep], grad[keep]
                    g = None if g is None else g[keep]
                    if len(idx) == 0:
                        break
            if momentum:
                grad = g = _momentum(g, grad, momentum)
            delta = delta + step_t[idx] * grad.sign()
            delta = delta.clamp(-eps_t[idx], eps_t[idx])
            delta = (x[idx] + delta).clamp(0, 1) - x[idx]
        if len(idx) == 0:
            continue
        x_final = (x[idx] + delta).detach()
        if restarts == 1 and not early_stop:
            x_adv[idx] = x_final
            break
        with torch.no_grad():
            fooled = f(x_final).argmax(1) != y[idx]
        last = restart == restarts - 1
        take = (fooled | last) & standing[idx]  # a sample keeps the first restart that fooled it
        x_adv[idx[take]] = x_final[take]
        standing[idx[fooled]] = False
    return x_adv


def fgsm(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
         eps: float | torch.Tensor, loss: str | LossFn = "ce") -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al.): one full step from the clean input."""
    return pgd(f, x, y, eps=eps, step_size=eps, steps=1, random_start=False, loss=loss)


# ---------------------------------------------------------------- as evaluation attacks

RelStep = Annotated[float, Field(gt=0.0, le=1.0)]  # step = rel_step_size * eps


class FGSMSpec(AttackEntry):
    name: Literal["fgsm"]
    at: At = "grid"


class PGDSpec(AttackEntry):
    name: Literal["pgd"]
    at: At = "grid"
    steps: PositiveInt = 20
    rel_step_size: RelStep = 0.25
    restarts: PositiveInt = 1
    random_start: bool = True
    loss: Literal["ce", "margin"] = "ce"


class CWLinfSpec(AttackEntry):
    """CW-Linf: PGD on the CW margin loss max_{j != y} z_j - z_y inside the L-inf ball (the "C&W"
    of L-inf papers such as AFA)."""

    name: Literal["cw_linf"]
    at: At = "threat"
    steps: PositiveInt = 30
    rel_step_size: RelStep = 0.1
    restarts: PositiveInt = 1
    random_start: bool = True


def _pgd_run(spec, t: Target, loss: str):
    return lambda x, y, eps: pgd(t.deployed, x, y, eps=eps, step_size=spec.rel_step_size * eps, steps=spec.steps,
                                 random_start=spec.random_start, restarts=spec.restarts, loss=loss,
                                 early_stop=t.early, eot=t.eot)


FGSM = Attack("fgsm", FGSMSpec, lambda spec, t: lambda x, y, eps: fgsm(t.deployed, x, y, eps=eps), "FGSM")
PGD = Attack("pgd", PGDSpec, lambda spec, t: _pgd_run(spec, t, spec.loss), "PGD",
             details=lambda a: f"-{a.steps} (step {a.rel_step_size:g}·eps, {a.restarts} restart(s), {a.loss} loss)",
             words=lambda a: f"PGD-{a.steps}")
CW_LINF = Attack("cw_linf", CWLinfSpec, lambda spec, t: _pgd_run(spec, t, "margin"), "CW-Linf",
                 details=lambda a: f" ({a.steps} steps of {a.rel_step_size:g}·eps on the CW margin loss)",
                 words=lambda a: f"CW-Linf-{a.steps}")
