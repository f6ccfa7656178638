"""confoundings MODEL: norm shaping's three confoundings of BN in adversarial training (Sec. IV of
"Achieving Both Model Accuracy and Robustness by Adversarial Training with Batch Norm Shaping"),
measured on training images of MODEL (``shaping_eval.confounding_models``) with the attack its
training used, as its saved spec records it (``pipeline.analysis.confoundings``)."""

from pathlib import Path

from pipeline.analysis.confoundings import confoundings
from pipeline.config import ConfigError
from pipeline.data import load_splits
from pipeline.io import atomic_dir, write_json
from pipeline.tracking import StageRun
from pipeline.train import to_float
from stages.common import run, start, trained_model, write_timing


def main(argv: list[str]) -> None:
    params, name, device = start(
        argv, lambda p: {m: m for m in (p.shaping_eval.confounding_models if p.shaping_eval else [])},
        "model of shaping_eval.confounding_models")
    cfg = params.shaping_eval
    model, spec = trained_model(name, device)
    attack = next((s["attack"] for s in reversed(spec.get("steps", [])) if s.get("attack")), None)
    if attack is None:  # the model records each training step's attack (stages/training.py: with_step)
        raise ConfigError(f"shaping_eval.confounding_models: models/{name}/model.pt records no training attack "
                          "(trained without one, or saved before models recorded it: retrain it)")
    splits = load_splits(params.data)
    n = min(cfg.confounding_samples, len(splits.x_train))
    x, y = to_float(splits.x_train[:n]).to(device), splits.y_train[:n].to(device)
    with StageRun(f"confoundings@{name}", params.tracking.experiment,
                  {"model": name, "n_samples": n, "attack": attack, "ratio": cfg.confounding_ratio}) as tracker:
        metrics = {"model": name, "eps": attack["eps"], "step": attack["step_size"], "steps": attack["steps"],
                   **confoundings(model, x, y, eps=attack["eps"], step=attack["step_size"], steps=attack["steps"],
                                  ratio=cfg.confounding_ratio, seed=params.seed)}
        out = Path("results") / "confoundings" / name
        with atomic_dir(out) as tmp:
            write_json(tmp / "metrics.json", metrics)
            tracker.write_ref(tmp)
            write_timing(tmp, f"confoundings@{name}")
        tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
    print(f"{name}: " + ", ".join(f"{k} {metrics[k]:+.3f}" for k in ("confounding_I", "confounding_II", "confounding_III")))


if __name__ == "__main__":
    run(main)
