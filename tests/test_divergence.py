"""A training whose loss diverges costs its own rows, not its group (pipeline/divergence.py): the
group finishes the other items, the diverged model's folder holds diverged.json, everything that
would read the model writes a diverged result instead of running, and the report says where it
diverged; ``on_divergence: fail`` stops the group naming the item. And consistent BN's epochs
train at a learning rate a network on fixed statistics survives (docs/mixture-bn.md)."""

import json
import math
import sys

import pytest
import torch
import yaml

from pipeline.config import TrainConfig
from pipeline.train import lr_factor
from tests.conftest import tiny_raw
from tests.e2e import ROOT, copy_project, sh

BOOM = 1.0e6  # a learning rate at which SGD overflows within the first steps


def _raw(on_divergence: str) -> dict:
    """A tiny project: ``standard`` and ``boom`` (the same training at lr BOOM) in one group, a
    fine-tune of boom, both screened with a view of boom, an interpolation between them, a grid
    over lr with one point at BOOM."""
    raw = tiny_raw(yaml.safe_load((ROOT / "params.yaml").read_text()))
    raw["on_divergence"] = on_divergence
    standard = raw["pretrain"]["base"]["models"]["standard"]
    raw["pretrain"] = {"base": {"models": {"standard": standard, "boom": {**standard, "lr": BOOM}}}}
    bn_params = raw["finetune"]["bn_only"]["models"]["bn_params"]
    raw["finetune"] = {"bn_only": {"after": "base", "models": {"boom_bn": {**bn_params, "start": "boom", "epochs": 1}}}}
    raw["evaluations"] = {"base": {"screen": ["standard", "boom"],
                                   "views": {"boom_eval": {"model": "boom", "mode": "eval", "tier": "screen"}}}}
    raw["analyses"] = {"bn": {"interpolate": {"standard_to_boom": {"a": "standard", "b": "boom"}}}}
    raw["ablations"] = {"lr": {"key": "lr", "values": [0.05, BOOM], "train": dict(standard)}}
    _claims_not_run(raw)
    return raw


def _claims_not_run(raw: dict) -> None:
    """The papers' claims whose roles this project does not evaluate are listed as not run."""
    from pipeline.config import Params
    from pipeline.papers import PAPERS

    if "ledger" not in Params.model_fields:
        return
    targets = {t for plan in raw["evaluations"].values() for t in [*plan.get("full", []), *plan.get("screen", []),
                                                                     *plan.get("views", {})]}
    roles = {role for paper in PAPERS.values() for role in paper.roles()}
    raw["ledger"] = {"not_run": sorted(roles - targets)}


def _stage(project, *args, **env):
    return sh([sys.executable, "-m", "stages", *args], project, BNAT_WORKERS="2", **env)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny project with every stage but the report run once, in DAG order; each stage's
    output by name."""
    project = copy_project(tmp_path_factory.mktemp("diverge"), _raw("report"))
    runs = {"fetch": sh([sys.executable, "-m", "stages", "fetch"], project)}
    for stage in (("pretrain", "base"), ("finetune", "bn_only"), ("evaluate", "base"), ("analyze", "bn"),
                  ("ablation", "lr")):
        runs[stage[0]] = _stage(project, *stage)
    return project, runs


@pytest.mark.slow
def test_a_diverged_model_is_written_as_such_and_its_group_finishes(built):
    project, runs = built
    boom, standard = project / "models" / "base" / "boom", project / "models" / "base" / "standard"
    assert (standard / "model.pt").is_file() and (project / "metrics" / "models" / "base" / "standard.json").is_file()
    marker = json.loads((boom / "diverged.json").read_text())
    assert marker["item"] == "pretrain@base/boom" and marker["model"] == "boom"
    assert marker["epoch"] == 1 and marker["step"] >= 1 and marker["reason"].startswith("its loss was")
    assert not (boom / "model.pt").exists() and not (boom / "metrics.json").exists()
    assert not (project / "metrics" / "models" / "base" / "boom.json").exists()  # no headline figures
    assert "pretrain@base/boom: its loss was" in runs["pretrain"].stderr
    assert "error" not in runs["pretrain"].stderr.lower()


@pytest.mark.slow
def test_everything_that_reads_a_diverged_model_is_marked_and_runs_nothing(built):
    project, runs = built
    finetuned = json.loads((project / "models" / "bn_only" / "boom_bn" / "diverged.json").read_text())
    assert finetuned["reason"] == "its start model boom diverged at epoch 1" and finetuned["model"] == "boom"
    assert not (project / "models" / "bn_only" / "boom_bn" / "model.pt").exists()
    for target in ("boom", "boom_eval"):  # an evaluation, and a view of the model, attack nothing
        result = project / "results" / "base" / target
        assert json.loads((result / "diverged.json").read_text())["reason"] == "its model boom diverged at epoch 1"
        assert not (result / "metrics.json").exists() and not (result / "model_card.md").exists()
        assert not (project / "metrics" / "results" / "base" / f"{target}.json").exists()
    assert {"clean", "worst_case"} <= set(json.loads((project / "results" / "base" / "standard" / "metrics.json").read_text()))
    pair = project / "results" / "analyses" / "bn" / "interpolate" / "standard_to_boom"
    assert (pair / "diverged.json").is_file() and not (pair / "interpolation.csv").exists()
    point = project / "results" / "ablations" / "lr"
    assert json.loads((point / "1000000.0" / "diverged.json").read_text())["item"] == "ablation@lr/1000000.0"
    assert (point / "0.05" / "screen" / "metrics.json").is_file()


@pytest.mark.slow
def test_the_report_shows_where_a_model_diverged(built):
    project, _ = built
    _stage(project, "report")
    report = (project / "reports" / "report.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in report.splitlines() if line.startswith("| ")}
    assert "**diverged at epoch 1**" in rows["boom"] and "**diverged at epoch 1**" in rows["boom_eval"]
    assert "diverged" not in rows["standard"]
    assert "## Diverged" in report
    for item in ("pretrain@base/boom", "finetune@bn_only/boom_bn", "evaluate@base/boom", "interpolate@bn/standard_to_boom"):
        assert f"| {item} |" in report
    summary = json.loads((project / "reports" / "summary.json").read_text())
    assert summary["boom"] == {"diverged_at_epoch": 1} and "clean" in summary["standard"]


@pytest.mark.slow
def test_on_divergence_fail_stops_the_group_naming_the_item(tmp_path):
    raw = _raw("fail")
    project = copy_project(tmp_path, raw)
    sh([sys.executable, "-m", "stages", "fetch"], project)
    proc = sh([sys.executable, "-m", "stages", "pretrain", "base"], project, check=False, BNAT_WORKERS="1")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert "error: pretrain@base/boom diverged: loss is nan at epoch 1 step " in proc.stderr, proc.stderr
    assert errors[-1] == "error: pretrain@base/boom failed (exit 2); its output above says why", proc.stderr
    assert not (project / "models" / "base" / "boom" / "diverged.json").exists()
    assert not (project / "models" / "base" / "timing.json").exists()  # the group did not finish


def test_consistent_bn_epochs_train_at_a_capped_learning_rate():
    """The schedule is untouched before the switch to running statistics and capped at
    ``running_stats_lr`` after it; a schedule already below the cap (the thesis' last 10 of 110
    epochs at lr/1000) is untouched throughout."""
    attack = {"eps": 0.1, "step_size": 0.04, "steps": 3}
    cfg = TrainConfig(method="pgd_at", epochs=5, running_stats_epochs=2, attack=attack)
    plain = cfg.model_copy(update={"running_stats_epochs": 0})
    total = 5 * 12
    before, after = range(0, 36), range(36, total)
    assert [lr_factor(cfg, s, total) for s in before] == [lr_factor(plain, s, total) for s in before]
    assert [lr_factor(cfg, s, total) for s in after] == [min(lr_factor(plain, s, total), 0.01) for s in after]
    assert lr_factor(plain, 36, total) > 0.3  # the cosine is still high at the switch: the cap binds
    thesis = TrainConfig(method="pgd_at", epochs=110, running_stats_epochs=10, attack=attack, schedule="piecewise",
                         milestones=[0.3182, 0.6364, 0.8636])
    assert [lr_factor(thesis, s, 110) for s in range(110)] == \
        [lr_factor(thesis.model_copy(update={"running_stats_epochs": 0}), s, 110) for s in range(110)]


@pytest.mark.slow
def test_consistent_mbn_on_16x16_digits_does_not_collapse(digits):
    """MBN (AdvProp's loss) with running statistics for its last 2 of 5 epochs, on the digits at
    16x16: at the schedule's own learning rate (0.037 at the switch) the loss jumped and test
    accuracy fell from 0.85 to 0.13 at the switch, ending at 0.10; capped, it keeps rising."""
    from pipeline.config import ModelConfig
    from pipeline.spec import build_from_spec, spec_for_training
    from pipeline.train import train

    cfg = TrainConfig(method="advprop", epochs=5, batch_size=128, lr=0.1, running_stats_epochs=2,
                      augment={"crop_padding": 1, "flip": False},
                      attack={"eps": 0.1, "step_size": 0.04, "steps": 3, "random_start": True})
    spec = spec_for_training(ModelConfig(arch="resnet_small"), cfg, num_classes=10, in_channels=1,
                             mean=digits.mean, std=digits.std)
    torch.manual_seed(0)
    model = build_from_spec(spec, "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        history = train(model, digits, cfg, seed=0, progress=False)
    finally:
        torch.set_num_threads(threads)
    accs = [row["test_acc"] for row in history]
    assert all(math.isfinite(row["train_loss"]) for row in history)
    assert accs[3] >= accs[2] - 0.02 and accs[4] > 0.85, accs
