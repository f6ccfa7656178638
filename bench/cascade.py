"""Evaluation cost with and without early exit and the cascade, on the pipeline's trained models.

Runs the evaluate section of params.yaml against models/GROUP/NAME (built by `dvc repro`) twice: every
attack on every clean-correct sample (no early exit in PGD, no cascade), then as the pipeline
runs it. Prints the wall times, their ratio, and whether the per-sample worst case agrees.

    python bench/cascade.py [NAME ...]      (default: the full-tier models of evaluations that exist)
"""

from __future__ import annotations

import sys
import time

import torch

from pipeline import evaluate as ev
from pipeline.config import load_params
from pipeline.data import load_splits
from pipeline.deploy import Deployed
from pipeline.layout import model_dir
from pipeline.spec import load_model
from pipeline.train import to_float


def run(deployed, x, y, cfg, *, fast: bool):
    if fast:
        return ev.evaluate(deployed, x, y, cfg, cascade=True, progress=False)
    # The exhaustive baseline: no attack stops early and nothing cascades.
    return ev.evaluate(deployed, x, y, cfg, cascade=False, progress=False, early_exit=False)


def compare(model, x, y, cfg) -> tuple[dict[bool, float], dict[bool, torch.Tensor]]:
    """Seconds and per-sample worst case at the threat eps, exhaustive (False) and fast (True)."""
    times, worst = {}, {}
    for fast in (False, True):
        torch.manual_seed(0)
        t0 = time.perf_counter()
        res = run(Deployed(model), x, y, cfg, fast=fast)
        times[fast] = time.perf_counter() - t0
        worst[fast] = res.worst[cfg.threat]
    return times, worst


def main(names: list[str]) -> None:
    params = load_params("params.yaml")
    cfg = params.evaluate
    names = names or [t.model for t in params.targets.values()
                      if t.tier == "full" and t.view is None and (model_dir(params, t.model) / "model.pt").exists()]
    splits = load_splits(params.data)
    n = min(cfg.n_samples or len(splits.x_test), len(splits.x_test))
    x, y = to_float(splits.x_test[:n]), splits.y_test[:n]
    total = {True: 0.0, False: 0.0}
    print(f"{'model':28s} {'exhaustive s':>13s} {'cascade s':>10s} {'ratio':>6s}  worst case (exh. / casc.)  same samples")
    for name in names:
        model, _ = load_model(model_dir(params, name) / "model.pt")
        times, worst = compare(model, x, y, cfg)
        for fast in (False, True):
            total[fast] += times[fast]
        agree = (worst[False] == worst[True]).float().mean().item()
        print(f"{name:28s} {times[False]:13.1f} {times[True]:10.1f} {times[False] / times[True]:6.2f}  "
              f"{worst[False].float().mean().item():.3f} / {worst[True].float().mean().item():.3f}"
              f"{'':12s}{100 * agree:.1f}%")
    print(f"{'all':28s} {total[False]:13.1f} {total[True]:10.1f} {total[False] / total[True]:6.2f}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main(sys.argv[1:])
