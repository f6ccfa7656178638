"""AdvProp ("Adversarial Examples Improve Image Recognition"; thesis Ch. 7, Algorithm 2) and the
mixture BN (MBN) of the thesis (Sec. 6.4), which is the same training read as two models.

Every BN becomes a main BN for clean images (branch 0) and one or more auxiliary BNs for
adversarial ones (branches 1..). Each batch's adversarial counterpart is crafted through its own
auxiliary BN, and the loss is ``clean_weight`` times the clean cross-entropy through the main BN
plus ``adv_weight`` times each adversarial cross-entropy through its auxiliary BN. Clean and
adversarial samples never share a BN, so neither's statistics see the other's.

- AdvProp: ``clean_weight = adv_weight = 1`` (the paper's sum); deploys on the main BN, the
  auxiliary branch is a view (``route: {branch: 1}``).
- MBN (Eq. 6.1): ``clean_weight = alpha``, ``adv_weight = 1 - alpha`` (alpha 0.5); MBN_clean and
  MBN_adv are the views on branch 0 and 1. ``alp`` adds adversarial logit pairing ("Adversarial
  Logit Pairing"): ``alp * mean ||z_clean - z_adv||^2`` for each auxiliary branch.
- ``aux_eps``: one auxiliary BN per eps (RobMask Table 7: 8/255 and 4/255), each batch attacked
  at each; the attack's step size scales with its eps. Default: one auxiliary BN at the attack's eps.
- ``random_eps`` (RobMask Table 7): each batch is attacked at p * eps with p ~ U(0, 1).

Crafting runs through the auxiliary BN in the mode of ``attack_bn`` (a training setting): by
default ``train``, i.e. the adversarial batch's own batch statistics, the statistics the update
that follows normalizes it with, and the running statistics are never touched while crafting
(``frozen_bn_stats``). ``eval`` crafts on the auxiliary BN's running statistics instead, which lag
behind the adversarial distribution early in training.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from pipeline.methods.base import Method, StepResult, attack_forwards, craft
from pipeline.norms import norm_route
from pipeline.schema import Eps, Section

MAIN = 0


class AdvPropOptions(Section):
    clean_weight: Annotated[float, Field(ge=0.0)] = 1.0  # weight of the clean loss (MBN's alpha)
    adv_weight: Annotated[float, Field(ge=0.0)] = 1.0  # weight of each adversarial loss (MBN's 1 - alpha)
    alp: Annotated[float, Field(ge=0.0)] = 0.0  # adversarial logit pairing weight (0: off)
    aux_eps: list[Eps] | None = None  # eps of each auxiliary BN, branch 1.. (None: the attack's eps)
    random_eps: bool = False  # attack each batch at p * eps, p ~ U(0, 1) (one auxiliary BN)

    @model_validator(mode="after")
    def _aux(self) -> "AdvPropOptions":
        if self.aux_eps is not None and (not self.aux_eps or min(self.aux_eps) <= 0):
            raise ValueError("aux_eps: give one eps > 0 per auxiliary BN")
        if self.random_eps and self.aux_eps is not None and len(self.aux_eps) > 1:
            raise ValueError("random_eps: draws the strength of a single auxiliary BN; give at most one aux_eps")
        return self


def branches_of(cfg) -> list[float]:
    """The eps of auxiliary branches 1, 2, ... as fractions of the attack's eps."""
    aux = cfg.options.aux_eps
    return [1.0] if aux is None else [e / cfg.attack.eps for e in aux]


def _loss(model, x, y, cfg) -> StepResult:
    o = cfg.options
    with norm_route(model, branch=MAIN):
        logits = model(x)
    loss = o.clean_weight * F.cross_entropy(logits, y)
    for branch, scale in enumerate(branches_of(cfg), start=1):
        if o.random_eps:
            scale = scale * torch.rand(()).item()
        x_adv = craft(model, x, y, cfg, route={"branch": branch}, scale=scale)
        with norm_route(model, branch=branch):
            logits_adv = model(x_adv)
        loss = loss + o.adv_weight * F.cross_entropy(logits_adv, y)
        if o.alp:
            loss = loss + o.alp * (logits - logits_adv).pow(2).sum(1).mean()
    return StepResult(loss, logits, y)


ADVPROP = Method("advprop", _loss, adversarial=True, options=AdvPropOptions, conversions=lambda cfg: [{"kind": "multi", "k": 1 + len(branches_of(cfg))}],
                 deployment={"mode": "eval", "route": {"branch": MAIN}},
                 # one crafting and one forward per auxiliary BN, and the clean forward
                 forwards=lambda cfg: len(branches_of(cfg)) * (attack_forwards(cfg) + 1) + 1)
