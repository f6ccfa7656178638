"""Scale-out on loopback: a Prefect server, an MLflow server, a DVC remote folder and two workers
with separate checkouts, driven by the very commands of docs/scale-out.md and the README."""

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import tiny_raw
from tests.e2e import ROOT, copy_project, env, free_port, sh, sweep_params

pytestmark = pytest.mark.slow

# The documented commands, with the ports, GPU count and remote that the docs spell out.
DOCS = {"prefect_port": 4200, "mlflow_port": 5000, "gpus": 3, "remote": "/shared/dvc-remote"}
COMMANDS = {
    "mlflow": "bnat mlflow-server --backend-store-uri sqlite:///mlflow-server.db "
              "--artifacts-destination ./mlartifacts-server --port {mlflow_port}",
    "prefect": "prefect server start --host 127.0.0.1 --port {prefect_port}",
    "api": "export PREFECT_API_URL=http://127.0.0.1:{prefect_port}/api",
    "tracking": "export MLFLOW_TRACKING_URI=http://127.0.0.1:{mlflow_port}",
    "gpu_pool": "prefect work-pool create gpu --type process",
    "control_pool": "prefect work-pool create control --type process",
    "limit": "prefect concurrency-limit create gpu {gpus}",
    "deploy": "prefect --no-prompt deploy --all",
    "remote": "dvc remote modify --local storage url {remote}",
    "worker": "BNAT_CHECKOUT=$PWD prefect worker start --pool gpu --limit 1",
    "sweep": "bnat sweep -m standard adversarial -s 0 1",
}


@pytest.mark.parametrize("doc", ["docs/scale-out.md", "README.md"])
def test_the_documented_commands_are_the_ones_this_test_runs(doc):
    text = (ROOT / doc).read_text()
    missing = [name for name, cmd in COMMANDS.items() if cmd.format(**DOCS) not in text]
    assert not missing, f"{doc} lacks the commands {missing}"


class Service:
    """A long-running command in its own process group, logging to a file, stopped on exit."""

    def __init__(self, cmd: str, cwd: Path, log: Path, health: str | None = None, **extra: str):
        self.cmd, self.health, self.log = cmd, health, log
        self.proc = subprocess.Popen(["bash", "-c", cmd], cwd=cwd, env=env(**extra), stdout=open(log, "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def __enter__(self):
        deadline = time.time() + 300
        while self.health and time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.cmd} exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.health, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(1)
        if self.health:
            raise TimeoutError(f"{self.cmd} did not answer {self.health}")
        return self

    def __exit__(self, *exc):
        for sig in (signal.SIGINT, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=20)
                return
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue


def _children(client: MlflowClient, parent_id: str, kind: str) -> list:
    parent = client.get_run(parent_id)
    return client.search_runs([parent.info.experiment_id],
                              f"tags.mlflow.parentRunId = '{parent_id}' and tags.kind = '{kind}'")


def test_two_workers_share_a_sweep_and_a_second_sweep_trains_nothing(tmp_path):
    ports = {"prefect_port": free_port(), "mlflow_port": free_port(), "gpus": 2, "remote": str(tmp_path / "dvc-remote")}
    cmd = {name: c.format(**ports) for name, c in COMMANDS.items()}
    api, tracking = cmd["api"].split("=", 1)[1], cmd["tracking"].split("=", 1)[1]
    client_env = {"PREFECT_API_URL": api, "MLFLOW_TRACKING_URI": tracking, "PREFECT_HOME": str(tmp_path / "prefect"),
                  "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_UI_ENABLED": "false"}
    raw = sweep_params(tiny_raw(yaml.safe_load((ROOT / "params.yaml").read_text())))
    origin = copy_project(tmp_path / "origin", raw)
    checkouts = []
    for name in ("gpu-1", "gpu-2"):
        sh(["git", "clone", "-q", str(origin), name], tmp_path)
        checkouts.append(tmp_path / name)
        sh(["bash", "-c", cmd["remote"]], tmp_path / name)
    server = tmp_path / "server"
    server.mkdir()

    def bash(command: str, cwd: Path) -> str:
        return sh(["bash", "-c", command], cwd, timeout=1800, **client_env).stdout

    logs = tmp_path / "logs"
    logs.mkdir()
    with Service(cmd["mlflow"], server, logs / "mlflow.log", f"{tracking}/health"), \
         Service(cmd["prefect"], server, logs / "prefect.log", f"{api}/health",
                 PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_UI_ENABLED="false"):
        for step in ("gpu_pool", "control_pool", "limit", "deploy"):
            bash(cmd[step], origin)
        with Service(cmd["worker"], checkouts[0], logs / "worker-1.log", **client_env), \
             Service(cmd["worker"], checkouts[1], logs / "worker-2.log", **client_env):
            walls = []
            for sweep_round in (1, 2):
                if sweep_round == 2:  # fresh machines: nothing local, only the DVC remote
                    for checkout in checkouts:
                        shutil.rmtree(checkout / ".dvc" / "cache")
                start = time.time()
                out = bash(cmd["sweep"], origin)
                walls.append(time.time() - start)
                assert "| standard | 2 |" in out and "| adversarial | 2 |" in out, out[-3000:]

        client = MlflowClient(tracking_uri=tracking)
        exp = client.get_experiment_by_name("bn-adversarial")
        sweeps = sorted(client.search_runs([exp.experiment_id], "tags.kind = 'sweep'"),
                        key=lambda r: r.info.start_time)
        assert len(sweeps) == 2
        first, second = (_children(client, s.info.run_id, "experiment") for s in sweeps)
        upstream = [_children(client, s.info.run_id, "upstream") for s in sweeps]
        points = {(m, s) for m in ("standard", "adversarial") for s in (0, 1)}
        for runs in (first, second):
            assert {(r.data.tags["method"], int(r.data.tags["seed"])) for r in runs} == points
            assert all({"clean", "pgd", "worst_case"} <= r.data.metrics.keys() for r in runs)
        # both workers took points, each in its own checkout
        assert {r.data.tags["checkout"] for r in _children(client, sweeps[0].info.run_id, "point")} == \
            {str(c.resolve()) for c in checkouts}
        # what both methods need (the data, the standard model that adversarial's transfer attack
        # starts from) was built once per seed before the fan-out: one pretrain run per model
        for runs in upstream:
            assert sorted(int(r.data.tags["seed"]) for r in runs) == [0, 1]
        stage_runs = client.search_runs([exp.experiment_id], "tags.stage LIKE 'pretrain@%/%'")  # the models' runs
        assert len(stage_runs) == 4 and all(r.info.start_time < sweeps[1].info.start_time for r in stage_runs)
        # the second sweep ran nothing at all: everything came from the remote's run cache
        ran = [stage for r in second + upstream[1] for stage in r.data.tags["stages_ran"].split(",")]
        assert set(ran) == {"none"}, ran
        # ...and what it restored still points at the runs that built it
        by_point = {(r.data.tags["method"], r.data.tags["seed"]): r for r in first}
        for r in second:
            built = by_point[(r.data.tags["method"], r.data.tags["seed"])]
            assert r.data.tags["run.train"] == built.data.tags["run.train"]
            assert client.get_run(r.data.tags["run.train"]).data.params["seed"] == r.data.tags["seed"]
        group = {"standard": "base", "adversarial": "adv"}
        assert all(len(client.get_run(r.data.tags[f"run.evaluate:{group[r.data.tags['method']]}"]).data.tags["dvc_lock_hash"]) == 16
                   for r in first)
    print(f"\nscale-out sweep of 4 experiments on 2 workers: first {walls[0]:.1f} s, "
          f"second (from the DVC remote) {walls[1]:.1f} s")
