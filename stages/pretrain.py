"""pretrain NAME: train the model ``pretrain.NAME`` of params.yaml from scratch into models/NAME/."""

from pathlib import Path

from pipeline.data import load_splits
from pipeline.io import atomic_dir, fingerprint, write_csv, write_json
from pipeline.methods import METHODS
from pipeline.models import build_model, save_model
from pipeline.tracking import StageRun
from pipeline.train import train
from stages.common import device_of, load, one_item, run, seed_everything

CHECKPOINTS = Path("checkpoints")  # resumable state, outside DVC's outs so a killed run keeps it


def main(argv: list[str]) -> None:
    params = load()
    name = one_item(argv, params.pretrain, "pretrain model name")
    cfg = params.pretrain[name]
    device = device_of(params)
    seed_everything(params.seed)
    splits = load_splits(params.data).to(device)
    spec = dict(arch=params.model.arch, num_classes=splits.num_classes, in_channels=splits.channels,
                mean=splits.mean, std=splits.std)
    model = build_model(**spec).to(device)
    model = METHODS[cfg.method].convert(model, cfg)

    section = {"seed": params.seed, "data": params.data.model_dump(), "model": params.model.model_dump(),
               "train": cfg.model_dump()}
    checkpoint = CHECKPOINTS / f"pretrain-{name}.pt"
    out = Path("models") / name
    with StageRun(f"pretrain@{name}", params.tracking.experiment, section,
                  tags={"method": cfg.method, "device": str(device)}) as tracker:
        history = train(model, splits, cfg, seed=params.seed, checkpoint=checkpoint,
                        fingerprint=fingerprint(section),
                        on_epoch=lambda row: tracker.log_metrics(row, step=row["epoch"]))
        last = history[-1]
        metrics = {"test_acc": last["test_acc"], "train_acc": last["train_acc"],
                   "train_loss": last["train_loss"], "epochs": last["epoch"]}
        with atomic_dir(out) as tmp:
            save_model(tmp / "model.pt", model, **spec, method=cfg.method)
            write_json(tmp / "metrics.json", metrics)
            write_csv(tmp / "history.csv", history)
            tracker.write_ref(tmp)
        tracker.log_artifacts(out)
    checkpoint.unlink(missing_ok=True)
    print(f"{name}: clean test accuracy {metrics['test_acc']:.4f} after {metrics['epochs']} epochs -> {out}")


if __name__ == "__main__":
    run(main)
