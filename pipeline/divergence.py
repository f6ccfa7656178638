"""A diverged training, and everything that would have read its model.

When a training's loss turns NaN or Inf (:class:`pipeline.train.NonFiniteLossError`), its item
writes its folder with one file in place of its results, ``diverged.json``: where it diverged
(epoch, step, loss) and why, in one line. It has no model.pt, no metrics.json and no headline
under metrics/. Every item that would read that model (an evaluation or a view of it, a fine-tune
that starts from it, an analysis, and so on down the graph) writes its own folder the same way,
naming the model that diverged, instead of running. So one diverged model costs its own rows,
never its group's other items nor the stages after it; ``on_divergence: fail`` in params makes a
divergence stop its group instead.

This module is the one place that writes, reads and words the marker: :func:`write` and
:func:`read`; :class:`ModelDiverged` is what loading a diverged model raises
(``stages.common.trained_model``); :func:`found` lists every marker under a project's outputs for
the report.
"""

from __future__ import annotations

import math
from pathlib import Path

from pipeline.io import read_json, write_json

MARKER = "diverged.json"


class ModelDiverged(RuntimeError):
    """A model that an item reads diverged in training: ``info`` is its marker."""

    def __init__(self, name: str, info: dict):
        super().__init__(f"model {name} {describe(info)}")
        self.name, self.info = name, info


def _number(x: float | None) -> float | str | None:
    """A loss as JSON allows it: NaN and Inf as text."""
    return x if x is None or math.isfinite(x) else str(x)


def of_training(item: str, model: str, err) -> dict:
    """The marker of the training ``item`` of ``model`` stopped by ``err`` (a NonFiniteLossError)."""
    return {"item": item, "model": model, "epoch": err.epoch, "step": err.step, "loss": _number(err.loss),
            "reason": f"its loss was {err.loss:.3g} at epoch {err.epoch} step {err.step}" if err.loss is not None else str(err)}


def downstream(item: str, reads: str, info: dict, role: str = "model") -> dict:
    """The marker of ``item``, which reads the model ``reads`` (as its ``role``: its model, its
    start model) whose marker is ``info``: the same origin, epoch and loss, its own reason."""
    return {**info, "item": item, "reads": reads,
            "reason": f"its {role} {reads} " + (describe(info) if info["model"] == reads
                                                 else f"did not train: model {info['model']} {describe(info)}")}


def describe(info: dict, of: str | None = None) -> str:
    """``diverged at epoch E`` (and the model that diverged, where it is not ``of``)."""
    return f"diverged at epoch {info.get('epoch')}" + (f" (model {info['model']})" if of and info.get("model") != of else "")


def write(folder: Path, info: dict) -> None:
    write_json(Path(folder) / MARKER, info)


def read(folder: Path) -> dict | None:
    """The marker in ``folder``, or None where the item did not diverge."""
    path = Path(folder) / MARKER
    return read_json(path) if path.is_file() else None


def found(root: Path = Path("."), tops: tuple[str, ...] = ("models", "results")) -> list[tuple[Path, dict]]:
    """Every diverged item's folder under ``root/TOP`` (relative to ``root``) with its marker."""
    root = Path(root)
    return [(path.parent.relative_to(root), read_json(path))
            for top in tops for path in sorted((root / top).rglob(MARKER))]
