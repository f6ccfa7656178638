"""AFA's stage II ("Adaptive Feature Alignment for Adversarial Training", Sec. 4.2): two BN
branches fused by weights that a small network predicts from the input's own features.

Every two-branch BN (BN_0 for clean inputs, BN_K-1 for the strongest attack, kept from stage I by
``select``) becomes a :class:`FusedBatchNorm`: ``W0 * BN_0(x) + (1 - W0) * BN_K-1(x)``. A
:class:`WeightGenerator` sits at the end of one residual stage (``read_after``), passes that
stage's features on unchanged, and predicts the weights of every fused norm after it from them
(Conv-BN-ReLU twice, global average pooling, Linear-ReLU, Linear, sigmoid: the paper's Fig. 5).

Readings the paper leaves open, as options of the ``afa`` conversion:

- ``read_after``: where the generator reads. ``stem`` (default): the stem convolution's output,
  before the first BN, so that every BN of the network is fused as Eq. 1-2 write it; the stem is
  the one place that comes before every BN, and one generator keeps Fig. 5's design (a
  generator per BN reading its own input would be 25 generators in WRN-28-10). A number k: the
  output of residual stage k, the norms before it running ``before`` (stage 0 leaves 8 of 25 BNs
  of WRN-28-10 and 4 of 13 of WRN-16-8 unfused);
- ``weights``: ``scalar`` (one W0 per sample for every fused layer, the paper's Eq. 2), ``per_layer``
  (one per fused layer) or ``per_channel`` (one per channel of every fused layer);
- ``before``: the W0 of the norms before the generator, which cannot depend on its output:
  ``1.0`` (BN_0, the clean branch; default), ``0.0`` (BN_K-1) or anything between;
- ``hidden``: width of the generator (default: the channels it reads).

A route ``fusion`` (a number, one per sample, or one per sample and channel) overrides the
generator in every fused norm: ``fusion=1`` is exactly BN_0 and ``fusion=0`` exactly BN_K-1, which
is how the fused model is checked against its branches and how a fixed fusion weight is deployed.
The generator keeps its last output (``last``), so an attack can read it (AFA's adaptive attack).
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.norms.routing import RoutedNorm

WEIGHTS = ("scalar", "per_layer", "per_channel")


class FusedBatchNorm(RoutedNorm):
    default_route: dict = {}
    route_keys = ("fusion",)

    def __init__(self, branches: list[nn.BatchNorm2d], before: float = 1.0):
        super().__init__()
        if len(branches) != 2:
            raise ValueError(f"a fused norm fuses two BN branches, got {len(branches)}")
        self.branches = nn.ModuleList(branches)  # the names of a two-branch MultiBatchNorm: state dicts carry over
        self.before = before
        # set by conversion: where this norm's weights come from in the generator's output
        self._source: list = []  # [WeightGenerator] (a list, so the generator is not a submodule)
        self._slice = slice(0, 1)

    @property
    def num_features(self) -> int:
        return self.branches[0].num_features

    def weight_of(self, batch: int) -> float | torch.Tensor:
        """W0 for the next forward: the route's, else the generator's output, else ``before``."""
        if "fusion" in self.route:
            return self.routed("fusion", batch)
        if self._source and self._source[0].last is not None:
            w = self._source[0].last[:, self._slice]
            if len(w) != batch:
                raise ValueError(f"the weight generator saw a batch of {len(w)}, this norm one of {batch}")
            return w if w.shape[1] > 1 else w[:, 0]
        return self.before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_of(len(x))
        if not isinstance(w, torch.Tensor):
            if w == 1.0:
                return self.branches[0](x)
            if w == 0.0:
                return self.branches[1](x)
        else:
            w = w.to(x.dtype).reshape(len(x), -1, *([1] * (x.dim() - 2)))
        return w * self.branches[0](x) + (1 - w) * self.branches[1](x)

    def extra_repr(self) -> str:
        return f"{self.num_features}, before={self.before}"


class WeightGenerator(nn.Module):
    """Predicts the fusion weights W0 (in (0, 1)) of the fused norms after it; an identity on the
    feature path."""

    def __init__(self, channels: int, outputs: int, hidden: int | None = None):
        super().__init__()
        h = hidden or channels
        self.body = nn.Sequential(
            nn.Conv2d(channels, h, 3, padding=1, bias=False), nn.BatchNorm2d(h), nn.ReLU(inplace=True),
            nn.Conv2d(h, h, 3, padding=1, bias=False), nn.BatchNorm2d(h), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(h, h), nn.ReLU(inplace=True), nn.Linear(h, outputs))
        self.outputs = outputs
        self.last: torch.Tensor | None = None  # (B, outputs): W0 of the last forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last = torch.sigmoid(self.body(x))
        return x

    def extra_repr(self) -> str:
        return f"outputs={self.outputs}"


def generators(model: nn.Module) -> list[WeightGenerator]:
    return [m for m in model.modules() if isinstance(m, WeightGenerator)]


def fused_counts(model: nn.Module) -> tuple[int, int] | None:
    """(fused norms the weight generator drives, all fused norms) of an AFA stage-II model; None
    for a model without fused norms."""
    fused = [m for m in model.modules() if isinstance(m, FusedBatchNorm)]
    return (sum(bool(m._source) for m in fused), len(fused)) if fused else None


def insert_fusion(model: nn.Module, read_after: int | str = "stem", weights: str = "scalar", before: float = 1.0,
                  hidden: int | None = None) -> nn.Module:
    """The ``afa`` conversion: two-branch BNs -> fused norms, and a weight generator after the
    stem convolution (``stem``) or after stage ``read_after`` that drives the fused norms after it."""
    from pipeline.norms.multi import MultiBatchNorm

    if weights not in WEIGHTS:
        raise ValueError(f"conversion 'afa': weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if not 0.0 <= before <= 1.0:
        raise ValueError(f"conversion 'afa': before is a weight in [0, 1], got {before}")
    stages = getattr(model, "layers", None)
    if read_after == "stem":
        if not isinstance(getattr(model, "conv1", None), nn.Conv2d):
            raise ValueError(f"conversion 'afa': {type(model).__name__} has no stem convolution (model.conv1)")
    elif not isinstance(stages, nn.Sequential):
        raise ValueError(f"conversion 'afa': {type(model).__name__} has no residual stages (model.layers)")
    elif not isinstance(read_after, int) or not 0 <= read_after < len(stages):
        raise ValueError(f"conversion 'afa': read_after is 'stem' or a stage 0..{len(stages) - 1}, got {read_after!r}")
    found = 0

    def walk(module: nn.Module) -> None:
        nonlocal found
        for name, child in module.named_children():
            if isinstance(child, MultiBatchNorm):
                if child.k != 2:
                    raise ValueError(f"conversion 'afa': fuses two BN branches, found {child.k}; "
                                     "keep BN_0 and BN_K-1 first (conversion 'select', branches [0, -1])")
                setattr(module, name, FusedBatchNorm(list(child.branches), before))
                found += 1
            else:
                walk(child)

    walk(model)
    if not found:
        raise ValueError("conversion 'afa': the model has no two-branch BN to fuse")
    device = next(model.parameters()).device
    placeholder = nn.Identity()  # marks the generator's place in module order
    if read_after == "stem":  # the stem convolution, then the generator (an identity on the features)
        channels = model.conv1.out_channels
        model.conv1 = nn.Sequential(model.conv1, placeholder)
        where = model.conv1
    else:
        channels = [m.out_channels for m in stages[read_after].modules() if isinstance(m, nn.Conv2d)][-1]
        stages[read_after].append(placeholder)
        where = stages[read_after]
    order = list(model.modules())
    after = [m for m in order[order.index(placeholder):] if isinstance(m, FusedBatchNorm)]
    if not after:
        raise ValueError(f"conversion 'afa': no fused norm after stage {read_after} for the generator to drive")
    sizes = [1] * len(after) if weights == "per_layer" else [m.num_features for m in after] if weights == "per_channel" else [1]
    generator = WeightGenerator(channels, sum(sizes), hidden).to(device)
    where[-1] = generator
    start = 0
    for i, norm in enumerate(after):
        norm._source = [generator]
        if weights == "scalar":
            norm._slice = slice(0, 1)
        else:
            norm._slice = slice(start, start + sizes[i])
            start += sizes[i]
    return model
