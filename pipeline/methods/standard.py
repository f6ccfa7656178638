"""Standard training: cross-entropy on clean images."""

import torch.nn.functional as F

from pipeline.methods.base import Method, StepResult


def _loss(model, x, y, cfg) -> StepResult:
    logits = model(x)
    return StepResult(F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing), logits, y)


STANDARD = Method("standard", _loss, label_smoothing=True)
