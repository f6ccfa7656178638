"""dvc.lock kept to the DAG of dvc.yaml.

DVC adds and updates a stage's entry in dvc.lock but never removes one (treeverse/dvc#5293): a
stage that left dvc.yaml (a renamed group, a removed foreach key, the stages that became groups)
keeps its entry, with outs that no longer exist. Whatever walks the lock's outs (the MLflow
links of the flows, ``bnat mlflow-sync``) reads only the stages of the DAG, and :func:`prune`
drops the others; the reproduce flow and ``make repro`` run it after building.
"""

from __future__ import annotations

from pathlib import Path

LOCK = "dvc.lock"


def dag_stages(project_dir: str | Path) -> list[str]:
    """The stages of the checkout's dvc.yaml, foreach items expanded (``pretrain@base``)."""
    from dvc.repo import Repo

    with Repo(str(project_dir)) as repo:
        return [stage.name for stage in repo.index.stages if stage.cmd]


def entries(project_dir: str | Path) -> dict[str, dict]:
    """The lock's stage entries by name (empty when there is no lock yet)."""
    import yaml

    path = Path(project_dir) / LOCK
    if not path.exists():
        return {}
    try:
        data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({str(err).splitlines()[0]}); restore it with "
                         f"`git checkout -- {LOCK}`") from None
    stages = data.get("stages") if isinstance(data, dict) else None
    return stages if isinstance(stages, dict) else {}


def current_entries(project_dir: str | Path) -> dict[str, dict]:
    """The lock's entries of the stages dvc.yaml has now."""
    found = entries(project_dir)  # first: a lock DVC cannot read fails here, with its one line
    dag = set(dag_stages(project_dir))
    return {name: entry for name, entry in found.items() if name in dag}


def stale(project_dir: str | Path) -> list[str]:
    """The lock's entries whose stage is no longer in dvc.yaml."""
    found = entries(project_dir)
    dag = set(dag_stages(project_dir))
    return [name for name in found if name not in dag]


def prune(project_dir: str | Path) -> list[str]:
    """Drop the lock's entries of stages that are not in dvc.yaml (formatting of the rest kept:
    DVC's own round-trip YAML writer); the names dropped."""
    from dvc.utils.serialize import modify_yaml

    gone = stale(project_dir)
    if gone:
        with modify_yaml(str(Path(project_dir) / LOCK)) as data:
            for name in gone:
                data["stages"].pop(name, None)
    return gone
