"""AdvProp ("Adversarial Examples Improve Image Recognition"; thesis Ch. 7, Algorithm 2): every BN
becomes a main BN for clean images and an auxiliary BN for adversarial ones. Each batch's
adversarial counterpart is crafted through the auxiliary BN, and the loss is the clean
cross-entropy through the main BN plus the adversarial one through the auxiliary BN. The model
deploys on the main BN; the auxiliary branch is a view (``route: {branch: 1}``).
"""

from typing import Annotated

import torch.nn.functional as F
from pydantic import Field

from pipeline.methods.base import Method, StepResult, craft
from pipeline.norms import norm_route
from pipeline.schema import Section

MAIN, AUX = 0, 1


class AdvPropOptions(Section):
    adv_weight: Annotated[float, Field(ge=0.0)] = 1.0  # weight of the adversarial loss (1: the paper's sum)


def _loss(model, x, y, cfg) -> StepResult:
    x_adv = craft(model, x, y, cfg, route={"branch": AUX})
    with norm_route(model, branch=MAIN):
        logits = model(x)
    with norm_route(model, branch=AUX):
        logits_adv = model(x_adv)
    loss = F.cross_entropy(logits, y) + cfg.options.adv_weight * F.cross_entropy(logits_adv, y)
    return StepResult(loss, logits, y)


ADVPROP = Method("advprop", _loss, adversarial=True, options=AdvPropOptions,
                 conversions=lambda cfg: [{"kind": "multi", "k": 2}],
                 deployment={"mode": "eval", "route": {"branch": MAIN}})
