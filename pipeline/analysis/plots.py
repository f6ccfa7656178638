"""Plots as PNG files (the CSVs beside them are what ``dvc plots`` renders)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.io import atomic_path  # noqa: E402


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
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def lines_plot(curves: Mapping[str, Sequence[tuple[float, float]]], path: str | Path, title: str, xlabel: str) -> None:
    """One line per label: accuracy (y, in [0, 1]) against a setting (x)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for label, points in curves.items():
        if points:
            x, y = zip(*sorted(points))
            ax.plot(x, [100 * v for v in y], marker="o", label=label, linestyle="--" if "paper" in label else "-")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


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
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
