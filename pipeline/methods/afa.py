"""AFA ("Adaptive Feature Alignment for Adversarial Training"), both stages.

Stage I (``afa``, the paper's Algorithm 1): every BN becomes K branches, branch k for attack
strength xi_k (xi_0 = 0, xi_K-1 = eps_max, the attack's eps). Each step trains the clean
cross-entropy through branch 0 plus, for every k > 0, the base method's adversarial term
(PGD-AT, TRADES, MART or IAT: ``pipeline.methods.*.adversarial_term``) on examples crafted
through branch k at eps xi_k, Eq. 3. One clean forward and one forward per adversarial branch
(K in all, besides the attacks' own passes). The paper does not give xi: ``strengths: linear``
(default) spaces them evenly, so the K of its ablation {2, 3, 5, 9} give nested grids;
``geometric`` halves from eps_max (K = 5: eps_max x {0, 1/8, 1/4, 1/2, 1}, the paper's test grid
{0, 1, 2, 4, 8}/255 at 8/255); ``xi`` lists them outright.
TRADES' and MART's KL terms compare each branch's adversarial prediction with the clean
prediction of branch 0 (the one clean forward).

Stage II (``afa_fusion``, fine-tuning a stage-I model): keeps BN_0 and BN_K-1 (``select``),
fuses them with weights from a weight generator (``pipeline.norms.fused``), freezes every other
parameter and every running statistic of the network, and trains only the generator with the
cross-entropy of examples of random strength, crafted against the fused model as it deploys
(generator included). ``levels`` draws each sample's strength from a list of fractions of eps_max
instead of U(0, 1) (e.g. stage I's xi; the paper only says "random").
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationError, model_validator

from pipeline.methods.base import Method, StepResult, attack_forwards, craft, only
from pipeline.norms import generators, norm_route, running_stats
from pipeline.schema import Eps, Fraction, PositiveInt, Section, first_error

BASES = ("pgd_at", "trades", "mart", "iat")


class AfaOptions(Section):
    k: Annotated[int, Field(ge=2)] = 5  # BN branches
    base: Literal[BASES] = "pgd_at"  # the adversarial training method of every branch k > 0
    base_options: Any = {}  # that method's own options (TRADES' beta, ...)
    strengths: Literal["linear", "geometric"] = "linear"
    xi: list[Eps] | None = None  # explicit strengths, xi_0 = 0 < ... < xi_K-1 (overrides ``strengths``)

    @model_validator(mode="after")
    def _base_and_strengths(self) -> "AfaOptions":
        from pipeline.methods import METHODS

        schema = METHODS[self.base].options
        raw = self.base_options.model_dump() if isinstance(self.base_options, Section) else self.base_options
        try:
            object.__setattr__(self, "base_options", schema.model_validate(raw or {}))
        except ValidationError as err:
            where, msg = first_error(err)
            raise ValueError(f"base_options.{where}: {msg} for base {self.base!r}") from None
        if self.xi is not None:
            if len(self.xi) != self.k:
                raise ValueError(f"xi: give one strength per branch ({self.k}), got {len(self.xi)}")
            if self.xi[0] != 0 or any(b <= a for a, b in zip(self.xi, self.xi[1:])):
                raise ValueError(f"xi: must start at 0 and increase, got {self.xi}")
        return self


def fractions(cfg) -> list[float]:
    """xi_k / eps_max of branches 0..K-1."""
    o, k = cfg.options, cfg.options.k
    if o.xi is not None:
        return [x / o.xi[-1] for x in o.xi]
    if o.strengths == "geometric":
        return [0.0] + [2.0 ** -(k - 1 - i) for i in range(1, k)]
    return [i / (k - 1) for i in range(k)]


def _loss(model, x, y, cfg) -> StepResult:
    from pipeline.methods import METHODS

    o = cfg.options
    base = METHODS[o.base]
    base_cfg = cfg.model_copy(update={"options": o.base_options})
    eps_max = o.xi[-1] if o.xi is not None else cfg.attack.eps
    if o.xi is not None:  # the attack's eps scales to xi_K-1
        base_cfg = base_cfg.model_copy(update={"attack": cfg.attack.model_copy(
            update={"eps": eps_max, "step_size": cfg.attack.step_size * eps_max / cfg.attack.eps})})
    with norm_route(model, branch=0):
        clean = model(x)
    loss = F.cross_entropy(clean, y)
    for branch, frac in enumerate(fractions(cfg)):
        if branch == 0:
            continue
        term, _ = base.adversarial_term(model, x, y, base_cfg, clean_logits=clean, route={"branch": branch},
                                        scale=frac)
        loss = loss + term
    return StepResult(loss, clean, y)


AFA = Method("afa", _loss, adversarial=True, options=AfaOptions,
             conversions=lambda cfg: [{"kind": "multi", "k": cfg.options.k}],
             deployment={"mode": "eval", "route": {"branch": 0}},
             # branches 1..K-1 each crafted and trained, branch 0 clean
             forwards=lambda cfg: (cfg.options.k - 1) * attack_forwards(cfg) + cfg.options.k)


# --------------------------------------------------------------------------------------------
# stage II


class AfaFusionOptions(Section):
    # where the generator reads: the stem convolution's output, before every BN (every BN fused, Eq. 1-2),
    # or the output of residual stage k (the norms before it run ``before``)
    read_after: Literal["stem"] | Annotated[int, Field(ge=0)] = "stem"
    weights: Literal["scalar", "per_layer", "per_channel"] = "scalar"
    before: Fraction = 1.0  # W0 of the norms before the generator (1: BN_0)
    hidden: PositiveInt | None = None  # generator width (None: the channels it reads)
    levels: list[Fraction] | None = None  # strengths drawn from these fractions of eps_max (None: U(0, 1))


def _fusion_conversions(cfg) -> list[dict]:
    o = cfg.options
    return [{"kind": "select", "branches": [0, -1]},
            {"kind": "afa", "read_after": o.read_after, "weights": o.weights, "before": o.before, "hidden": o.hidden}]


def _strengths(n: int, cfg, device) -> torch.Tensor:
    levels = cfg.options.levels
    if levels is None:
        return torch.rand(n, device=device)
    return torch.tensor(levels, device=device)[torch.randint(len(levels), (n,), device=device)]


def _fusion_loss(model, x, y, cfg) -> StepResult:
    p = _strengths(len(x), cfg, x.device)
    x_adv = craft(model, x, y, cfg, scale=p)
    with running_stats(model, besides=tuple(generators(model))):  # the frozen network keeps its statistics
        logits = model(x_adv)
    return StepResult(F.cross_entropy(logits, y), logits, y)


def _generator_only(model, cfg) -> list:
    gens = generators(model)
    if not gens:
        raise ValueError("afa_fusion: the model has no weight generator")
    return only(model, [p for g in gens for p in g.parameters()])


def _check_fusion(cfg) -> None:
    if cfg.attack_bn != "eval":
        raise ValueError("attack_bn: afa_fusion attacks the fused model as it deploys; set attack_bn: eval")
    if getattr(cfg, "trainable", "all") != "all":
        raise ValueError("trainable: afa_fusion trains its weight generator alone; set trainable: all")


AFA_FUSION = Method("afa_fusion", _fusion_loss, adversarial=True, options=AfaFusionOptions,
                    conversions=_fusion_conversions, trainable=_generator_only, check=_check_fusion,
                    deployment={"mode": "eval", "route": {}})
