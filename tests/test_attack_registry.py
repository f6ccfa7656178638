"""The attack registry: an attack is one module plus one registry entry, and evaluation, the
report and the ledger's wording read it from there."""

import copy
import sys
import textwrap

import pytest
import torch

from pipeline.attacks import ATTACKS, attack_of
from pipeline.config import ConfigError, parse_params
from pipeline.deploy import Deployed
from pipeline.evaluate import evaluate

TOY_MODULE = '''
"""A toy attack: every pixel moved by eps in a random sign, clipped to [0, 1]."""
from typing import Literal

import torch

from pipeline.attacks.base import Attack, AttackEntry


class CornerSpec(AttackEntry):
    name: Literal["corner"]
    tries: int = 1


def build(spec, target):
    def run(x, y, eps):
        return (x + eps * torch.randn_like(x).sign()).clamp(0, 1)
    return run


CORNER = Attack("corner", CornerSpec, build, "Random corner", details=lambda s: f" ({s.tries} try)", cost=0.1)
'''


@pytest.fixture
def corner(tmp_path, monkeypatch):
    """The toy module, written and imported like any attack module, and its one registry line."""
    (tmp_path / "toy_corner_attack.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toy_corner_attack", raising=False)
    from toy_corner_attack import CORNER

    monkeypatch.setitem(ATTACKS, CORNER.name, CORNER)  # the registry line
    return CORNER


def test_a_new_attack_is_a_module_and_a_registry_line(corner, default_raw, digits_model, digits):
    from pipeline.analysis.report import ModelResult, build_report

    raw = copy.deepcopy(default_raw)
    raw["evaluate"]["attacks"].insert(2, {"name": "corner", "at": "threat"})
    params = parse_params(raw)
    spec = params.evaluate.attack_list[2]
    assert type(spec).__name__ == "CornerSpec" and spec.tries == 1
    assert params.model_dump()["evaluate"]["attacks"][2]["name"] == "corner"  # dumped whole, not as the base

    # the toy first, then the default's PGD: evaluated and reported like any attack
    raw["evaluate"]["attacks"] = [{"name": "corner", "at": "threat"}, default_raw["evaluate"]["attacks"][1]]
    params = parse_params(raw)
    t = params.evaluate.threat
    x, y = digits.x_test[:40].float() / 255, digits.y_test[:40]
    result = evaluate(Deployed(digits_model), x, y, params.evaluate.model_copy(update={"eps": [0.0, t]}),
                      progress=False)
    head = result.headline()
    # the first threat attack ran on every clean-correct image (its own column) and fooled some, not all
    assert result.ran_on[("corner", t)] == int(result.clean.sum())
    assert 0 < head["corner"] < head["clean"] and head["corner_alone"] == head["corner"]
    assert head["worst_case"] <= min(head["corner"], head["pgd"])

    report, _, _ = build_report([ModelResult("standard", {**head, "model": "standard"}, result.curve_rows(), {}, None)],
                                params)
    assert "Random corner (1 try) at the threat eps" in report  # its label and details in the list of attacks
    assert "| clean | Random corner | +PGD |" in report  # its column, first of the threat table
    assert "| Random corner |" in report.split("### Each attack alone")[1]


def test_an_unregistered_attack_is_a_one_line_error_naming_the_known_ones(default_raw):
    raw = copy.deepcopy(default_raw)
    raw["evaluate"]["attacks"].append({"name": "corner"})
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    msg = str(err.value)
    assert "\n" not in msg and "unknown attack 'corner'" in msg and "pgd" in msg


def test_an_entry_is_checked_by_its_own_attack_spec(default_raw):
    raw = copy.deepcopy(default_raw)
    raw["evaluate"]["attacks"][1]["restarts"] = 0  # pgd's own field
    with pytest.raises(ConfigError, match=r"evaluate\.attacks\.1\.restarts"):
        parse_params(raw)
    raw = copy.deepcopy(default_raw)
    raw["evaluate"]["attacks"][0]["steps"] = 3  # fgsm has no steps
    with pytest.raises(ConfigError, match=r"evaluate\.attacks\.0\.steps: unknown key"):
        parse_params(raw)


def test_every_registered_attack_names_itself_and_builds_against_a_model(digits_model, digits):
    """Each registry entry parses a minimal entry of its own and, where the model admits it,
    returns examples inside the eps ball and [0, 1]."""
    from pipeline.evaluate import attack_fn

    x, y = digits.x_test[:8].float() / 255, digits.y_test[:8]
    deployed = Deployed(digits_model)
    minimal = {"autoattack": {"version": "custom", "attacks": ["apgd-ce"], "label": "apgd"}}
    for name, attack in ATTACKS.items():
        spec = attack.spec.model_validate({"name": name, **minimal.get(name, {})})
        assert attack_of(spec) is attack and attack.column(spec) and attack.in_words(spec)
        if name == "afa_adaptive":  # needs a weight generator: refused with a message on a plain model
            with pytest.raises(ValueError, match="weight generator"):
                attack_fn(spec, deployed, eot=1)(x, y, 0.1)
            continue
        torch.manual_seed(0)
        x_adv = attack_fn(spec, deployed, eot=1, surrogate=deployed)(x, y, 0.1)
        assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1
        assert (x_adv - x).abs().max() <= 0.1 + 1e-6, name
