"""Worker checkouts: copies of the project where stages run side by side.

DVC runs one command at a time in a checkout (it locks the workspace), so stages that could run
at once need checkouts of their own. Each worker checkout is a git worktree of the project under
``.dvc/tmp/workers/`` (git-ignored, DVC's own scratch folder) holding the project's working tree
as it is, uncommitted changes included, and using the project's DVC cache, hence its run cache.
A stage built in a worker is in the run cache the moment it finishes: a later ``dvc repro`` in
another worker or in the project restores it from there instead of running it again. That is how
results come back to the project (``pipeline.flows.reproduce`` with ``workers > 1``).

Stages in a worker log to the project's MLflow store, not to a store of the worker's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

WORKERS = Path(".dvc") / "tmp" / "workers"


def _git(project: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {project}: {proc.stderr.strip()}")
    return proc.stdout


def _changed(project: Path) -> tuple[list[str], list[str]]:
    """Files of the working tree that differ from HEAD (modified or new, not ignored) and files
    deleted from it, relative to the project."""
    changed, deleted = [], []
    for entry in _git(project, "status", "--porcelain", "-z", "--untracked-files=all").split("\0"):
        if len(entry) < 4:
            continue
        status, path = entry[:2], entry[3:]
        (deleted if "D" in status else changed).append(path)
    return changed, deleted


def _sync(project: Path, worker: Path, with_changes: bool = True) -> None:
    """The worker's working tree: the project's HEAD plus (``with_changes``) the project's
    uncommitted changes."""
    _git(worker, "checkout", "--detach", "--force", _git(project, "rev-parse", "HEAD").strip())
    _git(worker, "clean", "-fdq", "--", ".")  # untracked, not ignored: leftovers of an earlier sync
    if not with_changes:
        return
    changed, deleted = _changed(project)
    for rel in changed:
        src, dst = project / rel, worker / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    for rel in deleted:
        (worker / rel).unlink(missing_ok=True)


def _share_cache(project: Path, worker: Path) -> None:
    """The worker uses the project's DVC cache (and remote settings)."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        cache = Path(repo.cache.local_cache_dir if hasattr(repo.cache, "local_cache_dir") else repo.cache.local.path)
    local = project / ".dvc" / "config.local"
    text = local.read_text() if local.exists() else ""
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("[cache]"))
    (worker / ".dvc" / "config.local").write_text(f"{text}\n[cache]\n    dir = {cache.resolve()}\n")


def checkout(project_dir: str | Path, name: str, with_changes: bool = True) -> Path:
    """The worker checkout ``name`` of the project, made if missing, in step with the project's
    HEAD (and, ``with_changes``, its uncommitted changes), using the project's DVC cache."""
    project = Path(project_dir).resolve()
    worker = project / WORKERS / name
    if not (worker / ".git").exists():
        shutil.rmtree(worker, ignore_errors=True)
        _git(project, "worktree", "prune")
        _git(project, "worktree", "add", "--detach", "--force", str(worker), "HEAD")
    _sync(project, worker, with_changes)
    _share_cache(project, worker)
    return worker


def prepare(project_dir: str | Path, n: int) -> list[Path]:
    """``n`` worker checkouts of the project, each in step with its working tree."""
    return [checkout(project_dir, f"w{i}") for i in range(n)]


def experiment_checkout(project_dir: str | Path) -> Path:
    """Where a sweep's experiments run: the project's committed HEAD (none of its uncommitted
    changes), reset before each experiment, so that an experiment records only its own seed and
    overrides and the project's workspace (params, lock, outs) is never touched."""
    return checkout(project_dir, "experiment", with_changes=False)


def worker_env(project_dir: str | Path, items_at_once: int | None) -> dict[str, str]:
    """What a stage in a worker needs besides the flow's environment: the project's MLflow store,
    and how many of its items it runs at once (``BNAT_WORKERS``; checkouts x items at once <=
    cores, or they slow each other). Results do not depend on it: each item runs with params'
    ``threads``."""
    from pipeline.tracking import tracking_uri

    cwd = os.getcwd()
    os.chdir(project_dir)
    try:
        env = {"MLFLOW_TRACKING_URI": tracking_uri()}
    finally:
        os.chdir(cwd)
    if items_at_once:
        env["BNAT_WORKERS"] = str(items_at_once)
    return env
