"""TRADES ("Theoretically Principled Trade-off between Robustness and Accuracy"):
cross-entropy on clean images plus beta times KL(f(x) || f(x')), where x' maximizes that KL
inside the eps ball, starting from x plus small Gaussian noise (as the official code does).

The attack's loss is the KL to the clean prediction, never the cross-entropy with the label;
``cfg.attack`` gives eps, step size and steps (the paper: 10 steps of 2/255 at 8/255).
"""

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.methods.base import Method, StepResult, craft
from pipeline.schema import Section


class TradesOptions(Section):
    beta: Annotated[float, Field(ge=0.0)] = 6.0  # weight of the robust (KL) term; 6 in the paper
    init_std: Annotated[float, Field(ge=0.0)] = 0.001  # std of the attack's Gaussian start


def kl_to_clean(logits: torch.Tensor, clean_probs: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(clean || adversarial): the loss TRADES' attack maximizes."""
    return F.kl_div(F.log_softmax(logits, 1), clean_probs, reduction="none").sum(1)


def trades_attack(model, x, y, cfg) -> torch.Tensor:
    from pipeline.deploy import Deployed

    mode = "batch" if cfg.attack_bn == "train" else "eval"
    with torch.no_grad():
        clean_probs = F.softmax(Deployed(model, mode)(x), 1)
    if cfg.attack.restarts != 1:
        raise ValueError("trades: the KL attack keeps no per-restart best; set attack.restarts to 1")
    init = cfg.options.init_std * torch.randn_like(x)
    # The targets of the loss are the clean probabilities, so the PGD core indexes them per sample.
    return craft(model, x, clean_probs, cfg, loss=kl_to_clean, init=init)


def _loss(model, x, y, cfg) -> StepResult:
    x_adv = trades_attack(model, x, y, cfg)
    logits = model(x)
    logits_adv = model(x_adv)
    robust = F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits, 1), reduction="batchmean")
    return StepResult(F.cross_entropy(logits, y) + cfg.options.beta * robust, logits_adv, y)


TRADES = Method("trades", _loss, adversarial=True, options=TradesOptions)
