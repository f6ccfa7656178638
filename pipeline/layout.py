"""Where the pipeline's outputs live. Each DVC stage writes one folder per group (its out) and a
folder per item inside it; the narrow headline figures of each item go to a separate tree,
metrics/, which dvc.yaml declares as the project's metrics (a metrics file may not lie inside
another out)::

    models/GROUP/NAME/                  a trained model (pretrain@GROUP, finetune@GROUP)
    results/GROUP/TARGET/               the attack suite on a model or a view (evaluate@GROUP)
    results/analyses/NAME/KIND/ITEM/    an analysis of analyze@NAME (interpolate, analyze_bn, dial, ...)
    results/ablations/GRID/VALUE/       a point of a grid: model/ trained, screen/ its evaluation (ablation@GRID)
    metrics/KIND/GROUP/NAME.json        the headline figures of one item (KIND: models, results, ablations)

Everything but the trained models is under results/, so the report depends on two folders that
every params file makes (``analyses`` and ``ablations`` are reserved there: no evaluation group
takes those names). Model names and evaluation targets are unique across groups, so code names
them alone and asks here for their folders."""

from __future__ import annotations

from pathlib import Path

DATA = "data"  # the fetch stage's data/prepared (every stage reads it) and data/fetch; downloads in data/raw
MODELS, RESULTS, METRICS = "models", "results", "metrics"
ANALYSES, ABLATIONS = f"{RESULTS}/analyses", f"{RESULTS}/ablations"
RESERVED = ("analyses", "ablations")  # folders of results/ that are not evaluation groups


def model_dir(params, name: str, root: Path = Path(".")) -> Path:
    return Path(root) / MODELS / params.group_of(name) / name


def result_dir(params, target: str, root: Path = Path(".")) -> Path:
    return Path(root) / RESULTS / params.targets[target].group / target


def analysis_dir(params, kind: str, name: str, root: Path = Path(".")) -> Path:
    return Path(root) / ANALYSES / params.analysis_items[(kind, name)] / kind / name


def ablation_dir(grid: str, value, root: Path = Path(".")) -> Path:
    return Path(root) / ABLATIONS / grid / str(value)


def headline_file(kind: str, group: str, name, root: Path = Path(".")) -> Path:
    """metrics/KIND/GROUP/NAME.json: ``kind`` is models, results or ablations."""
    return Path(root) / METRICS / kind / group / f"{name}.json"


def dvc_use(path: str | Path) -> str | None:
    """Why a file written at ``path`` would upset the DVC project around it: the out or dep of a
    stage it falls inside (``dvc status`` would show the out changed, or the stage stale), or None
    where no stage writes or reads it (or there is no DVC project)."""
    import os

    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    path = Path(os.path.realpath(Path(path).parent)) / Path(path).name
    folder = next(p for p in [path, *path.parents] if p.is_dir())
    try:
        with Repo(Repo.find_root(str(folder))) as repo:
            stages = list(repo.index.stages)
            root = Path(os.path.realpath(repo.root_dir))
    except DvcException:
        return None
    for role, of in (("an output of", lambda s: s.outs), ("read by", lambda s: s.deps)):
        for stage in stages:
            for entry in of(stage):
                tracked = Path(os.path.realpath(entry.fs_path))
                if tracked == path or tracked in path.parents:
                    if tracked == path:
                        return f"{role} DVC stage {stage.name}"
                    where = tracked.relative_to(root) if root in tracked.parents else tracked
                    return f"inside {where}, {role} DVC stage {stage.name}"
    return None
