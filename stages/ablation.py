"""ablation GRID[/VALUE]: the points of the grid ``ablations.GRID`` of params.yaml; a lone GRID
(the DVC stage ``ablation@GRID``) runs them all side by side. A point trains the grid's ``train``
entry with its ``key`` set to VALUE (then, if the grid has one, its ``then`` fine-tune of that
model: AFA's stage II after stage I) into results/ablations/GRID/VALUE/model/, and evaluates the
result at the screen tier (``evaluate.screen``'s attacks, as its method deploys it) into
results/ablations/GRID/VALUE/screen/, in one MLflow run."""

from pipeline.analysis.shaping_eval import ratio_sweep
from pipeline.config import ConfigError
from pipeline.data import load_splits
from pipeline.deploy import Deployed
from pipeline.evaluate import evaluate
from pipeline.papers import outcomes
from pipeline.io import atomic_dir, fingerprint, read_json, write_csv, write_headline, write_json
from pipeline.layout import ablation_dir, headline_file
from pipeline.methods import METHODS
from pipeline.methods.bn_finetune import freeze_all_but
from pipeline.norms import replay
from pipeline.spec import build_from_spec, default_deployment, spec_for_training
from pipeline.train import to_float, train
from stages import common
from stages.common import Item, run, start, write_timing
from stages.pretrain import cost
from stages.training import checkpoint_of, train_and_save, with_step


def items(params, grid: str) -> list[Item]:
    g = params.ablations[grid]
    model = params.model.model_dump(exclude_defaults=True)
    return [Item("ablation", grid, str(v), cost(g.config_for(v, model)) + (cost(g.then_config()) if g.then else 0))
            for v in g.values]


def main(argv: list[str]) -> None:
    params, item, device = start(argv, items, "grid point")
    name, grid = item.group, params.ablations[item.group]
    value = grid.value_of(item.name)
    cfg = grid.config_for(value, params.model.model_dump(exclude_defaults=True))
    then = grid.then_config()
    arch = cfg.model or params.model
    splits = load_splits(params.data).to(device)
    spec = spec_for_training(arch, cfg, num_classes=splits.num_classes, in_channels=splits.channels,
                             mean=splits.mean, std=splits.std)
    model = build_from_spec(spec, device)
    ecfg = params.evaluate.for_tier("screen").plus(grid.extra_attacks)
    point, stage = ablation_dir(name, value), item.label
    section = {"seed": params.seed, "threads": params.threads, "data": params.data.model_dump(), "model": arch.model_dump(),
               "train": cfg.model_dump(), "then": then.model_dump() if then else None,
               "ablation": {"name": name, "key": grid.key, "value": value},
               "evaluate": {k: v for k, v in ecfg.model_dump().items() if k != "screen"}}

    final = cfg
    trainable = (lambda m: METHODS[cfg.method].trainable(m, cfg)) if METHODS[cfg.method].trainable else None
    if then is not None:  # the point's first training, resumable on its own; the fine-tune is the stage's model
        first = checkpoint_of(item, "-first")
        train(model, splits, cfg, seed=params.seed, checkpoint=first, fingerprint=fingerprint(section),
              desc=f"{stage} (first)", params=trainable)
        for p in model.parameters():
            p.requires_grad_(True)
        spec = with_step(spec, f"{stage} (first)", cfg)
        method = METHODS[then.method]
        added = [c for c in method.conversions(then) if c not in spec.get("conversions", [])]
        replay(model, added)
        spec["conversions"] = [*spec.get("conversions", []), *added]
        if then.trainable == "all":
            trainable = (lambda m: method.trainable(m, then)) if method.trainable else None
        else:
            trainable = lambda m: freeze_all_but(m, then.trainable)  # noqa: E731
        final = then

    how = default_deployment(with_step(spec, stage, final))

    def evaluate_point(tracker) -> None:
        n = min(ecfg.n_samples or len(splits.x_test), len(splits.x_test))
        x, y = to_float(splits.x_test[:n]), splits.y_test[:n]
        if grid.inference_refs is not None:  # norm shaping's Table IV: the PGD robust accuracy per inference ratio
            pgd = next((a for a in ecfg.attack_list if a.name == "pgd"), None)
            if pgd is None:
                raise ConfigError(f"ablations.{name}.inference_refs: needs a pgd attack in evaluate.screen")
            sweep = ratio_sweep(model, x, y, to_float(splits.x_train), grid.inference_refs, pgd, ecfg.threat,
                                batch=params.evaluate.deployment.batch_size, seed=params.seed)
            rows = [{"inference_refs": r, **accs} for r, accs in sweep.items()]
            metrics = {"clean": max(a["clean"] for a in sweep.values()), "n_samples": n, "threat_eps": ecfg.threat,
                       "clean_by_refs": {str(r): a["clean"] for r, a in sweep.items()},
                       "robust_by_refs": {str(r): a["robust"] for r, a in sweep.items()}, "tier": "screen",
                       "ablation": name, "key": grid.key, "value": value}
        else:
            deployed = Deployed(model, how.get("mode", "eval"), route=how.get("route"))
            result = evaluate(deployed, x, y, ecfg, seed=params.seed, desc=stage)
            rows = result.curve_rows()
            per_image = outcomes.of_result(result)  # claims on grid points compare paired
            metrics = {**result.headline(), "tier": "screen", "ablation": name, "key": grid.key, "value": value}
        metrics["test_acc"] = read_json(point / "model" / "metrics.json")["test_acc"]
        with atomic_dir(point / "screen") as tmp:
            write_json(tmp / "metrics.json", metrics)
            if grid.inference_refs is None:
                outcomes.save(tmp / outcomes.FILE, per_image)
            write_csv(tmp / "accuracy.csv", rows)
            tracker.write_ref(tmp)
            write_timing(tmp, stage)
        write_headline(headline_file("ablations", name, value), metrics)
        tracker.record_outs(point / "screen")
        tracker.log_metrics({f"eval_{k}": v for k, v in metrics.items() if isinstance(v, float)})
        robust = metrics.get("worst_case", min((metrics.get("robust_by_refs") or {"": 0.0}).values()))
        print(f"{stage}: clean {metrics['clean']:.3f}, worst case {robust:.3f} (screen tier)")

    train_and_save(item, point / "model", model, spec, final, params, splits, section,
                   registry=f"ablation/{name}/{value}", headline=None, then=evaluate_point, trainable=trainable)
    if then is not None and not common.keep_checkpoints:
        first.unlink(missing_ok=True)


if __name__ == "__main__":
    run(main, items, "ablation")
