"""Transfer attacks: craft on a surrogate model, evaluate on the target (Xie et al., "Improving
Transferability of Adversarial Examples with Input Diversity").

DI2-FGSM is iterative FGSM through a random resize-and-pad of the input, so the perturbation
does not overfit the surrogate; M-DI2-FGSM adds MI-FGSM's momentum (Dong et al., "Boosting
Adversarial Attacks with Momentum"). Both run on the one PGD core, without a random start as in
the paper. The target is only queried for predictions on the finished examples, never
differentiated: a black-box check that needs no access to the target's gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Callable, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.attacks.base import At, Attack, AttackEntry, Target
from pipeline.attacks.pgd import pgd
from pipeline.schema import PositiveInt

Model = Callable[[torch.Tensor], torch.Tensor]


def input_diversity(x: torch.Tensor, *, p: float = 0.5, resize_rate: float = 1.1) -> torch.Tensor:
    """With probability ``p``, Xie et al.'s random resize and pad, resized back to the input size.

    The (square) H x H batch is resized (nearest) to rnd x rnd, rnd uniform in [H, H * resize_rate),
    zero-padded at a random offset to the enlarged size, then resized (bilinear) back to H x H so
    the model sees its usual input size. One draw per call for the whole batch, as in the paper's
    code. Differentiable; draws from torch's global RNG, so ``torch.manual_seed`` fixes it.
    """
    h = x.shape[-1]
    if x.shape[-2] != h:
        raise ValueError(f"input diversity expects square images (got {tuple(x.shape[-2:])})")
    if float(torch.rand(())) >= p:
        return x
    out = max(h + 1, math.ceil(h * resize_rate))
    rnd = int(torch.randint(h, out, ()))
    top, left = (int(v) for v in torch.randint(0, out - rnd + 1, (2,)))
    resized = F.interpolate(x, size=(rnd, rnd), mode="nearest")
    padded = F.pad(resized, (left, out - rnd - left, top, out - rnd - top))
    return F.interpolate(padded, size=(h, h), mode="bilinear", align_corners=False)


def m_di2_fgsm(f_surrogate: Model, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 10,
               step_size: float | None = None, p: float = 0.5, momentum: float = 1.0) -> torch.Tensor:
    """M-DI2-FGSM on ``f_surrogate``: L-inf ``eps``, step ``eps / steps`` unless given."""
    return pgd(f_surrogate, x, y, eps=eps, step_size=eps / steps if step_size is None else step_size,
               steps=steps, random_start=False, momentum=momentum, transform=partial(input_diversity, p=p))


def di2_fgsm(f_surrogate: Model, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 10,
             step_size: float | None = None, p: float = 0.5) -> torch.Tensor:
    """DI2-FGSM on ``f_surrogate``: M-DI2-FGSM without momentum."""
    return m_di2_fgsm(f_surrogate, x, y, eps=eps, steps=steps, step_size=step_size, p=p, momentum=0.0)


@dataclass
class TransferResult:
    x_adv: torch.Tensor  # the examples crafted on the surrogate, to be judged on the target
    fooled_surrogate: torch.Tensor  # per sample: the surrogate misclassifies x_adv
    fooled_target: torch.Tensor  # per sample: the target misclassifies x_adv


def transfer_attack(f_surrogate: Model, f_target: Model, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                    steps: int = 10, step_size: float | None = None, p: float = 0.5,
                    momentum: float = 1.0) -> TransferResult:
    """Craft with (M-)DI2-FGSM on the surrogate (``momentum=0`` is DI2-FGSM); judge on both models.

    The target sees the whole batch in one gradient-free call, so batch-dependent targets are fine.
    """
    x_adv = m_di2_fgsm(f_surrogate, x, y, eps=eps, steps=steps, step_size=step_size, p=p, momentum=momentum)
    with torch.no_grad():
        fooled_surrogate = f_surrogate(x_adv).argmax(1) != y
        fooled_target = f_target(x_adv).argmax(1) != y
    return TransferResult(x_adv, fooled_surrogate, fooled_target)


# ---------------------------------------------------------------- as an evaluation attack


class TransferSpec(AttackEntry):
    """PGD crafted on the surrogate model (``evaluate.checks.surrogate``, on its population
    statistics) and scored on the evaluated deployment: a black-box transfer over the eps grid, as
    AFA's Table 3 (right) reports it. The target is never differentiated."""

    name: Literal["transfer"]
    at: At = "grid"
    steps: PositiveInt = 20
    rel_step_size: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    random_start: bool = True


def _run(spec: TransferSpec, t: Target):
    if t.surrogate is None:
        raise ValueError("attack 'transfer' needs a surrogate model (evaluate.checks.surrogate)")
    return lambda x, y, eps: pgd(t.surrogate, x, y, eps=eps, step_size=spec.rel_step_size * eps, steps=spec.steps,
                                 random_start=spec.random_start)


TRANSFER = Attack("transfer", TransferSpec, _run, "Transfer", words=lambda a: f"transfer PGD-{a.steps}",
                  details=lambda a: f" (PGD-{a.steps} crafted on the surrogate)", surrogate=True)
