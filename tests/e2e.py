"""Helpers for end-to-end tests: a copy of the project in a temporary git checkout, commands run
with the test interpreter's environment, and a real MLflow server on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.pop("MLFLOW_TRACKING_URI", None)
    e.pop("PIPELINE_PARENT_RUN_ID", None)
    e.update(extra)
    return e


def sh(args: list[str], cwd: Path, check: bool = True, timeout: int = 900, **extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env(**extra), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def copy_project(dest: Path, params: dict) -> Path:
    """The project's files (tracked or not ignored) in a fresh git repo, with ``params`` as params.yaml."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file() and not rel.startswith(("tests/", "bench/", "dvc.lock")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for generated in ("data", "models", "results", "reports"):  # DVC writes its own .gitignore there
        shutil.rmtree(dest / generated, ignore_errors=True)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # its own DVC remote, never the default one beside the checkout that other tests' copies share
    (dest / ".dvc" / "config.local").write_text(f"['remote \"storage\"']\n    url = {dest.parent / (dest.name + '-dvc-remote')}\n")
    sh(["git", "init", "-q"], dest)
    sh(["git", "add", "-A"], dest)
    sh(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "init"], dest)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 over a SQLite store; the whole process group stops on exit."""

    def __init__(self, db: Path, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{db}", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            cwd=workdir, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def __enter__(self) -> MlflowServer:
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(1)
        raise TimeoutError("mlflow server did not answer /health within 180 s")

    def __exit__(self, *exc) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def sweep_params(base: dict) -> dict:
    """``tiny_raw`` cut to what a sweep needs: standard training (group ``base``) and PGD-AT (group
    ``adv``, whose transfer attacks start from base's standard model), evaluated with FGSM and PGD
    (seconds per experiment)."""
    raw = dict(base)
    models = base["pretrain"]["base"]["models"]
    raw["pretrain"] = {"base": {"models": {"standard": models["standard"]}},
                       "adv": {"models": {"adversarial": models["adversarial"]}}}
    raw["finetune"] = {}
    raw["evaluations"] = {"base": {"full": ["standard"]}, "adv": {"full": ["adversarial"]}}
    raw["analyses"] = {}
    raw["ablations"] = {}
    ev = dict(base["evaluate"])
    ev["attacks"] = [a for a in ev["attacks"] if a["name"] in ("fgsm", "pgd")]
    raw["evaluate"] = ev
    return raw
