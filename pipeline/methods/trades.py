"""TRADES ("Theoretically Principled Trade-off between Robustness and Accuracy"):
cross-entropy on clean images plus beta times KL(f(x) || f(x')), where x' maximizes that KL
inside the eps ball, starting from x plus small Gaussian noise (as the official code does).

The attack's loss is the KL to the clean prediction, never the cross-entropy with the label;
``cfg.attack`` gives eps, step size and steps (the paper: 10 steps of 2/255 at 8/255). The clean
prediction the attack moves away from is the training forward's own when the attack crafts on
batch statistics (``attack_bn: train``: the same numbers, one forward fewer), and a forward on
running statistics when it crafts on them (``eval``, as the official code's ``model.eval()``).
"""

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.methods.base import Method, StepResult, attack_forwards, craft, routed
from pipeline.schema import Section


class TradesOptions(Section):
    beta: Annotated[float, Field(ge=0.0)] = 6.0  # weight of the robust (KL) term; 6 in the paper
    init_std: Annotated[float, Field(ge=0.0)] = 0.001  # std of the attack's Gaussian start


def kl_to_clean(logits: torch.Tensor, clean_probs: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(clean || adversarial): the loss TRADES' attack maximizes."""
    return F.kl_div(F.log_softmax(logits, 1), clean_probs, reduction="none").sum(1)


def trades_attack(model, x, y, cfg, *, clean_logits=None, route=None, scale=1.0) -> torch.Tensor:
    """The KL-maximizing examples; ``clean_logits`` (batch statistics) spare a forward when the
    attack crafts on batch statistics too."""
    from pipeline.deploy import Deployed

    if cfg.attack.restarts != 1:
        raise ValueError("trades: the KL attack keeps no per-restart best; set attack.restarts to 1")
    if clean_logits is not None and cfg.attack_bn == "train":
        clean_probs = F.softmax(clean_logits.detach(), 1)
    else:
        with torch.no_grad():
            clean_probs = F.softmax(Deployed(model, "batch" if cfg.attack_bn == "train" else "eval", route=route)(x), 1)
    init = cfg.options.init_std * torch.randn_like(x)
    # The targets of the loss are the clean probabilities, so the PGD core indexes them per sample.
    return craft(model, x, clean_probs, cfg, loss=kl_to_clean, init=init, route=route, scale=scale)


def adversarial_term(model, x, y, cfg, *, clean_logits, route=None, scale=1.0):
    """beta * KL(f(x) || f(x')) with x' crafted (and classified) through ``route``."""
    x_adv = trades_attack(model, x, y, cfg, clean_logits=clean_logits, route=route, scale=scale)
    with routed(model, route):
        logits_adv = model(x_adv)
    robust = F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(clean_logits, 1), reduction="batchmean")
    return cfg.options.beta * robust, logits_adv


def _loss(model, x, y, cfg) -> StepResult:
    logits = model(x)
    robust, logits_adv = adversarial_term(model, x, y, cfg, clean_logits=logits)
    return StepResult(F.cross_entropy(logits, y) + robust, logits_adv, y)


TRADES = Method("trades", _loss, adversarial=True, options=TradesOptions, adversarial_term=adversarial_term,
                forwards=lambda cfg: attack_forwards(cfg) + 2)  # clean and adversarial
