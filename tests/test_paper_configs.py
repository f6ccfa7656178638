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
    while chain[-1] in params.finetune:
        chain.append(params.finetune[chain[-1]].start)
    spec = spec_for_training(params.architecture(name), params.pretrain[chain[-1]], num_classes=10, in_channels=3,
                             mean=splits.mean, std=splits.std)
    model = build_from_spec(spec)
    done = list(spec["conversions"])
    for step in reversed(chain[:-1]):
        cfg = params.finetune[step]
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
    for name, cfg in params.pretrain.items():
        arch = params.pretrain[name].model or params.model
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
    for name, cfg in params.finetune.items():
        model = _fresh_model(params, name, cifar_splits)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        history = train(model, cifar_splits, _small_batch(cfg), seed=0, progress=False, max_steps=1,
                        params=lambda m: _trainable(m, cfg))
        assert len(history) == 1 and torch.isfinite(torch.tensor(history[0]["train_loss"])), name
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        assert changed, f"{name}: the step changed nothing"


def _references(node) -> set[str]:
    """The params keys dvc.yaml interpolates (``${a.b}``), ``item``/``key`` excluded."""
    import re

    found = set()
    if isinstance(node, dict):
        for v in node.values():
            found |= _references(v)
    elif isinstance(node, list):
        for v in node:
            found |= _references(v)
    elif isinstance(node, str):
        found |= {m for m in re.findall(r"\$\{([^}]+)\}", node) if m.split(".")[0] not in ("item", "key")}
    return found


@pytest.mark.parametrize("path", [ROOT / "params.yaml", *PAPER_CONFIGS], ids=lambda p: p.name)
def test_every_key_dvc_yaml_interpolates_is_in_each_params_file(path):
    """A config copied to params.yaml must let DVC build its graph: every grid and section that
    dvc.yaml names must be there (an empty grid is ``values: []``)."""
    import yaml

    raw = yaml.safe_load(path.read_text())
    for ref in sorted(_references(yaml.safe_load((ROOT / "dvc.yaml").read_text()))):
        node = raw
        for part in ref.split("."):
            assert isinstance(node, dict) and part in node, f"{path.name}: dvc.yaml needs {ref}"
            node = node[part]
