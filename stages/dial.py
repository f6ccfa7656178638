"""dial NAME/DIAL: a model deployed along a dial (``analyses.NAME.dials.DIAL``: a route key swept over values, e.g.
RobMask's strength p or AFA's fusion weight W0), each setting evaluated clean and at the threat
eps with the evaluate section's PGD, as interpolations are. With ``adaptive``, each setting is
also attacked with examples crafted at every other setting of the dial, and its robust accuracy
is the per-sample worst case over all of them (RobMask's strength is known to the defender, not
fixed for the attacker). Results go to analyses/NAME/dial/DIAL/."""

from pipeline.analysis.bn_plots import plot_tradeoff
from pipeline.analysis.interpolate import monotone_violations
from pipeline.config import ConfigError
from pipeline.data import load_splits
from pipeline.deploy import Deployed
from pipeline.evaluate import evaluate
from pipeline.io import write_csv, write_json
from pipeline.layout import analysis_dir
from pipeline.norms import routed_norms
from pipeline.spec import default_deployment
from pipeline.train import to_float
from stages.common import Item, item_run, run, start, trained_model


def cost(dial) -> float:
    return len(dial.values) * (len(dial.values) if dial.adaptive else 1)


def items(params, group: str) -> list[Item]:
    return [Item("dial", group, name, cost(dial)) for name, dial in params.analyses[group].dials.items()]


def main(argv: list[str]) -> None:
    params, item, device = start(argv, items, "dial")
    name = item.name
    cfg = params.analysis("dial", name)
    model, spec = trained_model(params, cfg.model, device)
    if not any(cfg.key in m.route_keys for m in routed_norms(model)):
        raise ConfigError(f"analyses.{item.group}.dials.{name}.key: {cfg.model!r} has no norm that reads the route {cfg.key!r}")
    how = default_deployment(spec)
    try:
        suite = params.evaluate.at_threat(cfg.attack)
    except ValueError as err:
        raise ConfigError(f"analyses.{item.group}.dials.{name}.{err}") from None
    splits = load_splits(params.data)
    n = min(cfg.n_samples or params.evaluate.n_samples or len(splits.x_test), len(splits.x_test))
    x, y = to_float(splits.x_test[:n]).to(device), splits.y_test[:n].to(device)
    t = suite.threat

    def at(value: float) -> Deployed:
        return Deployed(model, how.get("mode", "eval"), route={**(how.get("route") or {}), cfg.key: value})

    section = {"dial": cfg.model_dump(), "eps": t, "attacks": [a.key for a in suite.attack_list], "n_samples": n}
    with item_run(item.label, params, section, analysis_dir(params, "dial", name)) as it:
        robust, rows, crafted = {}, [], []
        for step, v in enumerate(cfg.values):
            r = evaluate(at(v), x, y, suite, seed=params.seed, progress=False)
            robust[v] = r.worst[t].clone()
            rows.append({"value": v, "clean": r.clean.float().mean().item(), "robust": robust[v].float().mean().item()})
            it.tracker.log_metrics({"clean": rows[-1]["clean"], "robust": rows[-1]["robust"]}, step=step)
        if cfg.adaptive:
            for row, v in zip(rows, cfg.values):
                worst = robust[v].clone()
                for u in cfg.values:
                    if u == v:
                        continue
                    r = evaluate(at(v), x, y, suite, seed=params.seed, progress=False, craft_on=at(u))
                    crafted.append({"deployed": v, "crafted_at": u, "robust": r.worst[t].float().mean().item()})
                    worst &= r.worst[t]
                row["robust_adaptive"] = worst.float().mean().item()
                print(f"{name}: {cfg.key}={v:g} clean {row['clean']:.3f} robust {row['robust']:.3f} "
                      f"adaptive {row['robust_adaptive']:.3f}")
        metrics = {"model": cfg.model, "key": cfg.key, "eps": t, "n_samples": n,
                   "attacks": " + ".join(a.key for a in suite.attack_list),
                   "clean_violations": monotone_violations([r["clean"] for r in rows], 0.005),
                   "robust_violations": monotone_violations([r["robust"] for r in rows], 0.005)}
        if cfg.adaptive:  # how much the white-box figure at the deployed setting overstates
            metrics["max_adaptive_gap"] = max(r["robust"] - r["robust_adaptive"] for r in rows)
        write_csv(it.tmp / "dial.csv", [{cfg.key: r["value"], **{k: v for k, v in r.items() if k != "value"}}
                                        for r in rows])
        write_csv(it.tmp / "crafted.csv", crafted or [{"deployed": "", "crafted_at": "", "robust": ""}])
        write_json(it.tmp / "metrics.json", metrics)
        points = [{cfg.key: r["value"], "clean": r["clean"], "robust": r["robust"], "series": "white-box"} for r in rows]
        if cfg.adaptive:
            points += [{cfg.key: r["value"], "clean": r["clean"], "robust": r["robust_adaptive"],
                        "series": "crafted at any setting"} for r in rows]
        plot_tradeoff(points, it.tmp / "dial.png", title=f"{cfg.model} along {cfg.key}", key=cfg.key)
        it.tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})


if __name__ == "__main__":
    run(main)
