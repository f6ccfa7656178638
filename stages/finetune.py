"""finetune NAME: fine-tune part of a pretrained model (``finetune.NAME``) into models/NAME/."""

from pipeline.data import load_splits
from pipeline.methods.bn_finetune import freeze_all_but, share_trained
from stages.common import run, start, trained_model
from stages.training import train_and_save


def main(argv: list[str]) -> None:
    params, name, device = start(argv, lambda p: p.finetune, "finetune model name")
    cfg = params.finetune[name]
    splits = load_splits(params.data).to(device)
    model, spec = trained_model(cfg.start, device)
    spec.pop("method", None)
    section = {"seed": params.seed, "data": params.data.model_dump(), "model": params.model.model_dump(),
               "finetune": cfg.model_dump()}
    train_and_save("finetune", name, model, spec, cfg, params, splits, section,
                   trainable=lambda m: freeze_all_but(m, cfg.trainable),
                   extra_metrics=share_trained(model, cfg.trainable))


if __name__ == "__main__":
    run(main)
