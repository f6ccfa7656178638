"""strength NAME/MODEL: feature statistics and fusion weights against the attack strength for a
model of ``analyses.NAME.strength`` ("Adaptive Feature Alignment for Adversarial Training", Fig. 3
and Fig. 6), on the model as it deploys, into analyses/NAME/strength/MODEL/. A model with a weight
generator is also fed PGD examples crafted on ``evaluate.checks.surrogate`` (Fig. 6 as the paper
made it, beside the white-box version)."""

from pipeline.analysis.plots import lines_plot, channel_statistics_plot
from pipeline.analysis.strength_stats import monotonicity, strength_statistics
from pipeline.config import ConfigError
from pipeline.data import load_splits
from pipeline.deploy import Deployed
from pipeline.io import write_csv, write_json
from pipeline.layout import analysis_dir
from pipeline.spec import default_deployment
from pipeline.train import to_float
from stages.common import Item, item_run, run, start, trained_model
from stages.evaluate import surrogate_model


def items(params, group: str) -> list[Item]:
    return [Item("strength", group, name, 2.0) for name in params.analyses[group].strength]


def main(argv: list[str]) -> None:
    params, item, device = start(argv, items, "model of a strength analysis")
    name, cfg = item.name, params.strength_analysis
    model, spec = trained_model(params, name, device)
    how = default_deployment(spec)
    deployed = Deployed(model, how.get("mode", "eval"), route=how.get("route"))
    splits = load_splits(params.data)
    n = min(cfg.n_samples, len(splits.x_test))
    x, y = to_float(splits.x_test[:n]).to(device), splits.y_test[:n].to(device)
    section = {"strength_analysis": cfg.model_dump(), "model": name}
    with item_run(item.label, params, section, analysis_dir(params, "strength", name)) as it:
        try:
            stats = strength_statistics(deployed, x, y, cfg.eps, feature=cfg.feature, steps=cfg.steps,
                                        rel_step_size=cfg.rel_step_size, seed=params.seed)
        except ValueError as err:
            raise ConfigError(f"strength_analysis.{err}") from None
        metrics = {"model": name, "feature": cfg.feature, "n_samples": n, "eps": cfg.eps, **monotonicity(stats)}
        transfer = None
        if stats["w1"]:  # Fig. 6 as the paper made it: examples crafted on a separately trained model
            surrogate = surrogate_model(params, device)
            transfer = strength_statistics(deployed, x, y, cfg.eps, feature=cfg.feature, steps=cfg.steps,
                                           rel_step_size=cfg.rel_step_size, seed=params.seed,
                                           craft_on=Deployed(surrogate))
            moved = monotonicity(transfer)
            metrics.update(w1_mean_transfer=moved["w1_mean"], w1_spearman_transfer=moved["w1_spearman"],
                           transfer_from=params.evaluate.checks.surrogate)
        rows = [{"eps": e, "channel": c, "mean": m[c].item(), "var": v[c].item()}
                for e, m, v in zip(cfg.eps, stats["mean"], stats["var"]) for c in range(len(m))]
        write_csv(it.tmp / "features.csv", rows)
        write_json(it.tmp / "metrics.json", metrics)
        channel_statistics_plot(stats, it.tmp / "features.png", f"{name}: per-channel statistics of {cfg.feature}")
        if stats["w1"]:
            write_csv(it.tmp / "fusion.csv", [{"eps": e, "w1_mean": w.mean().item(), "w1_std": w.std().item(),
                                               "w1_mean_transfer": t.mean().item(), "w1_std_transfer": t.std().item()}
                                              for e, w, t in zip(cfg.eps, stats["w1"], transfer["w1"])])
            lines_plot({"W1, white-box PGD (mean)": [(e * 255, w.mean().item()) for e, w in zip(cfg.eps, stats["w1"])],
                        f"W1, PGD transferred from {params.evaluate.checks.surrogate} (mean)":
                            [(e * 255, w.mean().item()) for e, w in zip(cfg.eps, transfer["w1"])]},
                       it.tmp / "fusion.png", f"{name}: fusion weight against eps", "eps (x/255)", ylabel="W1 (%)")
        it.tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
    print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float)))


if __name__ == "__main__":
    run(main)
