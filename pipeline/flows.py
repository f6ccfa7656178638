"""Prefect flows: when and where the pipeline runs. They are thin: every task runs one DVC stage
(``dvc repro --single-item STAGE``) in topological order, so DVC still decides what is stale and
caches what is built. Never run two flows in one checkout at the same time.

A ``reproduce`` flow run opens an MLflow parent run; every stage run becomes its child through
``PIPELINE_PARENT_RUN_ID``. Deployments are declared in ``prefect.yaml`` (a cron schedule on the
``gpu`` work pool); a GPU machine serves them with ``prefect worker start --pool gpu``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run


def ordered_stages(project_dir: str | Path = ".") -> list[str]:
    """Every stage of dvc.yaml (foreach items expanded), dependencies first."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(project_dir)) as repo:
        graph = repo.index.graph  # an edge u -> v means u depends on v
        order = list(reversed(list(nx.topological_sort(graph))))
        return [stage.name for stage in order if stage.cmd]


def _env(parent_run_id: str | None) -> dict[str, str]:
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)  # the interpreter that has the project installed
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    if parent_run_id:
        env["PIPELINE_PARENT_RUN_ID"] = parent_run_id
    return env


@task(retries=2, retry_delay_seconds=[10, 60], tags=["gpu"])
def run_stage(stage: str, project_dir: str, parent_run_id: str | None = None) -> str:
    """Run one DVC stage; DVC skips it when nothing it depends on changed."""
    logger = get_run_logger()
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "--single-item", stage], cwd=project_dir,
                          env=_env(parent_run_id), capture_output=True, text=True)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    if proc.returncode != 0:
        raise RuntimeError(f"dvc repro {stage} failed ({proc.returncode}):\n{tail}")
    logger.info("%s\n%s", stage, tail)
    return stage


def _parent_run(project_dir: str, experiment: str) -> str | None:
    import mlflow

    from pipeline.tracking import tracking_uri

    cwd = os.getcwd()
    os.chdir(project_dir)  # the default tracking URI is the project's own SQLite file
    try:
        mlflow.set_tracking_uri(tracking_uri())
        mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_name=f"flow:{flow_run.get_name() or 'reproduce'}",
                               tags={"prefect_flow_run_id": str(flow_run.get_id() or ""), "stage": "flow"})
        mlflow.end_run()
        return run.info.run_id
    finally:
        os.chdir(cwd)


@flow(name="reproduce", log_prints=True)
def reproduce(project_dir: str = ".", experiment: str = "bn-adversarial") -> list[str]:
    """Bring every stage of the project up to date, one task per stage, in DAG order."""
    project_dir = str(Path(project_dir).resolve())
    parent = _parent_run(project_dir, experiment)
    done = []
    for stage in ordered_stages(project_dir):
        done.append(run_stage(stage, project_dir, parent))
    return done


if __name__ == "__main__":
    reproduce(sys.argv[1] if len(sys.argv) > 1 else ".")
