import copy
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_default_params_validate():
    params = load_params(ROOT / "params.yaml")
    assert params.data.dataset == "digits"
    assert {t.model for t in params.targets.values()} <= set(params.model_names)
    assert params.group_of("bn_params") == "bn_only" and params.model_path("standard") == "base/standard"


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_paper_configs_validate(path):
    load_params(path)


def test_fractions_are_read_as_numbers(default_raw):
    default_raw["pretrain"]["base"]["models"]["adversarial"]["attack"]["eps"] = "8/255"
    params = parse_params(default_raw)
    assert params.training("adversarial").attack.eps == pytest.approx(8 / 255)


def _set(raw, dotted, value):
    keys = dotted.split(".")
    node = raw
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = int(keys[-1]) if isinstance(node, list) else keys[-1]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()

BAD = [
    ("unknown top-level key", "colour", "red", "colour: unknown key"),
    ("unknown nested key", "pretrain.base.models.standard.learning_rate", 0.1, "pretrain.base.models.standard.learning_rate: unknown key"),
    ("wrong type", "pretrain.base.models.standard.epochs", "ten", "pretrain.base.models.standard.epochs"),
    ("negative eps", "pretrain.base.models.adversarial.attack.eps", -0.1, "pretrain.base.models.adversarial.attack.eps"),
    ("eps above 1", "pretrain.base.models.adversarial.attack.eps", 8, "pretrain.base.models.adversarial.attack.eps"),
    ("bad fraction", "pretrain.base.models.adversarial.attack.eps", "8/zero", "pretrain.base.models.adversarial.attack.eps"),
    ("empty eps grid", "evaluate.eps", [], "evaluate.eps"),
    ("eps in grid above 1", "evaluate.eps.1", 2.0, "evaluate.eps.1"),
    ("unknown model", "model.arch", "resnet9000", "model.arch"),
    ("unknown method", "pretrain.base.models.standard.method", "magic", "pretrain.base.models.standard.method"),
    ("unknown dataset", "data.dataset", "imagenet22k", "data.dataset"),
    ("missing section", "evaluate", _DELETE, "evaluate"),
    ("adversarial method without attack", "pretrain.base.models.adversarial.attack", None, "pretrain.base.models.adversarial.attack"),
    ("threat eps off the grid", "evaluate.threat_eps", 0.123, "evaluate.threat_eps"),
    ("evaluating a model never trained", "evaluations.base.full", ["standard", "ghost"], "evaluations.base.full.1"),
    ("evaluating a model of another group", "evaluations.base.screen", ["advprop"], "evaluations.base.screen.0: no model named 'advprop' in group 'base'"),
    ("a plan for no group", "evaluations.nope", {"full": []}, "evaluations.nope: no group named 'nope'"),
    ("a model in two groups", "pretrain.mixture_bn.models.standard", {"method": "standard", "epochs": 1},
     "pretrain.mixture_bn.models.standard: the name is already a model of group 'base'"),
    ("a fine-tune after an unknown group", "finetune.bn_only.after", "nope", "finetune.bn_only.after: no other group"),
    ("a fine-tune start outside its after group", "finetune.bn_only.models.bn_params.start", "advprop",
     "finetune.bn_only.models.bn_params.start: no model named 'advprop' in group 'base'"),
    ("analysing a model never trained", "analyses.bn.interpolate.adv_to_clean_bn.a", "ghost",
     "analyses.bn.interpolate.adv_to_clean_bn.a: no model named 'ghost'"),
    ("zero threads", "threads", 0, "threads"),
    ("unknown workers", "workers", "many", "workers"),
    ("negative epochs", "pretrain.base.models.standard.epochs", -1, "pretrain.base.models.standard.epochs"),
    ("momentum of 1", "pretrain.base.models.standard.momentum", 1.0, "pretrain.base.models.standard.momentum"),
    ("unknown schedule", "pretrain.base.models.standard.schedule", "exponential", "pretrain.base.models.standard.schedule"),
    ("npz without a path", "data.dataset", "npz", "data.path"),
    ("unknown AutoAttack version", "evaluate.attacks.5.version", "fast", "evaluate.attacks.5.version: Input should be"),
    ("unknown attack", "evaluate.attacks.0.name", "laser", "evaluate.attacks.0.name: unknown attack 'laser'; known: afa_adaptive"),
    ("unknown protocol", "evaluate.protocol", "bestpaper", "evaluate.protocol"),
    ("protocol and an explicit grid", "evaluate.protocol", "robmask", "evaluate.attacks"),
    ("unknown deployment mode", "evaluate.deployment.mode", "magic", "evaluate.deployment.mode"),
    ("unknown surrogate", "evaluate.checks.surrogate", "ghost", "evaluate.checks.surrogate"),
    ("surrogate without its group", "evaluate.checks.surrogate", "standard", "name it as GROUP/NAME"),
    ("negative seed", "seed", -1, "seed"),
]


@pytest.mark.parametrize("what,key,value,expect", BAD, ids=[b[0] for b in BAD])
def test_bad_params_fail_with_the_key_path_in_one_line(default_raw, what, key, value, expect):
    raw = copy.deepcopy(default_raw)
    _set(raw, key, value)
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("params.yaml: ")
    assert expect in msg, msg


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="mapping"):
        load_params(bad)


@pytest.mark.parametrize("what,key,value,expect", BAD, ids=[b[0] for b in BAD])
def test_a_stage_given_bad_params_exits_2_with_one_line_and_writes_nothing(
        default_raw, what, key, value, expect, tmp_path, monkeypatch, capsys):
    import stages.common
    import stages.pretrain

    raw = copy.deepcopy(default_raw)
    _set(raw, key, value)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(stages.common, "PARAMS_FILE", str(params))
    monkeypatch.setattr(sys, "argv", ["stages.pretrain", "base/standard"])
    with pytest.raises(SystemExit) as exit_:
        stages.common.run(stages.pretrain.main, stages.pretrain.items, "pretrain")
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no out, no store, no checkpoint


def test_a_grids_extra_attacks_join_its_screen_suite_and_a_clash_is_an_error_naming_the_grid(default_raw):
    params = parse_params(copy.deepcopy(default_raw))
    grid = params.ablations["clean_ratio"]
    suite = params.evaluate.for_tier("screen").plus(grid.extra_attacks)
    keys = [a.key for a in suite.attack_list]
    assert keys[:len(params.evaluate.screen.attacks)] == [a.key for a in params.evaluate.screen.attacks]
    assert keys[-3:] == ["pgd_10", "pgd_20", "pgd_100"] and all(a.alone for a in suite.attack_list[-3:])
    raw = copy.deepcopy(default_raw)
    raw["ablations"]["clean_ratio"]["extra_attacks"] = [{"name": "pgd", "steps": 10}]  # the screen's own key
    with pytest.raises(ConfigError, match="ablations.clean_ratio.extra_attacks: .*each attack may appear once"):
        parse_params(raw)
