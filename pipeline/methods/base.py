"""What a training method is: its typed options, the norm conversions it needs, the loss of one
batch, which parameters it trains and how the models it trains are deployed by default.

``pipeline.train`` owns the loop; a method module is its loss plus one ``Method(...)`` line, and
the registry in ``pipeline/methods/__init__.py`` lists it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, NamedTuple

import torch
from torch import nn

from pipeline.attacks.pgd import pgd
from pipeline.deploy import Deployed
from pipeline.schema import NoOptions, Section

if TYPE_CHECKING:
    from pipeline.config import TrainConfig


class StepResult(NamedTuple):
    loss: torch.Tensor  # scalar to minimize
    logits: torch.Tensor  # the logits the accuracy of the step is read from
    targets: torch.Tensor


def _no_conversions(cfg: "TrainConfig") -> list[dict]:
    return []


@dataclass(frozen=True)
class Method:
    name: str
    batch_loss: Callable[[nn.Module, torch.Tensor, torch.Tensor, "TrainConfig"], StepResult]
    adversarial: bool = False  # needs ``attack`` in its config
    options: type[Section] = NoOptions  # the schema of ``cfg.options``
    # Conversions (``pipeline.norms.CONVERSIONS``) applied before training, recorded in the spec.
    conversions: Callable[["TrainConfig"], list[dict]] = _no_conversions
    # The parameters to optimize; None: every parameter that requires grad.
    trainable: Callable[[nn.Module, "TrainConfig"], list[nn.Parameter]] | None = None
    # How its models are deployed unless params say otherwise (``pipeline.deploy.Deployed`` kwargs).
    deployment: dict = field(default_factory=lambda: {"mode": "eval"})


def craft(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: "TrainConfig", *,
          loss=None, init: torch.Tensor | None = None, route: dict | None = None,
          scale: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Training-time adversarial examples from ``cfg.attack`` (its loss unless ``loss`` is given).

    BN runs in the mode ``cfg.attack_bn`` says (batch statistics by default, as in Madry et al.'s
    training), and the crafting passes never touch the running statistics: only the update step
    that trains on the result does. ``init`` is a fixed starting perturbation (TRADES' small
    Gaussian noise) in place of the attack's random start; ``route`` a norm route to craft through;
    ``scale`` multiplies eps and step size (one number, or one per sample), for methods that
    attack at a fraction of the attack's eps (AdvProp's extra auxiliary BNs, random strengths).
    """
    a = cfg.attack
    f = Deployed(model, "batch" if cfg.attack_bn == "train" else "eval", route=route)
    return pgd(f, x, y, eps=a.eps * scale, step_size=a.step_size * scale, steps=a.steps,
               random_start=a.random_start and init is None, restarts=a.restarts,
               loss=a.loss if loss is None else loss, init=init)
