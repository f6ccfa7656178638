"""confoundings NAME/MODEL: norm shaping's three confoundings of BN in adversarial training (Sec. IV of
"Achieving Both Model Accuracy and Robustness by Adversarial Training with Batch Norm Shaping") and
Sec. V's case for the shaping attack, measured on MODEL (one of ``analyses.NAME.confoundings``) in
batches of its training batch size, with the attack its training used, as its saved spec records
it (``pipeline.analysis.confoundings``), into analyses/NAME/confoundings/MODEL/."""

from pipeline.analysis.confoundings import confoundings
from pipeline.config import ConfigError
from pipeline.data import load_splits
from pipeline.io import write_json
from pipeline.layout import analysis_dir, model_dir
from pipeline.train import to_float
from stages.common import Item, item_run, run, start, trained_model


def items(params, group: str) -> list[Item]:
    return [Item("confoundings", group, name, 1.0) for name in params.analyses[group].confoundings]


def main(argv: list[str]) -> None:
    params, item, device = start(argv, items, "model of a confoundings measurement")
    name, cfg = item.name, params.shaping_eval
    model, spec = trained_model(params, name, device)
    attack = next((s["attack"] for s in reversed(spec.get("steps", [])) if s.get("attack")), None)
    if attack is None:  # the model records each training step's attack (stages/training.py: with_step)
        raise ConfigError(f"analyses.{item.group}.confoundings: {model_dir(params, name)}/model.pt records no training attack "
                          "(trained without one, or saved before models recorded it: retrain it)")
    splits = load_splits(params.data)
    n = min(cfg.confounding_samples, len(splits.x_train))
    x, y = to_float(splits.x_train[:n]).to(device), splits.y_train[:n].to(device)
    batch_size = params.training(name).batch_size  # the batches the model trained on, as the paper measures
    section = {"model": name, "n_samples": n, "attack": attack, "ratio": cfg.confounding_ratio, "batch_size": batch_size}
    with item_run(item.label, params, section, analysis_dir(params, "confoundings", name), log_outputs=False) as it:
        try:
            measured = confoundings(model, x, y, to_float(splits.x_test).to(device), splits.y_test.to(device),
                                    eps=attack["eps"], step=attack["step_size"], steps=attack["steps"],
                                    ratio=cfg.confounding_ratio, batch_size=batch_size, seed=params.seed)
        except ValueError as err:
            raise ConfigError(f"shaping_eval.confounding_samples: {err}") from None
        metrics = {"model": name, "eps": attack["eps"], "step": attack["step_size"], "steps": attack["steps"], **measured}
        write_json(it.tmp / "metrics.json", metrics)
        it.tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
    print(f"{name}: " + ", ".join(f"{k} {metrics[k]:+.3f}" for k in ("confounding_I", "confounding_II", "confounding_III",
                                                                       "design_sec_v")))


if __name__ == "__main__":
    run(main)
