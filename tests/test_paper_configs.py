"""Paper configs validate, and their first training step runs on real CIFAR-10 images."""

from pathlib import Path

import pytest
import torch

from pipeline.config import DataConfig, load_params
from pipeline.data import Splits, channel_stats, prepare
from pipeline.methods import METHODS
from pipeline.methods.bn_finetune import freeze_all_but
from pipeline.norms import replay
from pipeline.spec import build_from_spec, spec_for_training
from pipeline.train import train

ROOT = Path(__file__).resolve().parents[1]
PAPER_CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def cifar_splits(cifar_mini):
    arrays = prepare(DataConfig(dataset="npz", path=str(cifar_mini)))
    mean, std = channel_stats(arrays["x_train"])
    t = {k: torch.from_numpy(v) for k, v in arrays.items()}
    return Splits(t["x_train"], t["y_train"].long(), t["x_test"][:8], t["y_test"][:8].long(),
                  tuple(map(float, mean)), tuple(map(float, std)))


def _fresh_model(params, name, splits):
    """The network of ``name`` as its training stage builds it: its first ancestor's network with
    the conversions of every fine-tune on the way replayed (AFA's stage II after stage I)."""
    torch.manual_seed(0)
    chain = [name]
    while params.start_of(chain[-1]) is not None:
        chain.append(params.start_of(chain[-1]))
    spec = spec_for_training(params.architecture(name), params.training(chain[-1]), num_classes=10, in_channels=3,
                             mean=splits.mean, std=splits.std)
    model = build_from_spec(spec)
    done = list(spec["conversions"])
    for step in reversed(chain[:-1]):
        cfg = params.training(step)
        added = [c for c in METHODS[cfg.method].conversions(cfg) if c not in done]
        replay(model, added)
        done += added
    return model


def _trainable(model, cfg):
    method = METHODS[cfg.method]
    if cfg.trainable == "all":
        return method.trainable(model, cfg) if method.trainable else [p for p in model.parameters()]
    return freeze_all_but(model, cfg.trainable)


def _small_batch(cfg):
    """The paper's settings on a batch of 2 with one attack step: one step still runs every part
    of the method (crafting, each branch, the loss, the update), at a fraction of a full batch's
    cost for the wide networks on a CPU."""
    attack = cfg.attack and cfg.attack.model_copy(update={"steps": 1})
    return cfg.model_copy(update={"batch_size": min(cfg.batch_size, 2), "attack": attack})


# Settings that change the numbers a step computes but not which code it runs: entries that differ
# only in these (the 20- and 100-epoch rows of a table, one network on two datasets with their own
# learning rates and augmentation) take their first step once per test session.
NUMBERS_ONLY = {"epochs": 1, "running_stats_epochs": 0, "lr": 0.1, "momentum": 0.9, "nesterov": False,
                "weight_decay": 0.0, "milestones": [0.5], "gamma": 0.1, "augment": None}


STEPPED: set = set()  # (training settings, architecture) whose first step ran already, in any config


def _points(params):
    """Every model a config trains from scratch: its pretrain entries, then each ablation point
    (a grid's follow-up fine-tune runs as the fine-tunes do), less those whose step differs from
    one already taken only in NUMBERS_ONLY."""
    for name, cfg in [(n, params.training(n)) for n in params.trained if not params.is_finetune(n)]:
        arch = cfg.model or params.model
        key = (cfg.model_copy(update=NUMBERS_ONLY).model_dump_json(), arch.model_dump_json())
        if key not in STEPPED:
            STEPPED.add(key)
            yield name, cfg, arch
    for grid_name, grid in params.ablations.items():
        for v in grid.values:
            cfg = grid.config_for(v, params.model.model_dump(exclude_defaults=True))
            yield f"{grid_name}@{v}", cfg, cfg.model or params.model


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.name)
def test_first_training_step_of_each_model_runs(path, cifar_splits):
    params = load_params(path)
    for name, cfg, arch in _points(params):
        torch.manual_seed(0)
        model = build_from_spec(spec_for_training(arch, cfg, num_classes=10, in_channels=3, mean=cifar_splits.mean,
                                                  std=cifar_splits.std))
        before = model.fc.weight.detach().clone()
        history = train(model, cifar_splits, _small_batch(cfg), seed=0, progress=False, max_steps=1)
        if cfg.epochs == 0:  # an initialization only (random filters for BN-only training)
            assert history == [] and torch.equal(before, model.fc.weight)
            continue
        assert len(history) == 1 and torch.isfinite(torch.tensor(history[0]["train_loss"]))
        assert not torch.equal(before, model.fc.weight), f"{name}: the step changed nothing"


@pytest.mark.parametrize("path", [p for p in PAPER_CONFIGS if load_params(p).finetune], ids=lambda p: p.name)
def test_first_step_of_each_finetuning_runs(path, cifar_splits):
    params = load_params(path)
    for name, cfg in [(n, params.training(n)) for n in params.trained if params.is_finetune(n)]:
        model = _fresh_model(params, name, cifar_splits)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        history = train(model, cifar_splits, _small_batch(cfg), seed=0, progress=False, max_steps=1,
                        params=lambda m: _trainable(m, cfg))
        assert len(history) == 1 and torch.isfinite(torch.tensor(history[0]["train_loss"])), name
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        assert changed, f"{name}: the step changed nothing"


def _stage_params(dvc: dict, raw: dict) -> list[tuple[str, str]]:
    """(stage, params key) for every stage the params file makes of dvc.yaml (a ``foreach`` over
    each entry of its section) and every key it lists, with ``${key}`` and ``${...}`` filled in."""
    import re

    def fill(text: str, key: str) -> str:
        def value(match):
            ref = match.group(1)
            if ref == "key":
                return key
            node = raw
            for part in ref.split("."):
                node = node[part]
            return str(node)
        return re.sub(r"\$\{([^}]+)\}", value, text)

    out = []
    for name, stage in dvc["stages"].items():
        if "foreach" in stage:
            section = stage["foreach"].strip("${}")
            assert section in raw, f"dvc.yaml's {name} needs the section {section} (an empty one is {{}})"
            for key in raw[section]:
                out += [(f"{name}@{key}", fill(p, key)) for p in stage["do"].get("params", [])]
        else:
            out += [(name, p) for p in stage.get("params", [])]
    return out


@pytest.mark.parametrize("path", [ROOT / "params.yaml", *PAPER_CONFIGS], ids=lambda p: p.name)
def test_every_params_key_of_every_stage_is_in_each_params_file(path):
    """A config copied to params.yaml must let DVC build its graph and check each stage's params:
    every section dvc.yaml loops over and every key a stage lists must be there."""
    import yaml

    raw = yaml.safe_load(path.read_text())
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for stage, key in _stage_params(dvc, raw):
        node = raw
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{path.name}: stage {stage} lists the params key {key}"
            node = node[part]


def test_the_smooth_activation_config_trains_the_theses_pgd_1_fgsm_with_random_initialization():
    cfg = load_params(ROOT / "configs" / "cifar10_resnet50_smooth.yaml")
    attack = cfg.ablations["activation"].config_for("relu").attack
    assert attack.steps == 1 and attack.random_start and attack.step_size == attack.eps
