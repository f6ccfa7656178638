"""PNG figures of the BN analyses (pipeline.analysis.bn_stats, pipeline.analysis.interpolate).

The figures follow "Adversarial Masking: Towards Understanding Robustness Trade-off for
Generalization" (first-layer BN parameters, Fig. 1; blocked and magnified feature maps, Fig. 4;
the trade-off of interpolated BN, Table 2) and the m/b rewrite of BN from "On Fragile Features
and Batch Normalization in Adversarial Training". Every file is written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Collection, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from pipeline.analysis.bn_stats import FIELDS, paired_batch_norms  # noqa: E402
from pipeline.io import atomic_path  # noqa: E402

BLOCKED_COLOR = "red"
MAGNIFIED_COLOR = "limegreen"


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _numpy(t) -> np.ndarray:
    return t.detach().double().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=float)


def plot_bn_params_first_layer(model_a: nn.Module, model_b: nn.Module, labels: Sequence[str], path: str | Path,
                               layer_name: str | None = None) -> None:
    """Four panels (running mean, running variance, gamma, beta) per channel of one BN layer.

    One line per model, so that fields which fine-tuning left alone overlap and the ones it
    changed separate. Defaults to the first BN layer in forward order.
    """
    pairs = {name: (a, b) for name, a, b in paired_batch_norms(model_a, model_b)}
    if not pairs:
        raise ValueError("the models have no BN layer")
    name = layer_name if layer_name is not None else next(iter(pairs))
    if name not in pairs:
        raise ValueError(f"no BN layer named {name!r}; BN layers: {', '.join(pairs)}")
    titles = {"mean": "running mean $\\mu$", "var": "running variance $\\sigma^2$",
              "gamma": "rescaling $\\gamma$", "beta": "rescaling $\\beta$"}
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), dpi=120)
    for ax, (field, attr) in zip(axes.flat, FIELDS.items()):
        for bn, label, style in zip(pairs[name], labels, ("-", "--")):
            value = getattr(bn, attr, None)
            if value is not None:
                ax.plot(_numpy(value), style, marker=".", markersize=3, linewidth=1, label=label)
        ax.set_title(titles[field], fontsize=10)
        ax.set_xlabel("channel")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"BN layer {name}", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def plot_rescaling_distributions(rescalings: Mapping[str, Mapping[str, tuple]], path: str | Path,
                                 bins: int = 30, ncols: int = 5) -> None:
    """Histograms of m and of b for each BN layer, one overlaid histogram per model.

    ``rescalings`` maps a model label to :func:`~pipeline.analysis.bn_stats.rescaling_by_layer`
    of that model. The top block of small multiples holds m per layer, the bottom block b; both
    models share the bins of each panel so the histograms compare directly.
    """
    if not rescalings:
        raise ValueError("no models to plot")
    layers = list(next(iter(rescalings.values())))
    if not layers:
        raise ValueError("the models have no BN layer")
    ncols = max(1, min(ncols, len(layers)))
    nrows = math.ceil(len(layers) / ncols)
    fig, axes = plt.subplots(2 * nrows, ncols, figsize=(2.8 * ncols, 2.1 * 2 * nrows), dpi=110, squeeze=False)
    for block, symbol in enumerate(("m", "b")):
        for i, layer in enumerate(layers):
            ax = axes[block * nrows + i // ncols][i % ncols]
            values = {label: _numpy(by_layer[layer][block]) for label, by_layer in rescalings.items()}
            edges = np.histogram_bin_edges(np.concatenate(list(values.values())), bins=bins)
            for label, v in values.items():
                ax.hist(v, bins=edges, alpha=0.5, label=label)
            ax.set_title(f"{symbol}: {layer}", fontsize=8)
            ax.tick_params(labelsize=7)
        for i in range(len(layers), nrows * ncols):
            axes[block * nrows + i // ncols][i % ncols].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("BN as m*z + b: scale m (top block) and shift b (bottom block) per layer", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _one_image(features) -> np.ndarray:
    arr = _numpy(features)
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim != 3:
        raise ValueError(f"features must be C x H x W (or N x C x H x W, first image used), got shape {arr.shape}")
    return arr


def _outline(ax, color: str) -> None:
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color(color)
        spine.set_linewidth(2.5)


def _feature_grid(fig, maps: np.ndarray, vmax: np.ndarray, blocked: Collection[int],
                  magnified: Collection[int], title: str) -> None:
    channels = maps.shape[0]
    side = math.ceil(math.sqrt(channels))
    axes = fig.subplots(side, side, squeeze=False)
    for c, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if c >= channels:
            continue
        ax.imshow(maps[c], cmap="gray", vmin=0.0, vmax=vmax[c], interpolation="nearest")
        if c in blocked:
            _outline(ax, BLOCKED_COLOR)
        elif c in magnified:
            _outline(ax, MAGNIFIED_COLOR)
    fig.suptitle(title, fontsize=10)


def plot_feature_maps(features_a, features_b, blocked: Collection[int], magnified: Collection[int],
                      path: str | Path, labels: Sequence[str] = ("model a", "model b"), layer: str = "") -> None:
    """Feature maps after BN + ReLU of one image, two models side by side, one tile per channel.

    ``features_*`` are C x H x W (or N x C x H x W, first image), e.g. from
    :func:`~pipeline.analysis.bn_stats.first_block_features`. Channels in ``blocked`` are
    outlined red and those in ``magnified`` green in both grids; each channel uses one grey scale
    (0 to its maximum over both models) so a blocked map is black and a magnified one brighter.
    """
    a, b = _one_image(features_a), _one_image(features_b)
    if a.shape != b.shape:
        raise ValueError(f"feature maps of different shapes: {a.shape} vs {b.shape}")
    vmax = np.maximum(a.reshape(len(a), -1).max(1), b.reshape(len(b), -1).max(1))
    vmax = np.where(vmax > 0, vmax, 1.0)
    blocked, magnified = set(map(int, blocked)), set(map(int, magnified))
    side = math.ceil(math.sqrt(a.shape[0]))
    fig = plt.figure(figsize=(2 * (0.75 * side + 0.4), 0.75 * side + 0.9), dpi=120)
    left, right = fig.subfigures(1, 2, wspace=0.05)
    _feature_grid(left, a, vmax, blocked, magnified, labels[0])
    _feature_grid(right, b, vmax, blocked, magnified, labels[1])
    where = f"ReLU(BN) of layer {layer}, " if layer else ""
    fig.text(0.5, 0.01, f"{where}outlined: red = blocked ({len(blocked)}), green = magnified ({len(magnified)})",
             ha="center", fontsize=8)
    _save(fig, path)


def plot_tradeoff(rows: Sequence[Mapping], path: str | Path, title: str = "BN interpolation", key: str = "p") -> None:
    """Clean (x) against robust (y) accuracy in %, one point per setting ``key`` (interpolation
    p, a dial's value), labelled by it.

    Each row has ``key``, ``clean`` and ``robust`` (fractions in [0, 1]) and optionally ``series``;
    rows of one series are joined in order of ``key``.
    """
    if not rows:
        raise ValueError("no rows to plot")
    series: dict[str, list[Mapping]] = {}
    for row in rows:
        series.setdefault(str(row.get("series", "")), []).append(row)
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
    for name, points in series.items():
        points = sorted(points, key=lambda r: float(r[key]))
        x = [100 * float(r["clean"]) for r in points]
        y = [100 * float(r["robust"]) for r in points]
        ax.plot(x, y, marker="o", label=name or None)
        for r, xi, yi in zip(points, x, y):
            ax.annotate(f"{key}={float(r[key]):g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.margins(0.1)
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("robust accuracy (%)")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if len(series) > 1 or next(iter(series)):
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
