"""The clean-image ratio of the thesis (Sec. 6.4.1, Fig. 6.1): every adversarial example of the
batch plus a fraction of their clean counterparts, all in one forward through the same BN, with
the cross-entropy averaged over all of them. ``clean_fraction`` 0 is PGD-AT ("100% adv + 0%
clean"), 1 the canonical mix of Goodfellow et al. ("100% adv + 100% clean"); the thesis finds
robustness falls as the fraction grows, and blames the mixture's BN statistics (Sec. 6.4.2).

The clean part is the first ``round(fraction * batch)`` images of the (shuffled) batch. ``alp``
adds adversarial logit pairing on that part, ``alp * mean ||z_clean - z_adv||^2`` ("100% adv +
100% clean, ALP" of Figs. 6.2/6.3 with one BN; ``advprop``'s ``alp`` is the MBN version).
"""

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from typing import Annotated

from pipeline.methods.base import Method, StepResult, craft
from pipeline.schema import Section


class CleanRatioOptions(Section):
    clean_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0  # share of the clean counterparts kept
    alp: Annotated[float, Field(ge=0.0)] = 0.0  # adversarial logit pairing weight on the clean part (0: off)

    @model_validator(mode="after")
    def _pairs_to_pair(self) -> "CleanRatioOptions":
        if self.alp and not self.clean_fraction:
            raise ValueError("alp: logit pairing needs clean images in the batch (clean_fraction > 0)")
        return self


def _loss(model, x, y, cfg) -> StepResult:
    x_adv = craft(model, x, y, cfg)
    m = round(cfg.options.clean_fraction * len(x))
    inputs, targets = torch.cat([x_adv, x[:m]]), torch.cat([y, y[:m]])
    logits = model(inputs)
    loss = F.cross_entropy(logits, targets)
    if cfg.options.alp and m:
        loss = loss + cfg.options.alp * (logits[len(x):] - logits[:m]).pow(2).sum(1).mean()
    return StepResult(loss, logits[:len(x)], y)


CLEAN_RATIO = Method("clean_ratio", _loss, adversarial=True, options=CleanRatioOptions)
