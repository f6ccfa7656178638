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
