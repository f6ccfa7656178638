"""Plots as PNG files (the CSVs beside them are what ``dvc plots`` renders)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.io import atomic_path  # noqa: E402


def _finish(fig, ax, path: str | Path, title: str, *, legend: bool = True, title_size: float | None = None) -> None:
    """Grid, title, legend, tight layout, and the atomic write of ``path``."""
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=title_size)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def long_rows(rows: Sequence[Mapping], x: str, value: str, series: str = "model") -> list[dict]:
    """Wide rows (``x`` and one column per model) as one row per model and ``x``, skipping empty
    cells: the CSV form whose plot (``template: lines_by_model``) draws a line per model."""
    names = list(dict.fromkeys(k for row in rows for k in row if k != x))
    return [{x: row[x], series: name, value: row[name]} for name in names for row in rows
            if row.get(name) not in (None, "")]


def accuracy_vs_eps(curves: Mapping[str, Sequence[tuple[float, float]]], path: str | Path, title: str) -> None:
    """One line per label: accuracy (y) against eps in /255 units (x)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for label, points in curves.items():
        if not points:
            continue
        eps, acc = zip(*sorted(points))
        ax.plot([e * 255 for e in eps], [100 * a for a in acc], marker="o", label=label)
    ax.set_xlabel("eps (x/255, L-inf)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    _finish(fig, ax, path, title)


def lines_plot(curves: Mapping[str, Sequence[tuple[float, float]]], path: str | Path, title: str, xlabel: str,
               ylabel: str = "accuracy (%)") -> None:
    """One line per label: a fraction in [0, 1] (y, shown in %) against a setting (x); labels with
    "paper" in them are dashed."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for label, points in curves.items():
        if points:
            x, y = zip(*sorted(points))
            ax.plot(x, [100 * v for v in y], marker="o", label=label, linestyle="--" if "paper" in label else "-")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-2, 102)
    _finish(fig, ax, path, title, title_size=10)


def bars(groups: Mapping[str, Mapping[str, float]], path: str | Path, title: str) -> None:
    """Grouped bars: one group per label (an activation), one bar per series (clean, PGD)."""
    labels = list(groups)
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(5.5, 0.8 * len(labels)), 3.8), dpi=120)
    for j, s in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, [100 * groups[label].get(s, 0.0) for label in labels], width, label=s)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 102)
    _finish(fig, ax, path, title, title_size=10)


def frontier(curves: Mapping[str, Sequence[tuple[float, float, str]]], path: str | Path, title: str) -> None:
    """Clean (x) against robust (y) accuracy, one line per method with a dial (points labelled by
    their setting) and single models as markers: the trade-off frontier of every method."""
    fig, ax = plt.subplots(figsize=(6.5, 4.8), dpi=120)
    for label, points in curves.items():
        if not points:
            continue
        xs, ys = [100 * p[0] for p in points], [100 * p[1] for p in points]
        ax.plot(xs, ys, marker="o", linestyle="-" if len(points) > 1 else "none", label=label)
        for (_, _, tag), xi, yi in zip(points, xs, ys):
            if tag:
                ax.annotate(tag, (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=6)
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("robust accuracy (%)")
    ax.margins(0.08)
    _finish(fig, ax, path, title, title_size=10)


def channel_statistics_plot(stats: Mapping, path: str | Path, title: str) -> None:
    """Per-channel mean and variance of a feature map (x: channels, in the order of their clean
    mean), one line per attack strength from light to dark (AFA's Fig. 3)."""
    import torch

    order = stats["mean"][0].argsort()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=120)
    colors = plt.cm.viridis([i / max(len(stats["eps"]) - 1, 1) for i in range(len(stats["eps"]))])
    for ax, what in zip(axes, ("mean", "var")):
        for eps, values, color in zip(stats["eps"], stats[what], colors):
            ax.plot(torch.as_tensor(values)[order].tolist(), color=color, label=f"eps {eps * 255:.3g}/255", linewidth=1)
        ax.set_xlabel("channel (sorted by the clean mean)")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def heatmaps(panels: Mapping[str, tuple[Sequence[str], Sequence[str], Sequence[Sequence[float | None]]]],
             path: str | Path, title: str, xlabel: str, ylabel: str) -> None:
    """Side-by-side heat maps (ours, the paper's) of accuracies in [0, 1], each cell labelled in %."""
    import numpy as np

    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), dpi=120, squeeze=False)
    for ax, (name, (rows, cols, values)) in zip(axes[0], panels.items()):
        grid = np.array([[np.nan if v is None else 100 * v for v in row] for row in values], dtype=float)
        image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
        for i in range(len(rows)):
            for j in range(len(cols)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=8,
                            color="white" if grid[i, j] < 60 else "black")
        ax.set_xticks(range(len(cols)), cols, fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="robust accuracy (%)")
    fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
