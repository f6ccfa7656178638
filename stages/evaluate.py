"""evaluate NAME: the attack suite and the gradient-masking checks against models/NAME as deployed."""

from pathlib import Path

from pipeline.analysis.plots import accuracy_vs_eps
from pipeline.config import PGDSpec
from pipeline.data import load_splits
from pipeline.deploy import Deployed
from pipeline.evaluate import evaluate
from pipeline.io import atomic_dir, write_csv, write_json
from pipeline.masking import masking_checks
from pipeline.tracking import StageRun
from pipeline.train import to_float
from stages.common import run, start, trained_model


def deploy(model, cfg, splits, device, seed: int) -> Deployed:
    d = cfg.deployment
    refs = to_float(splits.x_train).to(device) if d.mode == "shaping" else None
    return Deployed(model, d.mode, references=refs, n_ref=d.n_ref, fixed_references=d.fixed_references, seed=seed)


def main(argv: list[str]) -> None:
    params, name, device = start(argv, lambda p: p.evaluate.models, "evaluated model name")
    cfg = params.evaluate
    model, spec = trained_model(name, device)
    splits = load_splits(params.data)
    n = min(cfg.n_samples or len(splits.x_test), len(splits.x_test))
    x, y = to_float(splits.x_test[:n]).to(device), splits.y_test[:n].to(device)
    deployed = deploy(model, cfg, splits, device, params.seed)

    section = {"evaluate": {k: v for k, v in cfg.model_dump().items() if k != "models"}, "model": name,
               "protocol_eps": cfg.eps_grid, "protocol_attacks": [a.name for a in cfg.attack_list]}
    out = Path("results") / name
    with StageRun(f"evaluate@{name}", params.tracking.experiment, section,
                  tags={"method": spec.get("method", ""), "device": str(device), "deployment": repr(deployed)}) as tracker:
        result = evaluate(deployed, x, y, cfg, seed=params.seed)
        metrics = result.headline()
        metrics["deployment"] = cfg.deployment.mode
        if cfg.checks.enabled:
            surrogate = None
            if cfg.checks.surrogate and cfg.checks.surrogate != name:
                sur_model, _ = trained_model(cfg.checks.surrogate, device)
                surrogate = Deployed(sur_model)
            pgd_spec = next((a for a in cfg.attack_list if a.name == "pgd"), None)
            checks = masking_checks(deployed, x, y, eps=cfg.threat, cfg=cfg.checks,
                                    pgd_spec=pgd_spec or PGDSpec(name="pgd"), surrogate=surrogate,
                                    eot=cfg.deployment.eot, autoattack_flags=result.autoattack_flags,
                                    seed=params.seed)
            metrics["suspect"] = checks["suspect"]
            metrics["checks"] = checks
        rows = result.curve_rows()
        with atomic_dir(out) as tmp:
            write_json(tmp / "metrics.json", metrics)
            write_json(tmp / "timing.json", {"seconds": result.seconds,
                                             "samples_attacked": {f"{a}@{e:.4f}": k for (a, e), k in result.ran_on.items()}})
            write_csv(tmp / "accuracy.csv", rows)
            curves = {a: [(r["eps"], r[a]) for r in rows if r[a] != ""] for a in rows[0] if a != "eps"}
            accuracy_vs_eps(curves, tmp / "accuracy.png", f"{name} ({spec.get('method', '')}, {cfg.deployment.mode})")
            tracker.write_ref(tmp)
        tracker.log_metrics({k: v for k, v in metrics.items() if k != "checks"})
        tracker.log_metrics({"suspect": float(metrics.get("suspect", False))})
        if cfg.checks.enabled:
            tracker.log_metrics({f"check_{k}": v for k, v in metrics["checks"].items() if k != "flags"})
        for r in rows:
            tracker.log_metrics({f"{a}_acc_eps_{r['eps']:.4f}": v for a, v in r.items() if a != "eps" and v != ""})
        tracker.log_artifacts(out)
    summary = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float) and k != "threat_eps")
    print(f"{name}: {summary}" + (" SUSPECT: " + "; ".join(metrics["checks"]["flags"]) if metrics.get("suspect") else ""))


if __name__ == "__main__":
    run(main)
