"""finetune NAME: fine-tune part of a pretrained model (``finetune.NAME``) into models/NAME/."""

from pathlib import Path

from pipeline.data import load_splits
from pipeline.methods.bn_finetune import freeze_all_but, share_trained
from pipeline.models import load_model
from stages.common import device_of, load, one_item, run, seed_everything
from stages.training import train_and_save


def main(argv: list[str]) -> None:
    params = load()
    name = one_item(argv, params.finetune, "finetune model name")
    cfg = params.finetune[name]
    device = device_of(params)
    seed_everything(params.seed)
    splits = load_splits(params.data).to(device)
    model, spec = load_model(Path("models") / cfg.start / "model.pt", map_location=device)
    spec.pop("method", None)
    section = {"seed": params.seed, "data": params.data.model_dump(), "model": params.model.model_dump(),
               "finetune": cfg.model_dump()}
    train_and_save("finetune", name, model, spec, cfg, params, splits, section,
                   trainable=lambda m: freeze_all_but(m, cfg.trainable),
                   extra_metrics=share_trained(model, cfg.trainable))


if __name__ == "__main__":
    run(main)
