"""The figures of a built project, as the ledger reads them: a target's metrics, accuracy curve
and per-image outcomes; an ablation point's; an analysis item's metrics and CSV rows. Everything
returns None (or an empty list) where the params do not run it or it is not built."""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

import numpy as np

from pipeline.io import read_json
from pipeline.layout import ablation_dir, analysis_dir, model_dir, result_dir
from pipeline.papers import outcomes
from pipeline.papers.ledger import is_grid_point


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV with numbers as floats, blanks as None, other text kept."""
    def value(v):
        if v in ("", None):
            return None
        try:
            return float(v)
        except ValueError:
            return v

    with open(path, newline="") as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def dig(data: dict | None, path: str):
    """``data["a"]["b"]`` for ``path`` ``a.b``; a key written ``pgd`` also finds ``pgd@0.0314``."""
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key, next((v for k, v in data.items() if k.split("@")[0] == key), None))
    return data


def grid_point(source: str) -> tuple[str, str]:
    grid, _, value = source.partition("=")
    return grid, value


class Built:
    """The figures under ``root`` of the project that ``params`` describe."""

    def __init__(self, params, root: Path | str = Path(".")):
        self.params, self.root = params, Path(root)
        self.metrics = cache(self._metrics)
        self.curve = cache(self._curve)

    # ------------------------------------------------------------ where a source's files are

    def folder(self, source: str) -> Path | None:
        """The evaluation folder of a target name or a grid point ``GRID=VALUE`` (None: not in params)."""
        if is_grid_point(source):
            grid, value = grid_point(source)
            spec = self.params.ablations.get(grid)
            match = next((v for v in (spec.values if spec else []) if str(v) == value), None)
            return None if match is None else ablation_dir(grid, match, self.root) / "screen"
        return result_dir(self.params, source, self.root) if source in self.params.targets else None

    def _metrics(self, source: str | None) -> dict | None:
        return self._json(source, "metrics.json")

    def card(self, source: str | None) -> dict | None:
        """The model card of a target or grid point (None: not built)."""
        return self._json(source, "model_card.json")

    def _json(self, source: str | None, file: str) -> dict | None:
        folder = self.folder(source) if source else None
        path = folder / file if folder else None
        return read_json(path) if path and path.exists() else None

    def _curve(self, source: str | None) -> dict[float, dict]:
        """The accuracy curve of a target or grid point as eps -> row."""
        folder = self.folder(source) if source else None
        path = folder / "accuracy.csv" if folder else None
        return {r["eps"]: r for r in read_csv(path)} if path and path.exists() else {}

    def outcomes(self, source: str, metric: str, analysis: str | None = None) -> np.ndarray:
        """Per-image outcomes of a target or grid point, or (``analysis``) of that analysis of ``source``."""
        if analysis is not None:
            path = self.analysis_file(analysis, source, outcomes.FILE)
            if path is None:
                raise FileNotFoundError(f"{analysis} analysis of {source}: no per-image outcomes (run it again: `dvc repro`)")
            return outcomes.metric(outcomes.load(path), metric)
        folder = self.folder(source)
        path = folder / outcomes.FILE if folder else None
        if path is None or not path.exists():
            raise FileNotFoundError(f"{path or source}: no per-image outcomes (evaluate it again: `dvc repro`)")
        return outcomes.metric(outcomes.load(path), metric)

    def training(self, model: str) -> dict:
        """A trained model's metrics.json ({} where it is not a trained model of params or not built)."""
        path = model_dir(self.params, model, self.root) / "metrics.json"
        return read_json(path) if model in self.params.trained and path.exists() else {}

    def history(self, model: str) -> Path:
        return model_dir(self.params, model, self.root) / "history.csv"

    # ------------------------------------------------------------ analyses

    def analysis_file(self, kind: str, name: str, file: str) -> Path | None:
        if (kind, name) not in self.params.analysis_items:
            return None
        path = analysis_dir(self.params, kind, name, self.root) / file
        return path if path.exists() else None

    def analysis(self, kind: str, name: str) -> dict | None:
        path = self.analysis_file(kind, name, "metrics.json")
        return read_json(path) if path else None

    def analysis_rows(self, kind: str, name: str, file: str) -> list[dict]:
        path = self.analysis_file(kind, name, file)
        return read_csv(path) if path else []

    # ------------------------------------------------------------ one figure

    def value(self, source: str | None, measure: str, eps: float | None = None,
              analysis: str | None = None) -> float | None:
        """A figure as a fraction: ``measure`` of a target or grid point (at ``eps`` x the threat
        eps from its curve), or a dotted path into an analysis item's metrics."""
        if source is None:
            return None
        if analysis is not None:
            found = dig(self.analysis(analysis, source), measure)
            return float(found) if isinstance(found, (int, float)) else None
        if measure.startswith("model."):
            model = source if source not in self.params.targets else self.params.targets[source].model
            found = dig(self.training(model), measure.removeprefix("model."))
            return float(found) if isinstance(found, (int, float)) else None
        if eps is None:
            found = dig(self.metrics(source), measure)
            return float(found) if isinstance(found, (int, float)) else None
        threat = self.params.evaluation_config(source).threat if source in self.params.targets else self.params.evaluate.threat
        row = next((r for e, r in self.curve(source).items() if abs(e - eps * threat) < 1e-9), None)
        found = None if row is None else row.get(measure)
        return float(found) if isinstance(found, (int, float)) else None
