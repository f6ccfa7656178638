"""Tracking never costs a result: an unreachable server falls back to the project's local store."""

import json

from mlflow.tracking import MlflowClient

from pipeline.tracking import StageRun, flatten
from tests.e2e import free_port


def test_flatten_nests_with_dots():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}


def test_a_stage_run_logs_params_metrics_and_writes_its_reference(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PIPELINE_PARENT_RUN_ID", raising=False)
    with StageRun("pretrain@x", "exp", {"train": {"lr": 0.1}}) as run:
        run.log_metrics({"test_acc": 0.5, "flag": True}, step=1)
        run.write_ref(tmp_path / "out")
    ref = json.loads((tmp_path / "out" / "mlflow_run.json").read_text())
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    logged = client.get_run(ref["run_id"])
    assert logged.data.params == {"train.lr": "0.1"}
    assert logged.data.metrics == {"test_acc": 0.5}
    assert logged.data.tags["stage"] == "pretrain@x" and logged.info.status == "FINISHED"


def test_an_unreachable_server_falls_back_to_the_local_store_with_one_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    monkeypatch.setenv("PIPELINE_PARENT_RUN_ID", "0123456789abcdef")
    with StageRun("evaluate@x", "exp", {"evaluate": {"eps": 0.1}}) as run:
        run.log_metrics({"pgd": 0.4})
        run.log_metrics({"fgsm": 0.6})
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and dead in err
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    logged = client.get_run(run.run_id)
    assert logged.data.metrics == {"pgd": 0.4, "fgsm": 0.6}
    assert logged.data.params == {"evaluate.eps": "0.1"}
    assert logged.data.tags["intended_tracking_uri"] == dead
    assert logged.data.tags["intended_parent_run_id"] == "0123456789abcdef"


def test_a_failing_tracking_call_warns_once_and_does_not_raise(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with StageRun("report", "exp", {}) as run:
        run.log_metrics({"a": 1.0})
        import mlflow
        monkeypatch.setattr(mlflow, "log_metrics", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("gone")))
        run.log_metrics({"b": 2.0})
        run.log_metrics({"c": 3.0})
    assert capsys.readouterr().err.count("warning: MLflow logging stopped") == 1


def test_report_rows_link_to_their_run_on_the_server_or_the_local_ui():
    from pipeline.analysis.report import run_link

    server = {"run_id": "abcdef0123456789", "experiment_id": "3", "tracking_uri": "http://10.0.0.5:5000/"}
    assert run_link(server) == "[abcdef01](http://10.0.0.5:5000/#/experiments/3/runs/abcdef0123456789)"
    local = {**server, "tracking_uri": "sqlite:////x/mlflow.db"}
    assert run_link(local).endswith("(http://127.0.0.1:5000/#/experiments/3/runs/abcdef0123456789)")
    assert run_link(None) == "—" and run_link({"run_id": None}) == "—"
