"""Wide ResNets (Zagoruyko and Komodakis, "Wide Residual Networks"): pre-activation ResNets with
three stages of width 16k, 32k, 64k after a 16-channel stem."""

from __future__ import annotations

from functools import partial

from pipeline.models.preact_resnet import PreActResNet


def wide_resnet(depth: int, widen: int, **kw) -> PreActResNet:
    if (depth - 4) % 6:
        raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
    n = (depth - 4) // 6
    return PreActResNet((16 * widen, 32 * widen, 64 * widen), (n, n, n), stem=16, **kw)


def wrn32_10(**kw) -> PreActResNet:
    """Madry et al.'s CIFAR-10 "W32-10" (the norm-shaping paper's WRN-32-10): five pre-activation
    blocks per stage, widths 160/320/640; its depth counts 6n + 2 with n = 5."""
    return PreActResNet((160, 320, 640), (5, 5, 5), stem=16, **kw)


wrn28_10 = partial(wide_resnet, 28, 10)
wrn16_8 = partial(wide_resnet, 16, 8)
wrn34_10 = partial(wide_resnet, 34, 10)
