"""PGD adversarial training (Madry et al.): cross-entropy on PGD examples only."""

import torch.nn.functional as F

from pipeline.methods.base import Method, StepResult, craft, routed


def adversarial_term(model, x, y, cfg, *, clean_logits=None, route=None, scale=1.0):
    x_adv = craft(model, x, y, cfg, route=route, scale=scale)
    with routed(model, route):
        logits = model(x_adv)
    return F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing), logits


def _loss(model, x, y, cfg) -> StepResult:
    loss, logits = adversarial_term(model, x, y, cfg)
    return StepResult(loss, logits, y)


PGD_AT = Method("pgd_at", _loss, adversarial=True, adversarial_term=adversarial_term, label_smoothing=True)
