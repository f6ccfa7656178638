"""pretrain GROUP[/NAME]: train the models of ``pretrain.GROUP`` from scratch into
models/GROUP/NAME/; a lone GROUP (the DVC stage ``pretrain@GROUP``) trains all of them side by side."""

from pathlib import Path

from pipeline.data import load_splits
from pipeline.layout import MODELS, headline_file
from pipeline.methods import METHODS
from pipeline.spec import build_from_spec, spec_for_training
from stages.common import Item, run, start
from stages.training import train_and_save


def cost(cfg) -> float:
    """Forward passes per example over the epochs (the method's count per step): how long it
    trains, roughly."""
    return max(cfg.epochs, 0.1) * METHODS[cfg.method].forwards(cfg)


def items(params, group: str) -> list[Item]:
    return [Item("pretrain", group, name, cost(cfg)) for name, cfg in params.pretrain[group].models.items()]


def main(argv: list[str]) -> None:
    params, item, device = start(argv, items, "pretrain model")
    cfg = params.training(item.name)
    arch = cfg.model or params.model
    method = METHODS[cfg.method]
    splits = load_splits(params.data).to(device)
    spec = spec_for_training(arch, cfg, num_classes=splits.num_classes, in_channels=splits.channels,
                             mean=splits.mean, std=splits.std)
    model = build_from_spec(spec, device)
    section = {"seed": params.seed, "threads": params.threads, "data": params.data.model_dump(),
               "model": arch.model_dump(), "train": cfg.model_dump()}
    trainable = (lambda m: method.trainable(m, cfg)) if method.trainable else None
    train_and_save(item, Path(MODELS) / item.group / item.name, model, spec, cfg, params, splits, section, registry=item.name,
                   headline=headline_file(MODELS, item.group, item.name), trainable=trainable)


if __name__ == "__main__":
    run(main, items, "pretrain")
