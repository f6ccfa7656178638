"""IAT ("Interpolated Adversarial Training: Achieving Robust Neural Networks without Sacrificing
Too Much Accuracy"): mixup on clean images and, separately, on PGD examples; the loss is a
weighted sum of the two mixup losses (half each in the paper)."""

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.methods.base import Method, StepResult, attack_forwards, craft, routed
from pipeline.schema import Section


class IatOptions(Section):
    alpha: Annotated[float, Field(gt=0.0)] = 1.0  # mixup's Beta(alpha, alpha)
    adv_weight: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5  # weight of the adversarial mixup loss


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float):
    """Mixed inputs, both label sets and the mixing weight (drawn from the global, seeded RNG)."""
    lam = torch.distributions.Beta(alpha, alpha).sample().item()
    perm = torch.randperm(len(x), device=x.device)
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam


def mixup_loss(logits: torch.Tensor, ya: torch.Tensor, yb: torch.Tensor, lam: float) -> torch.Tensor:
    return lam * F.cross_entropy(logits, ya) + (1 - lam) * F.cross_entropy(logits, yb)


def _adversarial_mixup(model, x_adv, y, cfg, route):
    xa, ya, yb, lam = mixup(x_adv, y, cfg.options.alpha)
    with routed(model, route):
        logits = model(xa)
    return cfg.options.adv_weight * mixup_loss(logits, ya, yb, lam), logits, (ya if lam >= 0.5 else yb)


def adversarial_term(model, x, y, cfg, *, clean_logits=None, route=None, scale=1.0):
    """adv_weight times the mixup loss of PGD examples crafted through ``route``."""
    loss, logits, _ = _adversarial_mixup(model, craft(model, x, y, cfg, route=route, scale=scale), y, cfg, route)
    return loss, logits


def _loss(model, x, y, cfg) -> StepResult:
    o = cfg.options
    x_adv = craft(model, x, y, cfg)
    xc, ya, yb, lam = mixup(x, y, o.alpha)
    clean = mixup_loss(model(xc), ya, yb, lam)
    adv, logits_adv, dominant = _adversarial_mixup(model, x_adv, y, cfg, None)
    return StepResult((1 - o.adv_weight) * clean + adv, logits_adv, dominant)


IAT = Method("iat", _loss, adversarial=True, options=IatOptions, adversarial_term=adversarial_term,
             forwards=lambda cfg: attack_forwards(cfg) + 2)  # clean and adversarial
