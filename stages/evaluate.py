"""evaluate GROUP[/TARGET]: the attack suite and the gradient-masking checks against a model as
deployed, for each target of ``evaluations.GROUP``; a lone GROUP (the DVC stage ``evaluate@GROUP``)
attacks all of them side by side.

A target is a model (deployed as its method says, unless ``evaluate.deployment.mode`` is set) at
the full tier or the screen tier, or a view (a model with another mode or norm route, perhaps
attacked through another deployment: ``craft``). Each writes results/GROUP/TARGET/.
"""

import sys

import torch

from pipeline.analysis.model_card import build_card, card_markdown, counting_passes
from pipeline.analysis.plots import accuracy_vs_eps
from pipeline.attacks import attack_of
from pipeline.attacks.pgd import PGDSpec
from pipeline.data import load_splits
from pipeline.deploy import Deployed
from pipeline.evaluate import evaluate
from pipeline.io import write_csv, write_headline, write_json, write_text
from pipeline.config import ConfigError
from pipeline.layout import RESULTS, headline_file, model_dir, result_dir
from pipeline.masking import masking_checks
from pipeline.papers import outcomes
from pipeline.norms import routed_norms
from pipeline.spec import default_deployment
from pipeline.tracking import _git, read_ref
from pipeline.train import to_float
from pipeline.norms.fused import fused_counts
from stages.common import Item, item_run, run, start, trained_model


def cost(target) -> float:
    """Roughly how long a target's evaluation takes: AutoAttack standard and the checks dominate
    the full tier; AFA's adaptive attack runs seven weightings."""
    base = 10.0 if target.tier == "full" else 2.0
    extra = sum(attack_of(a).cost for a in (target.view.extra_attacks if target.view else []))
    return base + extra


def items(params, group: str) -> list[Item]:
    plan = params.evaluations[group]
    targets = params.targets
    return [Item("evaluate", group, name, cost(targets[name])) for name in [*plan.full, *plan.screen, *plan.views]]


def deployment_of(view, cfg, spec: dict) -> dict:
    """Mode and route of a target: the model's default (its method's), then ``evaluate.deployment``,
    then the view's own settings."""
    d = default_deployment(spec)
    if cfg.deployment.mode:
        d["mode"] = cfg.deployment.mode
    if view is not None:
        d["mode"] = view.mode or d["mode"]
        if view.route:
            d["route"] = {k: torch.tensor(v) if isinstance(v, list) else v for k, v in view.route.items()}
    return d


def check_route(where: str, how: dict, model) -> None:
    """A view's route must be one the model's routed norms read: else one line, before any work."""
    route = how.get("route") or {}
    if not route:
        return
    norms = routed_norms(model)
    if not norms:
        raise ConfigError(f"{where}.route: the model has no routed norms (plain BN); drop the route")
    known = {k for m in norms for k in m.route_keys}
    unknown = sorted(set(route) - known)
    if unknown:
        raise ConfigError(f"{where}.route: unknown key {unknown[0]!r}; this model's norms read {sorted(known)}")


def crafting_of(view, how: dict) -> dict | None:
    """The deployment a view's attacks are crafted on when it is not the view's own (a transfer)."""
    if view is None or view.craft is None:
        return None
    route = {k: torch.tensor(v) if isinstance(v, list) else v for k, v in view.craft.route.items()}
    return {"mode": view.craft.mode or how.get("mode", "eval"), "route": route or how.get("route")}


def surrogate_model(params, device, *, required: bool = True):
    """The model transfer attacks are crafted on (``evaluate.checks.surrogate``, GROUP/NAME). Where
    it diverged in training and only the masking checks would use it (not ``required``): None, and
    the checks go without their transfer attack rather than every evaluation going diverged."""
    from pipeline.divergence import ModelDiverged

    try:
        return trained_model(params, params.evaluate.checks.surrogate.rpartition("/")[2], device)[0]
    except ModelDiverged as err:
        if required:
            raise
        print(f"warning: the surrogate {err}; the masking checks skip their transfer attack", file=sys.stderr)
        return None


def deploy(model, cfg, splits, device, seed: int, how: dict) -> Deployed:
    d = cfg.deployment
    mode = how.get("mode", "eval")
    refs = to_float(splits.x_train).to(device) if mode == "shaping" else None
    return Deployed(model, mode, route=how.get("route"), references=refs, n_ref=d.n_ref,
                    fixed_references=d.fixed_references, seed=seed)


def main(argv: list[str]) -> None:
    params, item, device = start(argv, items, "evaluated model or view")
    name, target = item.name, params.targets[item.name]
    tier, view, where = target.tier, target.view, f"evaluations.{item.group}.views.{item.name}"
    cfg = params.evaluation_config(name)  # screen: its own attacks and sample count, no checks; a view's extras
    model_name = target.model
    model, spec = trained_model(params, model_name, device)
    splits = load_splits(params.data)
    n = min(cfg.n_samples or len(splits.x_test), len(splits.x_test))
    if cfg.n_samples and cfg.n_samples > n:  # metrics record n_samples as run, never as asked
        import sys

        print(f"warning: evaluate.n_samples: {cfg.n_samples} asked but the test split has {n} images; "
              f"evaluating {n}", file=sys.stderr)
    x, y = to_float(splits.x_test[:n]).to(device), splits.y_test[:n].to(device)
    how = deployment_of(view, cfg, spec)
    check_route(where, how, model)
    deployed = deploy(model, cfg, splits, device, params.seed, how)
    craft_how = crafting_of(view, how)
    craft_on = None
    if craft_how is not None:
        check_route(f"{where}.craft", craft_how, model)
        craft_on = deploy(model, cfg, splits, device, params.seed, craft_how)

    section = {"evaluate": cfg.model_dump(), "model": model_name, "tier": tier,
               "view": view.model_dump() if view is not None else None,
               "protocol_eps": cfg.eps_grid, "protocol_attacks": [a.name for a in cfg.attack_list]}
    out = result_dir(params, name)
    stage = item.label
    scored = read_ref(model_dir(params, model_name))  # the model's training run and registered version
    tags = {"method": spec.get("method", ""), "device": str(device), "deployment": repr(deployed)}
    with item_run(stage, params, section, out, tags=tags) as it:
        it.tracker.link_model(scored)
        # the transfer attacks' source, loaded once for the suite's transfer attack and the checks'
        transfers = any(attack_of(a).surrogate for a in cfg.attack_list)
        is_surrogate = cfg.checks.surrogate.rpartition("/")[2] == model_name
        source = surrogate_model(params, device, required=transfers) if transfers or (cfg.checks.enabled and not is_surrogate) else None
        loaded = Deployed(source) if source is not None else None
        transfer_from = loaded if transfers else None
        surrogate = None if is_surrogate else loaded  # the checks skip a transfer from the model itself
        with counting_passes(model) as passes:
            result = evaluate(deployed, x, y, cfg, seed=params.seed, desc=stage, craft_on=craft_on,
                              surrogate=transfer_from)
        metrics = result.headline()
        metrics["deployment"] = deployed.mode
        metrics["model"] = model_name
        metrics["tier"] = tier
        if craft_on is not None:
            metrics["crafted_on"] = repr(craft_on)
        if cfg.checks.enabled and craft_on is None:  # a transfer's white-box checks are its source view's
            pgd_spec = next((a for a in cfg.attack_list if a.name == "pgd"), None)
            checks = masking_checks(deployed, x, y, eps=cfg.threat, cfg=cfg.checks,  # not counted in the card
                                    pgd_spec=pgd_spec or PGDSpec(name="pgd"), surrogate=surrogate,
                                    eot=cfg.deployment.eot, autoattack_flags=result.autoattack_flags,
                                    suite=metrics,
                                    seed=params.seed)
            metrics["suspect"] = checks["suspect"]
            metrics["checks"] = checks
        rows = result.curve_rows()
        write_json(it.tmp / "metrics.json", metrics)
        write_csv(it.tmp / "accuracy.csv", rows)
        outcomes.save(it.tmp / outcomes.FILE, outcomes.of_result(result))  # per image: claims compare paired
        curves = {a: [(r["eps"], r[a]) for r in rows if r[a] != ""] for a in rows[0] if a != "eps"}
        accuracy_vs_eps(curves, it.tmp / "accuracy.png", f"{name} ({spec.get('method', '')}, {deployed!r})")
        card = build_card(name, model_name, metrics, params, spec, how, passes, _git("rev-parse", "HEAD"),
                          it.tracker.ref, cfg=cfg, crafted_on=craft_how, model_ref=scored, fusion=fused_counts(model))
        write_json(it.tmp / "model_card.json", card)
        write_text(it.tmp / "model_card.md", card_markdown(card))
        it.timing.update(seconds=result.seconds,
                         samples_attacked={f"{a}@{e:.4f}": k for (a, e), k in result.ran_on.items()})
        write_headline(headline_file(RESULTS, item.group, name), metrics)
        it.tracker.log_metrics({k: v for k, v in metrics.items() if k != "checks"})
        it.tracker.log_metrics({"suspect": float(metrics.get("suspect", False))})
        if cfg.checks.enabled:
            it.tracker.log_metrics({f"check_{k}": v for k, v in metrics["checks"].items() if k != "flags"})
        for r in rows:
            it.tracker.log_metrics({f"{a}_acc_eps_{r['eps']:.4f}": v for a, v in r.items() if a != "eps" and v != ""})
    summary = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float) and k != "threat_eps")
    print(f"{name}: {summary}" + (" SUSPECT: " + "; ".join(metrics["checks"]["flags"]) if metrics.get("suspect") else ""))


if __name__ == "__main__":
    run(main, items, "evaluate")
