"""PGD adversarial training (Madry et al.): cross-entropy on PGD examples only."""

import torch.nn.functional as F

from pipeline.methods.base import Method, StepResult, craft


def _loss(model, x, y, cfg) -> StepResult:
    x_adv = craft(model, x, y, cfg)
    logits = model(x_adv)
    return StepResult(F.cross_entropy(logits, y), logits, y)


PGD_AT = Method("pgd_at", _loss, adversarial=True)
