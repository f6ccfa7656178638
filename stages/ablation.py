"""ablation NAME VALUE: one point of the grid ``ablations.NAME`` of params.yaml (a DVC ``matrix``
stage). Trains the grid's ``train`` entry with its ``key`` set to VALUE into
models/ablation/NAME/VALUE/, then evaluates it at the screen tier (``evaluate.screen``'s attacks,
as the model's method deploys it) into results/ablation/NAME/VALUE/, in one MLflow run."""

from pathlib import Path

from pipeline.config import ConfigError
from pipeline.data import load_splits
from pipeline.deploy import Deployed
from pipeline.evaluate import evaluate
from pipeline.io import atomic_dir, write_csv, write_json
from pipeline.methods import METHODS
from pipeline.spec import build_from_spec, spec_for_training
from pipeline.train import to_float
from stages.common import device_of, load, run, seed_everything, write_timing
from stages.training import train_and_save


def main(argv: list[str]) -> None:
    params = load()
    if len(argv) != 2 or argv[0] not in params.ablations:
        raise ConfigError(f"expected an ablation name out of {sorted(params.ablations)} and a value, got {argv}")
    name, item = argv
    grid = params.ablations[name]
    try:
        value = grid.value_of(item)
    except ValueError as err:
        raise ConfigError(f"ablations.{name}.values: {err}") from None
    device = device_of(params)
    seed_everything(params.seed)
    cfg = grid.config_for(value, params.model.model_dump(exclude_defaults=True))
    arch = cfg.model or params.model
    splits = load_splits(params.data).to(device)
    spec = spec_for_training(arch, cfg, num_classes=splits.num_classes, in_channels=splits.channels,
                             mean=splits.mean, std=splits.std)
    model = build_from_spec(spec, device)
    ecfg = params.evaluate.for_tier("screen")
    point, stage = f"ablation/{name}/{value}", f"{name}@{value}"
    section = {"seed": params.seed, "data": params.data.model_dump(), "model": arch.model_dump(),
               "train": cfg.model_dump(), "ablation": {"name": name, "key": grid.key, "value": value},
               "evaluate": {k: v for k, v in ecfg.model_dump().items() if k not in ("models", "views", "screen")}}

    def evaluate_point(tracker) -> None:
        n = min(ecfg.n_samples or len(splits.x_test), len(splits.x_test))
        x, y = to_float(splits.x_test[:n]), splits.y_test[:n]
        how = METHODS[cfg.method].deployment
        deployed = Deployed(model, how.get("mode", "eval"), route=how.get("route"))
        result = evaluate(deployed, x, y, ecfg, seed=params.seed, desc=stage)
        metrics = {**result.headline(), "tier": "screen", "ablation": name, "key": grid.key, "value": value}
        with atomic_dir(Path("results") / point) as tmp:
            write_json(tmp / "metrics.json", metrics)
            write_csv(tmp / "accuracy.csv", result.curve_rows())
            tracker.write_ref(tmp)
            write_timing(tmp, stage)
        tracker.log_metrics({f"eval_{k}": v for k, v in metrics.items() if isinstance(v, float)})
        print(f"{stage}: clean {metrics['clean']:.3f}, worst case {metrics['worst_case']:.3f} (screen tier)")

    train_and_save("ablation", point, model, spec, cfg, params, splits, section, run_name=stage, then=evaluate_point)


if __name__ == "__main__":
    run(main)
