"""Per-image outcomes of an evaluation, kept beside its metrics so that two rows evaluated on the
same test images compare paired (pipeline/papers/stats.py).

``outcomes.npz`` in a result folder holds, for the first ``n`` test images (every evaluation
takes the split's first images), bit-packed: ``clean`` (correct without attack), ``worst_case``
(correct under every attack run at the threat eps), and per attack key at the threat eps its
cumulative outcome (``robust/KEY``, the report's column) and, where it ran on every image it
could fool, its own (``alone/KEY``). 100 images and ten attacks take under 200 bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

FILE = "outcomes.npz"


def of_result(result) -> dict[str, np.ndarray]:
    """The per-image outcomes of a :class:`pipeline.evaluate.EvalResult` at its threat eps."""
    t = result.threat_eps
    out = {"clean": result.clean, "worst_case": result.worst[t]}
    out.update({f"robust/{key}": ok for (key, eps), ok in result.robust.items() if eps == t})
    out.update({f"alone/{key}": ok for (key, eps), ok in result.alone.items() if eps == t})
    out.update({f"robust/{key}_best_single": result.best_single(key, eps)[1] for key, eps in result.parts if eps == t})
    return {k: v.detach().cpu().numpy().astype(bool) for k, v in out.items()}


def save(path: str | Path, outcomes: Mapping[str, np.ndarray]) -> None:
    n = {len(v) for v in outcomes.values()}
    if len(n) != 1:
        raise ValueError(f"outcomes of one evaluation must cover the same images (lengths {sorted(n)})")
    np.savez_compressed(path, n=np.array(n.pop()), **{k: np.packbits(v) for k, v in outcomes.items()})


def load(path: str | Path) -> dict[str, np.ndarray]:
    """``{name: bool array over the first n test images}`` of :func:`save`."""
    with np.load(path) as data:
        n = int(data["n"])
        return {k: np.unpackbits(data[k], count=n).astype(bool) for k in data.files if k != "n"}


def metric(outcomes: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """One metric's per-image outcome: ``clean``, ``worst_case``, an attack key (its cumulative
    column) or ``KEY_alone`` (the attack by itself)."""
    for key in (name, f"robust/{name}", f"alone/{name.removesuffix('_alone')}" if name.endswith("_alone") else None):
        if key in outcomes:
            return outcomes[key]
    raise KeyError(f"no per-image outcome {name!r} (have {sorted(outcomes)})")
