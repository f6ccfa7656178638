"""AFA's adaptive attack ("Adaptive Feature Alignment for Adversarial Training", Sec. 4): against a
model whose weight generator fuses its BN branches, PGD on ``a * CE(logits, y) + b * BCE(W0, 0)``.
Ascent pushes W0, the clean branch's fusion weight, up: the attacker steers its example to the
clean BN. It runs for each weighting ``(a, b)`` of the paper's seven (10:1 ... 1:10); a sample
counts as robust only if every weighting fails."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from pipeline.attacks.base import At, Attack, AttackEntry, Target
from pipeline.attacks.pgd import ce_loss, pgd
from pipeline.schema import PositiveInt

Weight = Annotated[float, Field(ge=0.0)]


class FusionAdaptiveSpec(AttackEntry):
    """``weightings``: the (a, b) pairs, tried in order."""

    name: Literal["afa_adaptive"]
    at: At = "threat"
    steps: PositiveInt = 50
    rel_step_size: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    weightings: Annotated[list[tuple[Weight, Weight]], Field(min_length=1)] = [
        (10, 1), (5, 1), (2, 1), (1, 1), (1, 2), (1, 5), (1, 10)]


def fusion_adaptive(spec: FusionAdaptiveSpec, t: Target):
    """Per weighting, PGD on the weighted loss; each sample keeps the first weighting's example
    that fools the model (else the last one's), and later weightings attack only those standing."""
    from pipeline.norms import generators

    deployed = t.deployed
    gens = generators(deployed.model)
    if not gens:
        raise ValueError("attack 'afa_adaptive' needs a model with a weight generator (AFA stage II)")

    def loss_for(a: float, b: float):
        def loss(logits, y):
            w0 = torch.cat([g.last for g in gens], 1).mean(1)  # this forward's W0, per sample
            return a * ce_loss(logits, y) - b * torch.log1p(-w0.clamp(max=1 - 1e-6))
        return loss

    def run(x, y, eps):
        best = x.clone()
        standing = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for a, b in spec.weightings:
            # every weighting attacks every sample where its own outcome is wanted (the paper reports the
            # best single weighting); else only the samples still standing
            idx = torch.arange(len(x), device=x.device) if t.parts is not None else standing.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            x_adv = pgd(deployed, x[idx], y[idx], eps=eps, step_size=spec.rel_step_size * eps, steps=spec.steps,
                        loss=loss_for(a, b), early_stop=t.early, eot=t.eot)
            with torch.no_grad():
                fooled = deployed(x_adv).argmax(1) != y[idx]
            if t.parts is not None:
                t.parts.setdefault(f"{a:g}:{b:g}", []).extend((~fooled).tolist())
            take = standing[idx]  # the first weighting that fools a sample gives its example
            best[idx[take]] = x_adv[take]
            standing[idx[fooled]] = False
        return best
    return run


FUSION_ADAPTIVE = Attack("afa_adaptive", FusionAdaptiveSpec, fusion_adaptive, "PGD+Ada",
                         details=lambda a: f" ({len(a.weightings)} weightings of CE and the clean branch's "
                                           f"fusion weight, PGD-{a.steps} each)", cost=4.0)
