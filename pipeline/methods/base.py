"""What a training method is: its typed options, the norm conversions it needs, the loss of one
batch, which parameters it trains and how the models it trains are deployed by default.

``pipeline.train`` owns the loop; a method module is its loss plus one ``Method(...)`` line, and
the registry in ``pipeline/methods/__init__.py`` lists it.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, NamedTuple

import torch
from torch import nn

from pipeline.attacks.pgd import pgd
from pipeline.deploy import Deployed
from pipeline.norms import norm_route
from pipeline.schema import NoOptions, Section

if TYPE_CHECKING:
    from pipeline.config import TrainConfig


class StepResult(NamedTuple):
    loss: torch.Tensor  # scalar to minimize
    logits: torch.Tensor  # the logits the accuracy of the step is read from
    targets: torch.Tensor


def _no_conversions(cfg: "TrainConfig") -> list[dict]:
    return []


def attack_forwards(cfg: "TrainConfig") -> int:
    """Forward passes of one crafting of the training attack: its steps times its restarts (0
    without an attack)."""
    return cfg.attack.steps * cfg.attack.restarts if cfg.attack else 0


def _attack_then_one_forward(cfg: "TrainConfig") -> int:
    return attack_forwards(cfg) + 1


# The adversarial part of a method's loss, for composite methods that apply a base method per BN
# branch (AFA's stage I): ``(model, x, y, cfg, clean_logits=, route=, scale=) -> (loss, adv_logits)``,
# with the examples crafted and classified through ``route`` at ``scale`` times the attack's eps.
AdversarialTerm = Callable[..., tuple[torch.Tensor, torch.Tensor]]
Params = list[nn.Parameter] | list[dict]  # parameters, or optimizer parameter groups


@dataclass(frozen=True)
class Method:
    name: str
    batch_loss: Callable[[nn.Module, torch.Tensor, torch.Tensor, "TrainConfig"], StepResult]
    adversarial: bool = False  # needs ``attack`` in its config
    options: type[Section] = NoOptions  # the schema of ``cfg.options``
    # Conversions (``pipeline.norms.CONVERSIONS``) applied before training, recorded in the spec.
    conversions: Callable[["TrainConfig"], list[dict]] = _no_conversions
    # The parameters to optimize (or parameter groups, e.g. without weight decay); None: every
    # parameter that requires grad.
    trainable: Callable[[nn.Module, "TrainConfig"], Params] | None = None
    # How its models are deployed unless params say otherwise (``pipeline.deploy.Deployed`` kwargs);
    # None keeps the deployment of the model it trains (plain eval for a new one).
    deployment: dict | None = None
    # Its adversarial term alone, when a composite method may apply it per branch (AFA's bases).
    adversarial_term: AdversarialTerm | None = None
    # Settings the method needs beyond its options: raises ValueError("key: why") for a config it
    # cannot train with (checked when params load, before any work).
    check: Callable[["TrainConfig"], None] | None = None
    # Forward passes one training step makes, as the papers count them: every step of every
    # crafting, then one per loss input (default: one crafting, one batch). tests/test_perf.py
    # counts them on the real step; the training stages weigh their items by them.
    forwards: Callable[["TrainConfig"], int] = _attack_then_one_forward
    # Its loss reads ``cfg.label_smoothing`` (else a non-zero value is an error at load).
    label_smoothing: bool = False


def routed(model: nn.Module, route: dict | None):
    """``norm_route(model, **route)``, or nothing for no route."""
    return norm_route(model, **route) if route else nullcontext()


def only(model: nn.Module, params: list[nn.Parameter]) -> list[nn.Parameter]:
    """Freeze every parameter of ``model`` but ``params`` (no gradient is computed for the rest);
    returns ``params``."""
    keep = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return params


def craft(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: "TrainConfig", *,
          loss=None, init: torch.Tensor | None = None, route: dict | None = None,
          scale: float | torch.Tensor = 1.0, step_scale: float | torch.Tensor | None = None) -> torch.Tensor:
    """Training-time adversarial examples from ``cfg.attack`` (its loss unless ``loss`` is given).

    BN runs in the mode ``cfg.attack_bn`` says (batch statistics by default, as in Madry et al.'s
    training), and the crafting passes never touch the running statistics: only the update step
    that trains on the result does. ``init`` is a fixed starting perturbation (TRADES' small
    Gaussian noise) in place of the attack's random start; ``route`` a norm route to craft through;
    ``scale`` multiplies eps (one number, or one per sample), for methods that attack at a
    fraction of the attack's eps (AdvProp's extra auxiliary BNs, random strengths, AFA's
    branches); ``step_scale`` multiplies the step size (default: ``scale``, so the number of steps
    to cross the ball stays the same).
    """
    a = cfg.attack
    step_scale = scale if step_scale is None else step_scale
    f = Deployed(model, "batch" if cfg.attack_bn == "train" else "eval", route=route)
    return pgd(f, x, y, eps=a.eps * scale, step_size=a.step_size * step_scale, steps=a.steps,
               random_start=a.random_start and init is None, restarts=a.restarts,
               loss=a.loss if loss is None else loss, init=init)
