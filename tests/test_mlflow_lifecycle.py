"""The MLflow side of a stage's life: its model in the registry, its end (finished, failed,
killed, resumed), superseded runs, exact metric values, the dirty flag, the report's metrics and
a store that moved with its project."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from pipeline.tracking import (StageRun, dirty_files, make_current, metric_value, registered_name,
                               sync_workspace)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty folder as the working directory, logging to its own SQLite store."""
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "PIPELINE_PARENT_RUN_ID", "DVC_EXP_NAME", "PIPELINE_PARAMS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _client(folder: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")


def _runs(folder: Path, stage: str, current: bool = True):
    """The runs of ``stage``: its current ones (the UI link's search), or all of them."""
    from pipeline.tracking import CURRENT_RUNS

    client = _client(folder)
    exp = client.get_experiment_by_name("exp")
    query = f"tags.stage = '{stage}'" + (f" and {CURRENT_RUNS}" if current else "")
    return client.search_runs([exp.experiment_id], filter_string=query, run_view_type=ViewType.ALL)


def _advprop_model(digits):
    """A two-branch network that deploys through its second branch by default (as a view of
    AdvProp's auxiliary BN would), so that the route matters."""
    from pipeline.spec import build_from_spec, make_spec

    spec = make_spec(arch="resnet_small", num_classes=10, in_channels=1, mean=digits.mean, std=digits.std,
                     conversions=[{"kind": "multi", "k": 2}])
    spec["deployment"] = {"mode": "eval", "route": {"branch": 1}}
    torch.manual_seed(0)
    model = build_from_spec(spec).eval()
    with torch.no_grad():  # make the two branches differ
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    return model, spec


# ---------------------------------------------------------------------------------------------
# models


def test_a_model_loads_through_its_registered_uri_with_the_logits_of_its_checkpoint(project, digits):
    import mlflow

    from pipeline.deploy import Deployed
    from pipeline.spec import load_model, save_model

    model, spec = _advprop_model(digits)
    save_model(project / "model.pt", model, spec)
    with StageRun("pretrain@advprop", "exp", {}) as run:
        run.log_model(project / "model.pt", "advprop", spec, (1, 16, 16))
        run.write_ref(project / "out")
    ref = json.loads((project / "out" / "mlflow_run.json").read_text())
    assert ref["model_uri"] == "models:/exp.advprop/1" and ref["registered_model"] == registered_name("exp", "advprop")

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    loaded = mlflow.pyfunc.load_model("models:/exp.advprop/1")
    x = digits.x_test[:32].float().div(255)
    direct, direct_spec = load_model(project / "model.pt")
    expected = Deployed(direct, "eval", route={"branch": 1})(x)
    got = torch.from_numpy(loaded.predict(x.numpy()))
    assert torch.equal(got, expected)
    assert not torch.equal(got, direct(x))  # the route was applied (unrouted, branch 0 runs)
    net = loaded.get_raw_model()
    assert isinstance(net, torch.nn.Module) and torch.equal(net(x), direct(x))
    assert loaded.metadata.metadata["spec"] == direct_spec
    inputs = loaded.metadata.get_input_schema().inputs[0]
    assert inputs.shape == (-1, 1, 16, 16) and inputs.type == np.dtype(np.float32)
    version = _client(project).get_model_version("exp.advprop", "1")
    assert version.run_id == ref["run_id"]

    deployed = mlflow.pytorch.load_model("models:/exp.advprop/1")  # the network as it deploys
    assert isinstance(deployed, torch.nn.Module)
    with torch.no_grad():
        assert torch.equal(deployed(x), expected) and torch.equal(deployed.network(x), direct(x))
    logged = _client(project).get_logged_model(ref["model_id"])
    assert logged.name == "advprop" and logged.source_run_id == ref["run_id"]
    assert _client(project).get_run(ref["run_id"]).data.tags["model_uri"] == "models:/exp.advprop/1"


def test_an_evaluation_run_links_the_logged_model_it_scored(project, digits):
    from pipeline.spec import save_model
    from pipeline.tracking import read_ref

    model, spec = _advprop_model(digits)
    save_model(project / "model.pt", model, spec)
    with StageRun("pretrain@g/advprop", "exp", {}) as train:
        train.log_model(project / "model.pt", "advprop", spec, (1, 16, 16))
        train.write_ref(project / "models" / "advprop")
    scored = read_ref(project / "models" / "advprop")
    assert read_ref(project / "nowhere") == {}
    with StageRun("evaluate@g/advprop", "exp", {}) as evaluation:
        evaluation.link_model(scored)
        evaluation.log_metrics({"clean": 0.9})
    client = _client(project)
    run = client.get_run(evaluation.run_id)
    assert [m.model_id for m in run.inputs.model_inputs] == [scored["model_id"]]
    assert run.data.tags["scored_model_uri"] == "models:/exp.advprop/1"
    assert run.data.tags["scored_model_run_id"] == train.run_id
    logged = client.get_logged_model(scored["model_id"])  # the model's page lists what it scored
    assert [(m.key, m.value, m.run_id) for m in logged.metrics] == [("clean", 0.9, evaluation.run_id)]
    with StageRun("evaluate@g/other", "exp", {}) as elsewhere:  # a model of another store: tags only
        elsewhere.link_model({**scored, "tracking_uri": "http://127.0.0.1:1"})
    other = client.get_run(elsewhere.run_id)
    assert not other.inputs.model_inputs and other.data.tags["scored_model_uri"] == "models:/exp.advprop/1"


def test_the_experiment_is_marked_as_training_models_unless_its_kind_was_set(project):
    from pipeline.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

    with StageRun("fetch", "exp", {}):
        pass
    client = _client(project)
    exp = client.get_experiment_by_name("exp")
    assert exp.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
    client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, "finetuning")  # a user's choice stays
    legacy = client.create_experiment("legacy")  # made before the kind was set
    for name in ("exp", "legacy"):
        with StageRun("fetch", name, {}):
            pass
    assert client.get_experiment(exp.experiment_id).tags[EXPERIMENT_KIND_TAG] == "finetuning"
    assert client.get_experiment(legacy).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_the_ui_link_opens_the_experiment_on_its_runs(project):
    from pipeline.tracking import experiment_page, project_experiment

    assert project_experiment(project / "none.yaml") == "bn-adversarial"
    (project / "params.yaml").write_text("tracking:\n  experiment: exp\n")
    assert project_experiment(project / "params.yaml") == "exp"
    assert experiment_page("http://127.0.0.1:5000", "exp") == "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
    with StageRun("fetch", "exp", {}):
        pass
    exp_id = _client(project).get_experiment_by_name("exp").experiment_id
    assert experiment_page("http://127.0.0.1:5000/", "exp") == (f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs"
                                                               "?searchFilter=tags.superseded_by%20IS%20NULL"
                                                               "&workflowType=machine_learning")
    (project / "mlflow.db").write_bytes(b"not a database")  # a store MLflow cannot read: the list page
    assert experiment_page("http://127.0.0.1:5000", "exp") == "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"


def test_logged_model_names_hold_no_character_mlflow_refuses():
    from pipeline.tracking import logged_model_name

    assert logged_model_name("standard") == "standard"
    assert logged_model_name("ablation/clean_ratio/0.5") == "ablation-clean_ratio-0_5"


def test_params_are_one_readable_setting_a_key():
    from pipeline.tracking import flatten, param_value

    section = {"evaluate": {"eps": [0.0, 0.1], "cascade": True, "label": None,
                            "attacks": [{"name": "pgd", "steps": 50, "label": None}, {"name": "pgd", "steps": 200},
                                        {"name": "autoattack", "label": "apgd", "attacks": ["apgd-ce", "apgd-t"]}]},
               "view": None, "conversions": []}
    flat = {k: param_value(v) for k, v in flatten(section).items()}
    assert flat == {"evaluate.eps": "0.0, 0.1", "evaluate.cascade": "true",
                    "evaluate.attacks.pgd_0.name": "pgd", "evaluate.attacks.pgd_0.steps": "50",
                    "evaluate.attacks.pgd_1.name": "pgd", "evaluate.attacks.pgd_1.steps": "200",
                    "evaluate.attacks.apgd.name": "autoattack", "evaluate.attacks.apgd.label": "apgd",
                    "evaluate.attacks.apgd.attacks": "apgd-ce, apgd-t", "conversions": "none"}
    assert not any(c in v for v in flat.values() for c in "{[")


def test_registered_names_are_prefixed_by_the_experiment_and_hold_no_slash():
    assert registered_name("bn-adversarial", "standard") == "bn-adversarial.standard"
    assert registered_name("bn-adversarial", "ablation/clean_ratio/0.5") == "bn-adversarial.ablation.clean_ratio.0.5"


def test_a_training_run_logs_its_model_and_leaves_the_file_to_it(project, digits):
    from pipeline.config import Params
    from pipeline.models import build_model
    from pipeline.spec import make_spec
    from stages.common import Item
    from stages.training import train_and_save

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["tracking"] = {"experiment": "exp"}
    params = Params.model_validate(raw)
    cfg = params.training("standard").model_copy(update={"epochs": 2})
    spec = make_spec(arch="resnet_small", num_classes=10, in_channels=1, mean=digits.mean, std=digits.std)
    model = build_model("resnet_small", num_classes=10, in_channels=1, mean=digits.mean, std=digits.std)
    out = Path("models/group/tiny")
    train_and_save(Item("pretrain", "group", "tiny"), out, model, spec, cfg, params, digits, {"train": {"epochs": 2}},
                   registry="tiny", headline=Path("metrics/models/group/tiny.json"))
    ref = json.loads((project / out / "mlflow_run.json").read_text())
    client = _client(project)
    run = client.get_run(ref["run_id"])
    assert run.data.tags["stage"] == "pretrain@group/tiny"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test_acc")] == [1, 2]
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == [
        "history.csv", "metrics.json", "mlflow_run.json", "timing.json"]
    from pipeline.tracking import md5_file

    assert run.data.tags["md5/models/group/tiny/model.pt"] == md5_file(project / out / "model.pt")
    assert ref["model_uri"] == "models:/exp.tiny/1"
    assert json.loads((project / "metrics/models/group/tiny.json").read_text())["test_acc"] > 0
    assert not list((project / "checkpoints").rglob("*.pt"))


# ---------------------------------------------------------------------------------------------
# how a run ends


def test_an_exception_fails_the_run_and_an_interrupt_kills_it(project):
    with pytest.raises(ValueError), StageRun("evaluate@a", "exp", {}) as failed:
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), StageRun("evaluate@b", "exp", {}) as killed:
        raise KeyboardInterrupt
    client = _client(project)
    assert client.get_run(failed.run_id).info.status == "FAILED"
    assert client.get_run(killed.run_id).info.status == "KILLED"


def test_sigterm_inside_a_run_unwinds_the_stage_and_kills_the_run(project):
    from pipeline.tracking import Terminated

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as exit_code, StageRun("evaluate@c", "exp", {}) as run:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at the next bytecode
    assert exit_code.value.code == 128 + signal.SIGTERM
    assert _client(project).get_run(run.run_id).info.status == "KILLED"
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_run_resumes_when_its_resume_file_matches(project):
    ref = project / "checkpoints" / "x.mlflow.json"
    with pytest.raises(RuntimeError), StageRun("pretrain@x", "exp", {"lr": 0.1}, resume=ref, resume_key="k1") as first:
        first.log_metrics({"test_acc": 0.5}, step=1)
        raise RuntimeError("killed")
    with StageRun("pretrain@x", "exp", {"lr": 0.1}, resume=ref, resume_key="k1") as second:
        assert second.resumed and second.logged_steps("test_acc") == {1}
        second.log_metrics({"test_acc": 0.75}, step=2)
    assert second.run_id == first.run_id
    client = _client(project)
    assert client.get_run(first.run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(first.run_id, "test_acc")] == [1, 2]
    with StageRun("pretrain@x", "exp", {"lr": 0.2}, resume=ref, resume_key="k2") as other:  # other params
        assert not other.resumed
    assert other.run_id != first.run_id


# ---------------------------------------------------------------------------------------------
# superseded runs


def test_a_finished_rebuild_supersedes_the_earlier_runs_of_its_stage_only(project, monkeypatch):
    with StageRun("evaluate@a", "exp", {}) as old:
        pass
    with StageRun("evaluate@b", "exp", {}) as neighbour:
        pass
    with pytest.raises(ValueError), StageRun("evaluate@a", "exp", {}) as failed:
        raise ValueError("a failed rebuild leaves the old outs, so the old run stays current")
    assert {r.info.run_id for r in _runs(project, "evaluate@a")} == {old.run_id, failed.run_id}
    with StageRun("evaluate@a", "exp", {}) as new:
        pass
    assert [r.info.run_id for r in _runs(project, "evaluate@a")] == [new.run_id]
    assert [r.info.run_id for r in _runs(project, "evaluate@b")] == [neighbour.run_id]
    kept = {r.info.run_id: r for r in _runs(project, "evaluate@a", current=False)}
    assert set(kept) == {old.run_id, failed.run_id, new.run_id}  # superseded runs are kept, not deleted
    assert all(r.info.lifecycle_stage == "active" for r in kept.values())
    assert {r.data.tags.get("superseded_by") for r in kept.values()} == {new.run_id, None}

    monkeypatch.setenv("DVC_EXP_NAME", "exp-1")  # a DVC experiment is a result of its own
    with StageRun("evaluate@a", "exp", {}) as experiment:
        pass
    assert {r.info.run_id for r in _runs(project, "evaluate@a")} == {new.run_id, experiment.run_id}
    assert _client(project).get_run(experiment.run_id).data.tags["dvc_exp_name"] == "exp-1"

    # DVC restored the old result: its mlflow_run.json names the old run, which becomes current again
    assert make_current(_client(project), old.run_id) == [new.run_id]
    assert {r.info.run_id for r in _runs(project, "evaluate@a")} == {old.run_id, experiment.run_id}
    assert "superseded_by" not in _client(project).get_run(old.run_id).data.tags


def test_sync_makes_the_workspace_runs_current(project):
    with StageRun("fetch", "exp", {}) as old:
        pass
    with StageRun("fetch", "exp", {}) as new:
        pass
    done = sync_workspace({"fetch": {"run_id": old.run_id}, "report": {"run_id": "0" * 32}})
    assert done == {"current": ["fetch"], "superseded": [new.run_id], "missing": ["report"]}
    assert [r.info.run_id for r in _runs(project, "fetch")] == [old.run_id]


def test_a_run_named_by_the_outs_whose_process_died_running_ends_finished_on_sync(project):
    """A stage killed (SIGKILL) after it wrote its outs, which DVC then cached and restored: its run
    was left RUNNING; the sync ends it FINISHED, saying so."""
    import platform

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    client = _client(project)
    run = client.create_run(client.create_experiment("exp"), tags={"stage": "fetch", "host": platform.node(),
                                                                    "pid": dead}).info
    assert client.get_run(run.run_id).info.status == "RUNNING"
    assert sync_workspace({"fetch": {"run_id": run.run_id}})["current"] == ["fetch"]
    ended = _client(project).get_run(run.run_id)
    assert ended.info.status == "FINISHED" and "its process was gone" in ended.data.tags["ended_by"]


# ---------------------------------------------------------------------------------------------
# values and tags


def test_float32_noise_is_logged_as_the_decimal_it_stands_for(project):
    noisy = torch.tensor([True] * 189 + [False] * 11).float().mean().item()
    assert noisy == 0.9449999928474426 and metric_value(noisy) == 0.945
    assert metric_value(1 / 3) == 1 / 3 and metric_value(0.945) == 0.945  # a float64 value is kept
    assert metric_value(360) == 360.0 and metric_value(0.5) == 0.5
    with StageRun("evaluate@a", "exp", {}) as run:
        run.log_metrics({"clean": noisy, "loss": 0.123456789012})
    assert _client(project).get_run(run.run_id).data.metrics == {"clean": 0.945, "loss": 0.123456789012}


def test_git_dirty_ignores_the_files_the_pipeline_writes(project):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True, capture_output=True)

    for name in ("dvc.lock", "params.yaml", "code.py"):
        (project / name).write_text("a\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "init")
    (project / "dvc.lock").write_text("b\n")  # dvc repro rewrites it while it runs
    (project / "params.yaml").write_text("b\n")  # dvc exp run -S
    assert dirty_files() == []
    with StageRun("fetch", "exp", {}) as clean:
        pass
    (project / "code.py").write_text("b\n")
    with StageRun("fetch", "exp", {}) as dirty:
        pass
    client = _client(project)
    assert client.get_run(clean.run_id).data.tags["git_dirty"] == "false"
    tags = client.get_run(dirty.run_id).data.tags
    assert tags["git_dirty"] == "true" and tags["git_dirty_files"] == "code.py"


def test_a_run_records_the_md5_of_each_out_it_wrote(project):
    import hashlib

    (project / "out" / "sub").mkdir(parents=True)
    (project / "out" / "a.json").write_text("{}")
    (project / "out" / "sub" / "b.csv").write_text("x\n1\n")
    (project / "out" / ".gitignore").write_text("/a.json\n")  # DVC's, not an out
    with StageRun("fetch", "exp", {}) as run:
        run.log_artifacts(project / "out")
    tags = {k: v for k, v in _client(project).get_run(run.run_id).data.tags.items() if k.startswith("md5/")}
    assert tags == {"md5/out/a.json": hashlib.md5(b"{}").hexdigest(),
                    "md5/out/sub/b.csv": hashlib.md5(b"x\n1\n").hexdigest()}


def test_the_report_run_logs_the_headline_table():
    from stages.report import headline

    summary = {"standard": {"clean": 1.0, "autoattack": 0.0, "worst_case": 0.0, "fgsm": 0.06},
               "mbn_alp": {"clean": 0.945, "worst_case": 0.5}}  # a screen-tier row: no AutoAttack
    assert headline(summary) == {"clean/standard": 1.0, "autoattack/standard": 0.0, "worst_case/standard": 0.0,
                                 "clean/mbn_alp": 0.945, "worst_case/mbn_alp": 0.5}


# ---------------------------------------------------------------------------------------------
# a moved store


def test_a_moved_store_is_not_rewritten_and_says_once_where_its_files_go(tmp_path, monkeypatch, capsys, digits):
    import mlflow

    from pipeline.spec import save_model

    for var in ("MLFLOW_TRACKING_URI", "PIPELINE_PARENT_RUN_ID", "DVC_EXP_NAME"):
        monkeypatch.delenv(var, raising=False)
    first = tmp_path / "first"
    first.mkdir()
    monkeypatch.chdir(first)
    model, spec = _advprop_model(digits)
    save_model(first / "model.pt", model, spec)
    (first / "out").mkdir()
    (first / "out" / "metrics.json").write_text("{}")
    with StageRun("pretrain@m", "exp", {}) as run:
        run.log_model(first / "model.pt", "m", spec, (1, 16, 16))
        run.log_artifacts(first / "out")
    assert "mlflow.db was made in" not in capsys.readouterr().err
    moved = tmp_path / "moved"
    shutil.copytree(first, moved)
    monkeypatch.chdir(moved)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # mlflow.set_tracking_uri exports it; a new stage starts without
    for _ in range(2):
        with StageRun("pretrain@m", "exp", {}) as again:
            again.log_artifacts(moved / "out")
    err = capsys.readouterr().err
    assert err.count(f"note: mlflow.db was made in {first.resolve()};") == 1  # once a process
    assert _client(moved).get_run(again.run_id).info.artifact_uri.startswith(first.resolve().as_uri() + "/mlartifacts/")
    assert _run_count(moved / "mlflow.db") == _run_count(first / "mlflow.db") + 2  # the store is not rewritten

    mlflow.set_tracking_uri(f"sqlite:///{moved / 'mlflow.db'}")
    x = digits.x_test[:4].float().div(255).numpy()
    assert mlflow.pyfunc.load_model("models:/exp.m/1").predict(x).shape == (4, 10)  # read from the first folder


def _run_count(db: Path) -> int:
    """Runs in an MLflow store, read with the store's own client."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    return len(client.search_runs([client.get_experiment_by_name("exp").experiment_id], max_results=100))


# ---------------------------------------------------------------------------------------------
# a real stage, terminated and run again


@pytest.mark.slow
def test_a_terminated_training_is_killed_then_resumed_in_the_same_run(tmp_path):
    from tests.conftest import tiny_raw
    from tests.e2e import ROOT, copy_project, env, sh

    raw = tiny_raw(yaml.safe_load((ROOT / "params.yaml").read_text()))
    raw["pretrain"]["base"]["models"]["standard"]["epochs"] = 10
    proj = copy_project(tmp_path / "proj", raw)
    sh([sys.executable, "-m", "stages.fetch"], proj)
    checkpoint = proj / "checkpoints" / "pretrain@base" / "standard.pt"
    proc = subprocess.Popen([sys.executable, "-m", "stages.pretrain", "base/standard"], cwd=proj, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert not (proj / "models" / "base" / "standard").exists()

    client = MlflowClient(tracking_uri=f"sqlite:///{proj / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bn-adversarial")
    (killed,) = client.search_runs([exp.experiment_id], "tags.stage = 'pretrain@base/standard'", ViewType.ALL)
    assert killed.info.status == "KILLED", err

    sh([sys.executable, "-m", "stages.pretrain", "base/standard"], proj)
    ref = json.loads((proj / "models" / "base" / "standard" / "mlflow_run.json").read_text())
    assert ref["run_id"] == killed.info.run_id
    (run,) = client.search_runs([exp.experiment_id], "tags.stage = 'pretrain@base/standard'", ViewType.ALL)
    assert run.info.status == "FINISHED" and run.data.tags["resumed"] == "true"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "test_acc")) == list(range(1, 11))
    with open(proj / "models" / "base" / "standard" / "history.csv") as f:
        history = [metric_value(float(row["test_acc"])) for row in csv.DictReader(f)]
    logged = sorted(client.get_metric_history(run.info.run_id, "test_acc"), key=lambda m: m.step)
    assert [m.value for m in logged] == history  # the epochs before the kill and after it, as trained
    assert not list((proj / "checkpoints").rglob("*.*"))
