"""interpolate NAME/PAIR: BN rescaling mixed between two models over a p grid, each mix evaluated clean
and at the threat eps with the evaluate section's attacks ("Adversarial Masking", Table 2): its PGD
by default, so that the endpoints equal Table 1's PGD column, or the whole suite. PAIR is one of
``analyses.NAME.interpolate``; its results go to analyses/NAME/interpolate/PAIR/."""

from pipeline.analysis.bn_plots import plot_tradeoff
from pipeline.analysis.interpolate import interpolate_bn, monotone_violations
from pipeline.config import ConfigError
from pipeline.data import load_splits
from pipeline.deploy import Deployed
from pipeline.evaluate import evaluate
from pipeline.io import write_csv, write_json
from pipeline.layout import analysis_dir
from pipeline.train import to_float
from stages.common import Item, item_run, run, start, trained_model


def items(params, group: str) -> list[Item]:
    return [Item("interpolate", group, name, len(params.interpolate.p) * len(params.interpolate.stats) / 2) for name in params.analyses[group].interpolate]


def interpolation_suite(params):
    """The evaluate section cut to the threat eps: its PGD alone (``attack: pgd``) or every attack."""
    try:
        return params.evaluate.at_threat(params.interpolate.attack)
    except ValueError as err:
        raise ConfigError(f"interpolate.{err}") from None


def main(argv: list[str]) -> None:
    params, item, device = start(argv, items, "interpolation pair")
    name, cfg = item.name, params.interpolate
    pair = params.analysis("interpolate", name)
    model_a, _ = trained_model(params, pair.a, device)
    model_b, _ = trained_model(params, pair.b, device)
    splits = load_splits(params.data)
    n = min(cfg.n_samples or len(splits.x_test), len(splits.x_test))
    x, y = to_float(splits.x_test[:n]).to(device), splits.y_test[:n].to(device)
    suite = interpolation_suite(params)
    what = " + ".join(a.key for a in suite.attack_list)

    rows = []
    section = {"interpolate": cfg.model_dump(), "pair": pair.model_dump(), "eps": suite.threat, "attacks": what}
    with item_run(item.label, params, section, analysis_dir(params, "interpolate", name)) as it:
        for stats in cfg.stats:
            for step, p in enumerate(cfg.p):
                deployed = Deployed(interpolate_bn(model_a, model_b, p, stats=stats))
                result = evaluate(deployed, x, y, suite, seed=params.seed, progress=False).headline()
                row = {"stats": stats, "p": p, "clean": result["clean"], "robust": result["worst_case"]}
                rows.append(row)
                it.tracker.log_metrics({f"clean_stats_{stats}": row["clean"], f"robust_stats_{stats}": row["robust"]}, step=step)
                print(f"{name}: stats={stats} p={p:.2f} clean {row['clean']:.4f} robust {row['robust']:.4f}")
        metrics = {"pair": f"{pair.a} -> {pair.b}", "eps": suite.threat, "n_samples": n, "attacks": what}
        for stats in cfg.stats:
            mine = [r for r in rows if r["stats"] == stats]
            metrics[f"clean_violations_{stats}"] = monotone_violations([r["clean"] for r in mine], 0.005)
            metrics[f"robust_violations_{stats}"] = monotone_violations([r["robust"] for r in mine], 0.005)
        write_csv(it.tmp / "interpolation.csv", rows)
        write_json(it.tmp / "metrics.json", metrics)
        plot_tradeoff([{**r, "series": f"{name}, stats {r['stats']}"} for r in rows], it.tmp / "tradeoff.png",
                      title=f"BN interpolation {pair.a} (p=1) -> {pair.b} (p=0), {what}")


if __name__ == "__main__":
    run(main)
