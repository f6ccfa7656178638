"""Converting a network's norms (and inserting blocks), by name, so a checkpoint can replay it.

``convert_norms(model, "multi", k=2)`` replaces every ``BatchNorm2d`` by a routed norm that starts
as an exact copy of it (statistics and affine parameters, as timm's ``convert_splitbn_model``
does), so a trained model can be converted and fine-tuned, and its outputs do not change until
training moves them. A model's spec records each conversion as ``{"kind": ..., **options}``;
``replay`` applies that list to a freshly built network before its state dict is loaded.

Adding a conversion: a function ``(model, **options) -> model`` registered in ``CONVERSIONS``.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from pipeline.norms.multi import MultiBatchNorm
from pipeline.norms.routing import RoutedNorm


def replace_batch_norms(model: nn.Module, make: Callable[[nn.BatchNorm2d], nn.Module], kind: str) -> nn.Module:
    """Replace every plain ``BatchNorm2d`` of ``model`` by ``make(bn)``, in place. The BNs a
    routed norm keeps its statistics in are its own business and stay."""
    count = 0

    def walk(module: nn.Module) -> None:
        nonlocal count
        for name, child in module.named_children():
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, name, make(child))
                count += 1
            elif not isinstance(child, RoutedNorm):
                walk(child)

    walk(model)
    if not count:
        raise ValueError(f"conversion {kind!r}: the model has no BatchNorm2d to convert")
    return model


def to_multi(model: nn.Module, k: int = 2) -> nn.Module:
    """Every BN -> ``k`` BN branches (AdvProp's main + auxiliary BN at k = 2; AFA stage I)."""
    return replace_batch_norms(model, lambda bn: MultiBatchNorm.from_bn(bn, k), "multi")


def select_branches(model: nn.Module, branches: list[int]) -> nn.Module:
    """Keep only ``branches`` (in that order; negative counts from the last, as in Python) of
    every multi-branch BN and drop the rest: the auxiliary BNs of an AdvProp model once it deploys
    on its main BN (``branches: [0]``, which leaves plain ``BatchNorm2d`` layers), or AFA stage
    II's BN_0 and BN_K-1 (``branches: [0, -1]``, whatever K stage I had)."""
    if not branches:
        raise ValueError("conversion 'select': give the branches to keep")
    count = 0

    def walk(module: nn.Module) -> None:
        nonlocal count
        for name, child in module.named_children():
            if isinstance(child, MultiBatchNorm):
                if max(branches) >= child.k or min(branches) < -child.k:
                    raise ValueError(f"conversion 'select': branches {branches} out of range for {child.k} branches")
                index = [b % child.k for b in branches]
                if len(set(index)) != len(index):
                    raise ValueError(f"conversion 'select': branches must be distinct, got {branches} of {child.k}")
                kept = [child.branches[b] for b in index]
                setattr(module, name, kept[0] if len(kept) == 1 else MultiBatchNorm(kept))
                count += 1
            else:
                walk(child)

    walk(model)
    if not count:
        raise ValueError("conversion 'select': the model has no multi-branch BN")
    return model


def to_strength(model: nn.Module, rank: int = 2, stat_bins: int = 1, relu: bool = False,
                init_std: float = 0.0) -> nn.Module:
    """Every BN -> RobMask's strength-conditioned BN (``pipeline.norms.strength``)."""
    from pipeline.norms.strength import StrengthBatchNorm

    return replace_batch_norms(model, lambda bn: StrengthBatchNorm.from_bn(bn, rank, stat_bins, relu, init_std),
                               "robmask")


def to_group(model: nn.Module, groups: int = 32) -> nn.Module:
    """Every BN -> GroupNorm with the BN's affine parameters (the statistics have no counterpart)."""
    import math

    def make(bn: nn.BatchNorm2d) -> nn.GroupNorm:
        c = bn.num_features
        gn = nn.GroupNorm(math.gcd(groups, c), c, eps=bn.eps, affine=bn.affine).to(bn.weight.device)
        if bn.affine:
            gn.weight.data.copy_(bn.weight.data)
            gn.bias.data.copy_(bn.bias.data)
        return gn

    return replace_batch_norms(model, make, "group")


def insert_denoise(model: nn.Module, after: list[int], filter: str = "nonlocal_gaussian",
                   block: str = "full") -> nn.Module:
    """A feature-denoising block (thesis, Ch. 4) at the end of each residual stage in ``after``
    (``block``: its parts, ``pipeline.models.denoise.DenoiseBlock``)."""
    from pipeline.models.denoise import DenoiseBlock

    stages = getattr(model, "layers", None)
    if not isinstance(stages, nn.Sequential):
        raise ValueError(f"conversion 'denoise': {type(model).__name__} has no residual stages (model.layers)")
    for i in after:
        if not 0 <= i < len(stages):
            raise ValueError(f"conversion 'denoise': stage {i} out of range; the model has {len(stages)} stages")
        channels = [m.out_channels for m in stages[i].modules() if isinstance(m, nn.Conv2d)][-1]
        stages[i].append(DenoiseBlock(channels, filter, block).to(next(model.parameters()).device))
    return model


def to_fused(model: nn.Module, **options) -> nn.Module:
    """Two-branch BNs -> AFA's fused norms driven by a weight generator (``pipeline.norms.fused``)."""
    from pipeline.norms.fused import insert_fusion

    return insert_fusion(model, **options)


CONVERSIONS: dict[str, Callable[..., nn.Module]] = {
    "multi": to_multi,
    "select": select_branches,
    "robmask": to_strength,
    "afa": to_fused,
    "group": to_group,
    "denoise": insert_denoise,
}


def convert_norms(model: nn.Module, kind: str, **options) -> nn.Module:
    """Apply the conversion ``kind`` with ``options`` to ``model`` in place and return it."""
    if kind not in CONVERSIONS:
        raise ValueError(f"unknown conversion {kind!r}; known: {', '.join(sorted(CONVERSIONS))}")
    try:
        return CONVERSIONS[kind](model, **options)
    except TypeError as err:
        raise ValueError(f"conversion {kind!r}: {err}") from None


def replay(model: nn.Module, conversions: list[dict]) -> nn.Module:
    """Apply a spec's recorded conversions, in order."""
    for step in conversions:
        step = dict(step)
        convert_norms(model, step.pop("kind"), **step)
    return model
