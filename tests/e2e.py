"""Helpers for end-to-end tests: a copy of the project in a temporary git checkout, commands run
with the test interpreter's environment, and a real MLflow server on loopback."""

from __future__ import annotations

import copy
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
    """The project's files (tracked or not ignored) in a fresh git repo, with ``params`` as params.yaml
    (its ``ledger.not_run`` listing the claim roles a cut-down ``params`` no longer evaluates)."""
    if "ledger" in params:
        params = with_ledger_for_targets(copy.deepcopy(params))
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
    return with_ledger_for_targets(raw)


def with_ledger_for_targets(raw: dict) -> dict:
    """``raw`` whose ``ledger.not_run`` lists every source of a table row or claim it no longer
    runs (a cut-down params file runs fewer rows; a source neither run nor listed fails
    validation), and every paper one of whose rows reads an analysis the file does not run on a
    target it still evaluates (listing that target would drop it from the other papers too)."""
    from pipeline.config import parse_params
    from pipeline.papers import PAPERS
    from pipeline.papers.verdicts import _exists

    ledger = dict(raw.get("ledger") or {})
    mapped = ledger.get("roles") or {}
    params = parse_params({k: v for k, v in copy.deepcopy(raw).items() if k != "ledger"})
    not_run: set[str] = set()
    for paper in PAPERS.values():
        needs = [(s, r.analysis) for t in paper.tables for r in t.rows for s in (r.source, r.fallback) if s]
        needs += [(s, c.analysis) for c in paper.claims for s in (c.a, c.b)]
        for source, analysis in needs:
            target = mapped.get(source, source)
            if _exists(params, target, analysis):
                continue
            if analysis is not None and _exists(params, target, None):
                not_run.add(paper.key)
            else:
                not_run.add(source)
    ledger["not_run"] = sorted(not_run)
    raw["ledger"] = ledger
    return raw


def training_entries(raw: dict):
    """Every training entry of a raw params dict: (section, group, name, entry)."""
    for section in ("pretrain", "finetune"):
        for group, g in (raw.get(section) or {}).items():
            for name, entry in g["models"].items():
                yield section, group, name, entry


def drop_model(raw: dict, name: str) -> None:
    """Remove a model from its training group (and the group, once empty)."""
    for section, group, n, _ in list(training_entries(raw)):
        if n == name:
            del raw[section][group]["models"][name]
            if not raw[section][group]["models"]:
                del raw[section][group]


def tiny_raw(raw: dict) -> dict:
    """The default params cut down to seconds of work: for end-to-end tests of the machinery.
    Every kind of stage and item runs once, not every study row."""
    raw = copy.deepcopy(raw)
    for *_, spec in training_entries(raw):
        spec["epochs"] = min(spec["epochs"], 1)
        spec["running_stats_epochs"] = min(spec.get("running_stats_epochs", 0), spec["epochs"])
        if spec.get("attack"):
            spec["attack"]["steps"] = 2
        if spec.get("method") == "afa":
            spec["options"]["k"] = 3
    ev = raw["evaluate"]
    ev["n_samples"] = 40
    for attack in ev["attacks"]:
        if "steps" in attack:
            attack["steps"] = 3
    ev["checks"].update(n_samples=16, square_queries=20)
    screen = ev.get("screen")
    if screen:
        screen["n_samples"] = 40
        for attack in screen["attacks"]:
            if "steps" in attack:
                attack["steps"] = 3
    if raw.get("interpolate"):
        raw["interpolate"].update(n_samples=40, p=[1.0, 0.5, 0.0])
    if raw.get("analyze_bn"):
        raw["analyze_bn"]["n_samples"] = 40
    plans, analyses = raw.get("evaluations", {}), raw.get("analyses", {})
    # AFA: one base (PGD-AT) of the four; its views with short attacks
    for base in ("trades", "mart", "iat"):
        drop_model(raw, f"afa1_{base}")
        drop_model(raw, f"afa_{base}")
        for plan in plans.values():
            plan.get("views", {}).pop(f"afa_{base}_adaptive", None)
            plan.get("views", {}).pop(f"{base}_afa_grid", None)
    for plan in plans.values():
        for view in plan.get("views", {}).values():
            for attack in view.get("extra_attacks", []):
                attack["steps"] = min(attack.get("steps", 3), 3)
                if attack["name"] == "afa_adaptive":
                    attack["weightings"] = [[1, 1], [1, 10]]
    # norm shaping: the paper's method and the PGD-AT row; short attacks on few images
    for plan in analyses.values():
        if plan.get("shaping"):
            plan["shaping"] = [m for m in plan["shaping"] if m in ("adversarial", "ns_pgd_shaping")]
        for dial in plan.get("dials", {}).values():  # the two ends of each dial
            dial["values"] = [dial["values"][0], dial["values"][-1]]
    for *_, name, spec in list(training_entries(raw)):
        if spec.get("method") == "norm_shaping" and name != "ns_pgd_shaping":
            drop_model(raw, name)
    se = raw.get("shaping_eval")
    if se:
        se.update(n_samples=20, eot=2, known_draws=2, confounding_samples=128)  # one training batch
        for attack in se["attacks"]:
            if "steps" in attack:
                attack["steps"] = min(attack["steps"], 2)
    if raw.get("strength_analysis"):
        sa = raw["strength_analysis"]
        sa.update(n_samples=40, steps=2, eps=[sa["eps"][0], sa["eps"][-1]])
    # The screen tier: per plan the first screened model and those something else reads (a view, a
    # fine-tune, an analysis); the other study rows are not trained
    needed = {f["start"] for *_, f in training_entries(raw) if "start" in f}
    needed |= {v["model"] for plan in plans.values() for v in plan.get("views", {}).values()}
    for plan in analyses.values():
        for kind in ("interpolate", "analyze_bn", "dials"):
            needed |= {m for entry in plan.get(kind, {}).values() for k, m in entry.items() if k in ("a", "b", "logits_of", "model")}
        for kind in ("strength", "shaping", "confoundings"):
            needed |= set(plan.get(kind, []))
    for plan in plans.values():
        screened = plan.get("screen", [])
        keep = [m for i, m in enumerate(screened) if i == 0 or m in needed]
        for name in screened:
            if name not in keep:
                drop_model(raw, name)
        plan["screen"] = keep
    for grid in raw.get("ablations", {}).values():  # one point per grid
        grid["values"] = grid["values"][:1]
        for entry in [grid["train"], grid.get("then") or {}]:
            if entry:
                entry["epochs"] = 1
            if entry.get("attack"):
                entry["attack"]["steps"] = min(entry["attack"]["steps"], 2)
    return with_ledger_for_targets(raw)
