"""What a stage's MLflow run records: exact metric values, the dirty flag and the hashes of its outs."""

import subprocess
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from pipeline.tracking import StageRun, dirty_files, metric_value


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty folder as the working directory, logging to its own SQLite store."""
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "PIPELINE_PARENT_RUN_ID", "DVC_EXP_NAME", "PIPELINE_PARAMS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _client(folder: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")


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
