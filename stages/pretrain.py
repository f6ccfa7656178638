"""pretrain NAME: train the model ``pretrain.NAME`` of params.yaml from scratch into models/NAME/."""

from pipeline.data import load_splits
from pipeline.methods import METHODS
from pipeline.spec import build_from_spec, spec_for_training
from stages.common import run, start
from stages.training import train_and_save


def main(argv: list[str]) -> None:
    params, name, device = start(argv, lambda p: p.pretrain, "pretrain model name")
    cfg = params.pretrain[name]
    arch = cfg.model or params.model
    method = METHODS[cfg.method]
    splits = load_splits(params.data).to(device)
    spec = spec_for_training(arch, cfg, num_classes=splits.num_classes, in_channels=splits.channels,
                             mean=splits.mean, std=splits.std)
    model = build_from_spec(spec, device)
    section = {"seed": params.seed, "data": params.data.model_dump(), "model": arch.model_dump(),
               "train": cfg.model_dump()}
    trainable = (lambda m: method.trainable(m, cfg)) if method.trainable else None
    train_and_save("pretrain", name, model, spec, cfg, params, splits, section, trainable=trainable)


if __name__ == "__main__":
    run(main)
