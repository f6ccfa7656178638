"""What a training method is: a norm conversion of the model and the loss of one batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, NamedTuple

import torch
from torch import nn

from pipeline.attacks import pgd
from pipeline.deploy import Deployed

if TYPE_CHECKING:
    from pipeline.config import TrainConfig


class StepResult(NamedTuple):
    loss: torch.Tensor  # scalar to minimize
    logits: torch.Tensor  # the logits the accuracy of the step is read from
    targets: torch.Tensor


def _keep(model: nn.Module, cfg: "TrainConfig") -> nn.Module:
    return model


@dataclass(frozen=True)
class Method:
    name: str
    adversarial: bool  # needs ``attack`` in its config
    batch_loss: Callable[[nn.Module, torch.Tensor, torch.Tensor, "TrainConfig"], StepResult]
    convert: Callable[[nn.Module, "TrainConfig"], nn.Module] = _keep  # BN surgery before training


def craft(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: "TrainConfig", loss="ce") -> torch.Tensor:
    """Training-time adversarial examples from ``cfg.attack``.

    BN runs in the mode ``cfg.attack_bn`` says (batch statistics by default, as in Madry et al.'s
    training), and the crafting passes never touch the running statistics: only the update step
    that trains on the result does.
    """
    a = cfg.attack
    f = Deployed(model, "batch" if cfg.attack_bn == "train" else "eval")
    return pgd(f, x, y, eps=a.eps, step_size=a.step_size, steps=a.steps,
               random_start=a.random_start, restarts=a.restarts, loss=loss)
