"""shaping NAME/MODEL: norm shaping's evaluation of one model of ``analyses.NAME.shaping`` (``shaping_eval``; "Achieving Both Model
Accuracy and Robustness by Adversarial Training with Batch Norm Shaping", Tables I-III): clean
accuracy under BN, PN and BN+Shaping, the paper's attacks crafted on PN and scored under each,
the shaping attack, and what an adaptive attacker gets. A model whose protocol figure under
BN+Shaping exceeds the adaptive attacker's by more than ``evaluate.checks.tolerance`` is flagged
suspect. Results go to analyses/NAME/shaping/MODEL/."""

from pipeline.analysis.shaping_eval import MODES, shaping_tables
from pipeline.data import load_splits
from pipeline.io import write_csv, write_json
from pipeline.layout import analysis_dir
from pipeline.papers import outcomes
from pipeline.train import to_float
from stages.common import Item, item_run, run, start, trained_model


def attacked_and_unchanged(x_test, y_test, n_samples: int, shaping_refs: int):
    """The first ``n_samples`` test images (and labels) to attack, and the rest: the pool of the
    shaping attack's unchanged clean images, never one being attacked. The attacked side gives way
    so that the pool holds at least ``shaping_refs``."""
    n = min(n_samples, len(x_test) - shaping_refs)
    if n < 1:
        raise ValueError(f"shaping_eval.shaping_refs: {shaping_refs} unchanged images leave none of the "
                         f"{len(x_test)} test images to attack")
    return x_test[:n], y_test[:n], x_test[n:]


def items(params, group: str) -> list[Item]:
    return [Item("shaping", group, name, 6.0) for name in params.analyses[group].shaping]


def main(argv: list[str]) -> None:
    params, item, device = start(argv, items, "model of a norm-shaping evaluation")
    name, cfg, ev = item.name, params.shaping_eval, params.evaluate
    model, spec = trained_model(params, name, device)
    splits = load_splits(params.data)
    x, y, others = attacked_and_unchanged(splits.x_test, splits.y_test, cfg.n_samples, cfg.shaping_refs)
    n = len(x)
    x, y = to_float(x).to(device), y.to(device)
    section = {"shaping_eval": cfg.model_dump(), "model": name}
    with item_run(item.label, params, section, analysis_dir(params, "shaping", name)) as it:
        per_image: dict = {}
        tables = shaping_tables(model, x, y, to_float(splits.x_train).to(device), to_float(others).to(device),
                                attacks=cfg.attacks, eps=ev.threat, fgsm_scale=cfg.fgsm_scale, n_ref=ev.deployment.n_ref,
                                shaping_refs=cfg.shaping_refs, eot=cfg.eot, batch=ev.deployment.batch_size,
                                known_draws=cfg.known_draws,
                                seed=params.seed, progress=lambda what: print(f"{item.label}: {what}", flush=True),
                                per_image=per_image)
        protocol = tables["protocol"][tables["pgd"]]["BN+Shaping"]
        adaptive = min(tables["adaptive"][k] for k in ("known_references_mean", "own_references", "eot"))
        gap = protocol - adaptive
        metrics = {"model": name, "method": spec.get("method", ""), "n_samples": n, "threat_eps": ev.threat,
                   "n_unchanged": len(others),
                   "images": f"{n} attacked; the shaping attack's unchanged images from {len(others)} others",
                   "shaping_refs": cfg.shaping_refs, "fgsm_scale": cfg.fgsm_scale,
                   **tables, "protocol_overstates_by": gap, "suspect": gap > ev.checks.tolerance}
        rows = [{"attack": a, **{m: v for m, v in by_mode.items()}} for a, by_mode in
                [("clean", tables["clean"]), *tables["protocol"].items(), ("shaping", tables["shaping_attack"])]]
        write_json(it.tmp / "metrics.json", metrics)
        outcomes.save(it.tmp / outcomes.FILE, {k: v.detach().cpu().numpy() for k, v in per_image.items()})
        write_csv(it.tmp / "table.csv", [{"attack": r["attack"], **{m: r.get(m, "") for m in MODES}} for r in rows])
        it.tracker.log_metrics({f"{r['attack']}_{m.replace('+', '_')}": r[m] for r in rows for m in MODES if m in r})
        it.tracker.log_metrics({f"adaptive_{k}": v for k, v in tables["adaptive"].items() if isinstance(v, float)})
        it.tracker.log_metrics({"protocol_overstates_by": gap})
    print(f"{name}: clean {tables['clean']}, protocol PGD under BN+Shaping {protocol:.3f}, adaptive {adaptive:.3f}"
          + (" SUSPECT: the paper's protocol overstates robustness" if metrics["suspect"] else ""))


if __name__ == "__main__":
    run(main)
