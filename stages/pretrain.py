"""pretrain NAME: train the model ``pretrain.NAME`` of params.yaml from scratch into models/NAME/."""

from pipeline.data import load_splits
from pipeline.methods import METHODS
from pipeline.models import build_model
from stages.common import run, start
from stages.training import train_and_save


def main(argv: list[str]) -> None:
    params, name, device = start(argv, lambda p: p.pretrain, "pretrain model name")
    cfg = params.pretrain[name]
    splits = load_splits(params.data).to(device)
    spec = dict(arch=params.model.arch, num_classes=splits.num_classes, in_channels=splits.channels,
                mean=splits.mean, std=splits.std)
    model = METHODS[cfg.method].convert(build_model(**spec).to(device), cfg)
    section = {"seed": params.seed, "data": params.data.model_dump(), "model": params.model.model_dump(),
               "train": cfg.model_dump()}
    train_and_save("pretrain", name, model, spec, cfg, params, splits, section)


if __name__ == "__main__":
    run(main)
