"""evaluate NAME: attack suite over the eps grid against models/NAME, deployed in eval mode."""

from pathlib import Path

from pipeline.analysis.plots import accuracy_vs_eps
from pipeline.data import load_splits
from pipeline.deploy import Deployed
from pipeline.evaluate import evaluate
from pipeline.io import atomic_dir, write_csv, write_json
from pipeline.models import load_model
from pipeline.tracking import StageRun
from pipeline.train import to_float
from stages.common import device_of, load, one_item, run, seed_everything


def main(argv: list[str]) -> None:
    params = load()
    cfg = params.evaluate
    name = one_item(argv, cfg.models, "evaluated model name")
    device = device_of(params)
    seed_everything(params.seed)
    model, spec = load_model(Path("models") / name / "model.pt", map_location=device)
    splits = load_splits(params.data)
    n = min(cfg.n_samples or len(splits.x_test), len(splits.x_test))
    x, y = to_float(splits.x_test[:n]).to(device), splits.y_test[:n].to(device)
    deployed = Deployed(model, "eval")

    out = Path("results") / name
    with StageRun(f"evaluate@{name}", params.tracking.experiment, {"evaluate": cfg.model_dump(), "model": name},
                  tags={"method": spec.get("method", ""), "device": str(device)}) as tracker:
        result = evaluate(deployed, x, y, cfg)
        aa_n = min(cfg.autoattack.n_ex, n) if cfg.autoattack.enabled else None
        metrics = result.headline(cfg.threat_eps, aa_n)
        rows = result.curve_rows()
        with atomic_dir(out) as tmp:
            write_json(tmp / "metrics.json", metrics)
            write_json(tmp / "timing.json", result.seconds)
            write_csv(tmp / "accuracy.csv", rows)
            curves = {a: [(r["eps"], r[a]) for r in rows] for a in rows[0] if a != "eps"}
            accuracy_vs_eps(curves, tmp / "accuracy.png", f"{name} ({spec.get('method', '')})")
            tracker.write_ref(tmp)
        tracker.log_metrics(metrics)
        for r in rows:
            tracker.log_metrics({f"{a}_acc_eps_{r['eps']:.4f}": v for a, v in r.items() if a != "eps"})
        tracker.log_artifacts(out)
    summary = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float) and k != "threat_eps")
    print(f"{name}: {summary}")


if __name__ == "__main__":
    run(main)
