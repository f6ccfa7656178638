"""Norm shaping ("Achieving Both Model Accuracy and Robustness by Adversarial Training with Batch
Norm Shaping"): every training batch holds clean and adversarial samples at a fixed ratio n:1,
the clean part dominating, so that batch statistics stay close to those of clean batches; the
model uses batch statistics in training and at inference (``pipeline.deploy``: mode ``shaping``,
each query grouped with clean reference images).

A batch of m images splits into a clean part of k = round(n m / (n + 1)) and an adversarial part
of m - k. The paper's training modes:

- ``ratio: 0`` is "adv. only": every sample adversarial (with the PGD base, PGD-AT itself);
- ``mode: training`` ("shaping in training"): the attack runs as usual, on a whole batch with its
  own batch statistics (the paper's Eq. 4); the training batch then holds the clean part and the
  adversarial part;
- ``mode: attack_and_training`` ("shaping in attack + training", the paper's method): the clean
  part stays in the batch, unchanged, through every attack step, and only the adversarial part is
  perturbed, under the statistics of the mixed batch and with the loss of the whole batch (Eq. 5).

Readings of the paper's open points (docs/norm-shaping.md says why each default):

- ``distinct`` (default on): the adversarial part is made from other images than the clean part
  (Eq. 5 splits the batch X into X[0:k] and X[k:m]); off: from the first m - k clean images, so
  the batch holds clean and adversarial versions of the same images.
- ``loss_on``: ``all`` (default: the model is trained on the mixed batch, Eq. 5's min step) or
  ``adversarial`` (only the adversarial part's loss; its statistics are still the mixed batch's).
- ``training_attack`` for ``mode: training``: ``whole_batch`` (default: "the entire batch is
  perturbed", and the adversarial part keeps its perturbed images) or ``adversarial_part`` (only
  the adversarial part is attacked, as a batch of its own).
- ``base: trades``: TRADES' KL-maximizing attack; the paper drops the KL term from the training
  loss (``kl: false``, default) and keeps cross-entropy; ``kl: true`` adds
  ``beta * KL(f(x) || f(x'))`` of the adversarial part against its clean images.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.methods.base import Method, StepResult, attack_forwards
from pipeline.schema import Section


class NormShapingOptions(Section):
    base: Literal["pgd_at", "trades"] = "pgd_at"
    ratio: Annotated[int, Field(ge=0)] = 3  # clean samples per adversarial one (n:1); 0: adversarial only
    mode: Literal["attack_and_training", "training"] = "attack_and_training"
    distinct: bool = True
    loss_on: Literal["all", "adversarial"] = "all"
    training_attack: Literal["whole_batch", "adversarial_part"] = "whole_batch"
    kl: bool = False
    beta: Annotated[float, Field(ge=0.0)] = 6.0  # TRADES' KL weight when ``kl``
    init_std: Annotated[float, Field(ge=0.0)] = 0.001  # TRADES' attack start


def split(m: int, ratio: int) -> int:
    """The size k of the clean part of a batch of m at n:1."""
    return round(ratio * m / (ratio + 1))


def compose(x: torch.Tensor, y: torch.Tensor, ratio: int, distinct: bool):
    """The batch the step trains on, before the attack: images, labels, and the mask of the
    samples the attack perturbs (the adversarial part, last)."""
    m = len(x)
    k = split(m, ratio)
    if distinct or k == 0:
        xs, ys = x, y
    else:  # the adversarial part: perturbed copies of the first m - k clean images
        xs, ys = torch.cat([x[:k], x[:m - k]]), torch.cat([y[:k], y[:m - k]])
    mask = torch.zeros(m, dtype=torch.bool, device=x.device)
    mask[k:] = True
    return xs, ys, mask


def _pgd(model, x, y, cfg, perturb: torch.Tensor | None) -> torch.Tensor:
    """PGD (or TRADES' KL attack) on ``x`` as one batch; ``perturb`` masks the samples it moves."""
    from pipeline.attacks.pgd import pgd
    from pipeline.deploy import Deployed
    from pipeline.methods.trades import kl_to_clean

    o, a = cfg.options, cfg.attack
    f = Deployed(model, "batch" if cfg.attack_bn == "train" else "eval")
    targets, loss, init = y, a.loss, None
    if o.base == "trades":  # maximize KL to the clean prediction, from a small Gaussian start
        with torch.no_grad():
            targets = F.softmax(f(x), 1)
        loss, init = kl_to_clean, o.init_std * torch.randn_like(x)
    return pgd(f, x, targets, eps=a.eps, step_size=a.step_size, steps=a.steps,
               random_start=a.random_start and init is None, loss=loss, init=init, perturb=perturb,
               restarts=a.restarts if perturb is None else 1)


def _attack(model, x, y, cfg, mask: torch.Tensor) -> torch.Tensor:
    """The batch with its adversarial part (``mask``) attacked as the mode says."""
    o = cfg.options
    if o.ratio == 0:
        return _pgd(model, x, y, cfg, None)
    if o.mode == "attack_and_training":  # Eq. 5: the clean part rides along, unchanged
        return _pgd(model, x, y, cfg, mask)
    out = x.clone()
    if o.training_attack == "adversarial_part":
        out[mask] = _pgd(model, x[mask], y[mask], cfg, None)
    else:  # Eq. 4 on the whole batch; only the adversarial part keeps its perturbed images
        out[mask] = _pgd(model, x, y, cfg, None)[mask]
    return out


def _loss(model, x, y, cfg) -> StepResult:
    o = cfg.options
    xs, ys, mask = compose(x, y, o.ratio, o.distinct)
    batch = _attack(model, xs, ys, cfg, mask)
    logits = model(batch)
    if o.loss_on == "adversarial":
        loss = F.cross_entropy(logits[mask], ys[mask])
    else:
        loss = F.cross_entropy(logits, ys)
    if o.base == "trades" and o.kl:
        clean = model(xs[mask])
        loss = loss + o.beta * F.kl_div(F.log_softmax(logits[mask], 1), F.softmax(clean, 1), reduction="batchmean")
    return StepResult(loss, logits[mask], ys[mask])


def _check(cfg) -> None:
    """The attack shapes the adversarial part through the mixed batch's statistics (Eq. 5; Eq. 4
    attacks a whole batch on its own statistics): under running statistics the clean part would
    not touch the adversarial examples at all."""
    if cfg.attack_bn != "train":
        raise ValueError("attack_bn: norm_shaping crafts on the training batch's statistics (the paper's "
                         "Eq. 4-5); with running statistics its clean part does nothing; set attack_bn: train")


NORM_SHAPING = Method("norm_shaping", _loss, adversarial=True, options=NormShapingOptions,
                      deployment={"mode": "shaping"}, check=_check,
                      forwards=lambda cfg: attack_forwards(cfg) + (2 if cfg.options.base == "trades" else 1))
