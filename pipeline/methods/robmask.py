"""RobMask ("Adversarial Masking: Towards Understanding Robustness Trade-off for Generalization",
Algorithm 1): every BN's rescaling is a low-rank map of the perturbation strength
(``pipeline.norms.strength``), trained on PGD examples of a random strength per mini-batch.

Each step draws p ~ U(0, 1), crafts PGD at eps = p * eps_max (the attack's eps) through the
masking u(p), and trains the network and the masking matrices W, W' on those examples together.
Readings of the paper's open points (``docs/strength-norms.md`` says why each default):

- ``clean_pass`` (default on): also the clean cross-entropy through u(0) in every step, the "two
  forward and one backward" passes the paper counts, and what makes AdvProp its special case
  (rank 2, p frozen at 1: the u(0) row is then the main BN, trained only by clean images). Off is
  Algorithm 1 as printed, where the u(0) row learns only from the small p of each epoch.
- ``step``: ``scaled`` (step = p * step_size: the same number of steps crosses the ball at every
  strength; the paper's step eps/5 read with the batch's own eps) or ``max`` (eps_max / 5 always).
- ``relu``: a ReLU on the projected gamma (the introduction mentions "a linear projection layer
  together with ReLU"; Algorithm 1 has none; default off).
- ``stat_bins``: running statistics shared by every strength (1) or one set per strength bin.
- ``init_std`` (rows of W beyond the first start as the BN's gamma plus this noise; default 0:
  every row the BN's, so a model converted from BN matches it at every p) and ``decay_masks``
  (weight decay on W and W', default on: the paper decays all parameters).
- ``per_sample``: one strength per sample instead of per mini-batch (off: Algorithm 1).

Deploys at p = 0, the clean masking (the paper's Table 3); any p is a view (``route: {strength: p}``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.methods.base import Method, StepResult, attack_forwards, craft
from pipeline.norms import StrengthBatchNorm, norm_route, routed_norms
from pipeline.schema import PositiveInt, Section


class RobMaskOptions(Section):
    rank: Annotated[int, Field(ge=2)] = 2  # k: rows of W and W' (the paper's k = 2)
    clean_pass: bool = True
    step: Literal["scaled", "max"] = "scaled"
    relu: bool = False
    stat_bins: PositiveInt = 1
    init_std: Annotated[float, Field(ge=0.0)] = 0.0
    decay_masks: bool = True
    per_sample: bool = False


def _conversions(cfg) -> list[dict]:
    o = cfg.options
    return [{"kind": "robmask", "rank": o.rank, "stat_bins": o.stat_bins, "relu": o.relu, "init_std": o.init_std}]


def _loss(model, x, y, cfg) -> StepResult:
    o = cfg.options
    p = torch.rand(len(x), device=x.device) if o.per_sample else torch.rand(()).item()
    x_adv = craft(model, x, y, cfg, route={"strength": p}, scale=p, step_scale=p if o.step == "scaled" else 1.0)
    with norm_route(model, strength=p):
        logits = model(x_adv)
    loss = F.cross_entropy(logits, y)
    if o.clean_pass:
        with norm_route(model, strength=0.0):
            loss = loss + F.cross_entropy(model(x), y)
    return StepResult(loss, logits, y)


def _trainable(model, cfg) -> list[dict]:
    """Every parameter; the masking matrices without weight decay unless ``decay_masks``."""
    masks = [p for m in routed_norms(model) if isinstance(m, StrengthBatchNorm) for p in m.affine_parameters()]
    ids = {id(p) for p in masks}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    if cfg.options.decay_masks:
        return [{"params": rest + masks}]
    return [{"params": rest}, {"params": masks, "weight_decay": 0.0}]


ROBMASK = Method("robmask", _loss, adversarial=True, options=RobMaskOptions, conversions=_conversions,
                 trainable=_trainable, deployment={"mode": "eval", "route": {"strength": 0.0}},
                 forwards=lambda cfg: attack_forwards(cfg) + 1 + int(cfg.options.clean_pass))
