"""finetune GROUP[/NAME]: train models of the group ``finetune.GROUP.after`` further, all of them or
part of them, into models/GROUP/NAME/; a lone GROUP (the DVC stage ``finetune@GROUP``) runs every
fine-tune of the group side by side. The start model's conversions are replayed when it loads;
the fine-tune's method may add its own, and its step is appended to the spec."""

from pathlib import Path

from pipeline.config import ConfigError
from pipeline.data import load_splits
from pipeline.layout import MODELS, headline_file
from pipeline.methods import METHODS
from pipeline.methods.bn_finetune import freeze_all_but, share_trained
from pipeline.norms import replay
from stages.common import Item, run, start, trained_model
from stages.pretrain import cost
from stages.training import train_and_save


def items(params, group: str) -> list[Item]:
    return [Item("finetune", group, name, cost(cfg)) for name, cfg in params.finetune[group].models.items()]


def main(argv: list[str]) -> None:
    params, item, device = start(argv, items, "fine-tuned model")
    name = item.name
    cfg = params.training(name)
    method = METHODS[cfg.method]
    splits = load_splits(params.data).to(device)
    model, spec = trained_model(params, cfg.start, device)
    # a conversion the start model already has (AdvProp fine-tuned with AdvProp) is not applied twice
    added = [c for c in method.conversions(cfg) if c not in spec.get("conversions", [])]
    replay(model, added)
    spec["conversions"] = [*spec.get("conversions", []), *added]
    section = {"seed": params.seed, "threads": params.threads, "data": params.data.model_dump(), "start_spec": spec,
               "finetune": cfg.model_dump()}
    if cfg.trainable == "all":
        trainable, extra = ((lambda m: method.trainable(m, cfg)) if method.trainable else None), {}
    else:
        try:
            freeze_all_but(model, cfg.trainable)
        except ValueError as err:
            raise ConfigError(f"finetune.{item.group}.models.{name}.trainable: {err}") from None
        trainable, extra = (lambda m: freeze_all_but(m, cfg.trainable)), share_trained(model, cfg.trainable)
    train_and_save(item, Path(MODELS) / item.group / name, model, spec, cfg, params, splits, section, registry=name,
                   headline=headline_file(MODELS, item.group, name), trainable=trainable, extra_metrics=extra)


if __name__ == "__main__":
    run(main, items, "finetune")
