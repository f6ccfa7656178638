"""``bnat exp-show``: DVC experiments as one row per experiment and evaluated model, with the
figures a researcher compares (clean, AutoAttack or the screen tier's APGD, worst case) and the
seed. ``dvc exp show`` puts every metric of every file in one row per experiment, which no
terminal holds once a few models are evaluated."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

_RESULT = re.compile(r"^metrics/results/[^/]+/([^/]+)\.json$")  # models and views, not grid points or analyses
COLUMNS = ("clean", "autoattack", "apgd", "worst_case")


def _label(state: dict) -> str:
    rev = state["rev"]
    return state.get("name") or (rev[:7] if re.fullmatch(r"[0-9a-f]{40}", rev) else rev)


def _tips(states: list[dict]):
    """(label, data) for the workspace, each baseline commit and each experiment's newest revision."""
    for state in states:
        if state.get("data"):
            yield _label(state), state["data"]
        for exp in state.get("experiments") or []:
            tip = exp["revs"][0] if exp.get("revs") else None
            if tip and tip.get("data"):
                yield f"  {exp.get('name') or _label(tip)}", tip["data"]


def rows(states: list[dict], models: list[str] | None = None) -> list[dict]:
    """The table's rows from ``dvc exp show --json``: one per (experiment, model)."""
    out = []
    for label, data in _tips(states):
        seed = ((data.get("params") or {}).get("params.yaml", {}).get("data") or {}).get("seed")
        for path, found in sorted((data.get("metrics") or {}).items()):
            m = _RESULT.match(path)
            if not m or (models and m.group(1) not in models) or not found.get("data"):
                continue
            out.append({"experiment": label, "seed": seed, "model": m.group(1),
                        **{c: found["data"].get(c) for c in COLUMNS}})
    return out


def table(found: list[dict]) -> str:
    """Fixed-width text of ``rows``' output; a figure the tier did not measure shows as '-'."""
    head = ("experiment", "seed", "model", "clean", "AutoAttack", "APGD (screen)", "worst case")
    cells = [[str(r["experiment"]), "" if r["seed"] is None else str(r["seed"]), r["model"],
              *("-" if r[c] is None else f"{100 * r[c]:.1f}" for c in COLUMNS)] for r in found]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    fmt = lambda row: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, cells)])


def show(project_dir: str | Path = ".", models: list[str] | None = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=project_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc exp show failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    return table(rows(json.loads(proc.stdout), models))
