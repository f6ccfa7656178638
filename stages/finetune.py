"""finetune NAME: train an earlier model further (``finetune.NAME``), all of it or part of it, into
models/NAME/. The start model's conversions are replayed when it loads; the fine-tune's method may
add its own, and its step is appended to the spec."""

from pipeline.config import ConfigError
from pipeline.data import load_splits
from pipeline.methods import METHODS
from pipeline.methods.bn_finetune import freeze_all_but, share_trained
from pipeline.norms import replay
from stages.common import run, start, trained_model
from stages.training import train_and_save


def main(argv: list[str]) -> None:
    params, name, device = start(argv, lambda p: p.finetune, "finetune model name")
    cfg = params.finetune[name]
    method = METHODS[cfg.method]
    splits = load_splits(params.data).to(device)
    model, spec = trained_model(cfg.start, device)
    # a conversion the start model already has (AdvProp fine-tuned with AdvProp) is not applied twice
    added = [c for c in method.conversions(cfg) if c not in spec.get("conversions", [])]
    replay(model, added)
    spec["conversions"] = [*spec.get("conversions", []), *added]
    section = {"seed": params.seed, "data": params.data.model_dump(), "start_spec": spec, "finetune": cfg.model_dump()}
    if cfg.trainable == "all":
        trainable, extra = ((lambda m: method.trainable(m, cfg)) if method.trainable else None), {}
    else:
        try:
            freeze_all_but(model, cfg.trainable)
        except ValueError as err:
            raise ConfigError(f"finetune.{name}.trainable: {err}") from None
        trainable, extra = (lambda m: freeze_all_but(m, cfg.trainable)), share_trained(model, cfg.trainable)
    train_and_save("finetune", name, model, spec, cfg, params, splits, section, trainable=trainable,
                   extra_metrics=extra)


if __name__ == "__main__":
    run(main)
