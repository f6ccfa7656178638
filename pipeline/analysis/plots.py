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
