"""What pretrain, finetune and ablation share: train a model with resumable checkpoints and write
its folder (model.pt, metrics.json, history.csv, mlflow_run.json, timing.json) in one rename.

A training is one MLflow run even when it was killed and resumed: beside the checkpoint,
``checkpoints/STAGE@GROUP/NAME.mlflow.json`` names the run, which the next attempt continues. The
model is logged as the run's MLflow model and registered (``pipeline.tracking.registered_name``).
Run alone, an item removes its checkpoint once its folder is written; run by its group, the
checkpoint stays until the whole group has succeeded (stages.group)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch import nn

from pipeline.config import Params, TrainConfig
from pipeline.data import Splits
from pipeline.io import atomic_dir, fingerprint, write_csv, write_headline, write_json
from pipeline.methods import METHODS
from pipeline.spec import save_model
from pipeline.tracking import StageRun
from pipeline.train import clean_accuracy, train
from stages import common
from stages.common import Item, write_timing

CHECKPOINTS = Path("checkpoints")  # resumable state, outside DVC's outs so a killed run keeps it


def checkpoint_of(item: Item, suffix: str = "") -> Path:
    return CHECKPOINTS / f"{item.stage}@{item.group}" / f"{item.name}{suffix}.pt"


def with_step(spec: dict, stage: str, cfg: TrainConfig) -> dict:
    """``spec`` with this training step appended: its method, options and trained parameters;
    the method's deployment becomes the model's default when it declares one."""
    method = METHODS[cfg.method]
    step = {"stage": stage, "method": cfg.method, "options": cfg.options.model_dump(),
            "trainable": getattr(cfg, "trainable", "all"),
            "attack": cfg.attack.model_dump() if cfg.attack is not None else None,
            **({"amp": True} if cfg.amp else {})}  # bf16 autocast (on CUDA): the model card says it
    deployment = method.deployment if method.deployment is not None else spec.get("deployment")
    return {**spec, "steps": [*spec.get("steps", []), step], "method": cfg.method,
            "deployment": deployment or {"mode": "eval"}}


def train_and_save(item: Item, out: Path, model: nn.Module, spec: dict, cfg: TrainConfig, params: Params,
                   splits: Splits, section: dict, *, registry: str, headline: Path | None,
                   trainable: Callable[[nn.Module], list] | None = None, extra_metrics: dict | None = None,
                   then: Callable[[StageRun], None] | None = None) -> dict:
    """Train ``model`` into ``out`` under one MLflow run named after the item, and register it as
    ``registry``; ``headline`` gets its headline figures. ``then(tracker)`` runs inside that run
    after the model is written (an ablation point's evaluation) and writes the item's timing.json
    into its own, later folder."""
    checkpoint = checkpoint_of(item)
    run_file = checkpoint.with_suffix(".mlflow.json")  # the run a resumed training continues
    key = fingerprint(section)
    with StageRun(item.label, params.tracking.experiment, section,
                  tags={"method": cfg.method, "device": str(splits.x_train.device)},
                  resume=run_file, resume_key=key) as tracker:
        logged = tracker.logged_steps("test_acc") if tracker.resumed else set()  # the epochs logged before a kill

        def on_epoch(row: dict) -> None:
            tracker.log_metrics(row, step=row["epoch"])
            logged.add(row["epoch"])

        history = train(model, splits, cfg, seed=params.seed, checkpoint=checkpoint,
                        fingerprint=key, params=trainable, desc=item.label, on_epoch=on_epoch)
        for row in history:  # an epoch checkpointed just before a kill, never logged
            if row["epoch"] not in logged:
                tracker.log_metrics(row, step=row["epoch"])
        if history:
            last = history[-1]
            metrics = {"test_acc": last["test_acc"], "train_acc": last["train_acc"],
                       "train_loss": last["train_loss"], "epochs": last["epoch"]}
        else:  # zero epochs: the initialization itself
            metrics = {"test_acc": clean_accuracy(model, splits.x_test, splits.y_test), "epochs": 0}
        metrics.update(extra_metrics or {})
        for p in model.parameters():
            p.requires_grad_(True)
        full_spec = with_step(spec, item.label, cfg)
        with atomic_dir(out) as tmp:
            save_model(tmp / "model.pt", model, full_spec)
            write_json(tmp / "metrics.json", metrics)
            write_csv(tmp / "history.csv", history or [{"epoch": 0, "test_acc": metrics["test_acc"]}])
            tracker.log_model(tmp / "model.pt", registry, full_spec, tuple(splits.x_train.shape[1:]))
            tracker.write_ref(tmp)
            if then is None:
                write_timing(tmp, item.label)
        if headline is not None:
            write_headline(headline, metrics)
        per_epoch = set(history[0]) if history else set()
        tracker.log_metrics({k: v for k, v in metrics.items() if k not in per_epoch})
        tracker.log_artifacts(out, skip=("model.pt",) if tracker.model else ())  # the logged model holds it
        if then is not None:
            then(tracker)
    if not common.keep_checkpoints:
        checkpoint.unlink(missing_ok=True)
        run_file.unlink(missing_ok=True)
    print(f"{item.label}: clean test accuracy {metrics['test_acc']:.4f} after {metrics['epochs']} epochs -> {out}")
    return metrics
