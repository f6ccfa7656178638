"""MART ("Improving Adversarial Robustness Requires Revisiting Misclassified Examples"):
boosted cross-entropy on PGD examples plus beta times KL(f(x) || f(x')) weighted per sample by
1 - p_y(x), the clean probability of the true class, so misclassified examples weigh more.
Follows the official code's constants (the 1.0001 and 1e-12 guards)."""

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.methods.base import Method, StepResult, attack_forwards, craft, routed
from pipeline.schema import Section


class MartOptions(Section):
    beta: Annotated[float, Field(ge=0.0)] = 6.0  # weight of the weighted KL term (the paper's lambda)


def mart_weights(clean_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 - p_y(x) per sample."""
    return 1.0000001 - F.softmax(clean_logits, 1).gather(1, y[:, None]).squeeze(1)


def boosted_ce(adv_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CE plus -log(1 - the largest wrong-class probability), per batch (mean)."""
    probs = F.softmax(adv_logits, 1)
    top2 = probs.argsort(1)[:, -2:]
    wrong = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
    return F.cross_entropy(adv_logits, y) + F.nll_loss(torch.log(1.0001 - probs + 1e-12), wrong)


def adversarial_term(model, x, y, cfg, *, clean_logits, route=None, scale=1.0):
    """MART's whole loss but its clean forward: the clean logits only weigh and anchor the KL."""
    x_adv = craft(model, x, y, cfg, route=route, scale=scale)
    with routed(model, route):
        logits_adv = model(x_adv)
    kl = F.kl_div(torch.log(F.softmax(logits_adv, 1) + 1e-12), F.softmax(clean_logits, 1), reduction="none").sum(1)
    robust = (kl * mart_weights(clean_logits, y)).mean()
    return boosted_ce(logits_adv, y) + cfg.options.beta * robust, logits_adv


def _loss(model, x, y, cfg) -> StepResult:
    logits = model(x)
    loss, logits_adv = adversarial_term(model, x, y, cfg, clean_logits=logits)
    return StepResult(loss, logits_adv, y)


MART = Method("mart", _loss, adversarial=True, options=MartOptions, adversarial_term=adversarial_term,
              forwards=lambda cfg: attack_forwards(cfg) + 2)  # clean and adversarial
