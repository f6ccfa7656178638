"""Which parameters a BN-only fine-tuning trains ("On Fragile Features and Batch Normalization in
Adversarial Training"; "Adversarial Masking", Section 3).

- ``bn``: BN affine parameters (and, in train mode, the running statistics); all else frozen.
- ``bn_stats``: no parameter; only the running statistics are re-estimated by train-mode passes.
- ``bn_logits_conv1``: BN affine parameters plus the classifier (``fc``) and the stem (``conv1``).

The loss is the method's (``pgd_at`` for adversarial fine-tuning, ``standard`` for clean), and
``pipeline.train`` runs the loop: fine-tuning is a parameter selection, not another loop.
"""

from __future__ import annotations

from torch import nn

from pipeline.norms import require_batch_norms, routed_norms


def bn_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Affine parameters of every BN (a routed norm's branches included, and the masking matrices
    of a norm that owns its affine parameters, RobMask's); a model without BN is an error, never
    an empty selection that trains nothing."""
    params = [p for _, m in require_batch_norms(model, "BN fine-tuning") for p in (m.weight, m.bias) if p is not None]
    return params + [p for m in routed_norms(model) if hasattr(m, "affine_parameters") for p in m.affine_parameters()]


def trainable_parameters(model: nn.Module, trainable: str) -> list[nn.Parameter]:
    if trainable == "bn_stats":
        return []
    params = bn_parameters(model)
    if trainable == "bn_logits_conv1":
        params += list(model.conv1.parameters()) + list(model.fc.parameters())
    elif trainable != "bn":
        raise ValueError(f"unknown trainable set {trainable!r}; known: bn, bn_stats, bn_logits_conv1")
    return params


def freeze_all_but(model: nn.Module, trainable: str) -> list[nn.Parameter]:
    """Set ``requires_grad`` so that only the chosen parameters train; returns them."""
    keep = trainable_parameters(model, trainable)
    ids = {id(p) for p in keep}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    return keep


def share_trained(model: nn.Module, trainable: str) -> dict[str, float]:
    """The poster's %prms: trained parameters over all parameters (BN STATS counts the BN ones
    it re-estimates, shown in parentheses in the poster)."""
    total = sum(p.numel() for p in model.parameters())
    counted = bn_parameters(model) if trainable == "bn_stats" else trainable_parameters(model, trainable)
    n = sum(p.numel() for p in counted)
    return {"trained_params": n if trainable != "bn_stats" else 0, "counted_params": n, "total_params": total,
            "percent_params": 100.0 * n / total}
