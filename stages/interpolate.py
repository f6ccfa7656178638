"""interpolate PAIR: BN rescaling mixed between two models over a p grid, each mix evaluated clean
and under PGD at the threat eps ("Adversarial Masking", Table 2)."""

from pathlib import Path

import torch

from pipeline.analysis.bn_plots import plot_tradeoff
from pipeline.analysis.interpolate import interpolate_bn
from pipeline.attacks import pgd
from pipeline.data import load_splits
from pipeline.deploy import Deployed
from pipeline.evaluate import correct
from pipeline.io import atomic_dir, write_csv, write_json
from pipeline.tracking import StageRun
from pipeline.train import to_float
from stages.common import run, start, trained_model


def monotone_violations(values: list[float], tolerance: float = 0.0) -> int:
    """Steps where a series that should move one way moves back by more than ``tolerance``."""
    direction = 1 if values[-1] >= values[0] else -1
    return sum(direction * (b - a) < -tolerance for a, b in zip(values, values[1:]))


def main(argv: list[str]) -> None:
    params, name, device = start(argv, lambda p: p.interpolate and p.interpolate.pairs, "interpolation pair")
    cfg = params.interpolate
    pair = cfg.pairs[name]
    model_a, _ = trained_model(pair.a, device)
    model_b, _ = trained_model(pair.b, device)
    splits = load_splits(params.data)
    n = min(cfg.n_samples or len(splits.x_test), len(splits.x_test))
    x, y = to_float(splits.x_test[:n]).to(device), splits.y_test[:n].to(device)
    eps = params.evaluate.threat

    rows = []
    section = {"interpolate": cfg.model_dump(exclude={"pairs"}), "pair": pair.model_dump(), "eps": eps}
    with StageRun(f"interpolate@{name}", params.tracking.experiment, section) as tracker:
        for step, p in enumerate(cfg.p):
            deployed = Deployed(interpolate_bn(model_a, model_b, p, stats=cfg.stats))
            torch.manual_seed(params.seed)
            x_adv = pgd(deployed, x, y, eps=eps, step_size=cfg.rel_step_size * eps, steps=cfg.pgd_steps,
                        early_stop=True)
            row = {"p": p, "clean": correct(deployed, x, y, 500).float().mean().item(),
                   "robust": correct(deployed, x_adv, y, 500).float().mean().item()}
            rows.append(row)
            tracker.log_metrics({"clean": row["clean"], "robust": row["robust"]}, step=step)
            print(f"{name}: p={p:.2f} clean {row['clean']:.4f} robust {row['robust']:.4f}")
        metrics = {"pair": f"{pair.a} -> {pair.b}", "eps": eps, "n_samples": n,
                   "clean_violations": monotone_violations([r["clean"] for r in rows], 0.005),
                   "robust_violations": monotone_violations([r["robust"] for r in rows], 0.005)}
        out = Path("results") / "interpolate" / name
        with atomic_dir(out) as tmp:
            write_csv(tmp / "interpolation.csv", rows)
            write_json(tmp / "metrics.json", metrics)
            plot_tradeoff([{**r, "series": name} for r in rows], tmp / "tradeoff.png",
                          title=f"BN interpolation {pair.a} (p=1) -> {pair.b} (p=0)")
            tracker.write_ref(tmp)
        tracker.log_artifacts(out)


if __name__ == "__main__":
    run(main)
