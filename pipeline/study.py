"""A multi-seed study: the ledger's claims over N training seeds, each evaluated on every test image.

Each seed is a full build of the project's params (``seed: S``, ``evaluate.n_samples: null``) in
a worker checkout of its own (``.dvc/tmp/workers/study-S``, pipeline/workers.py) sharing the
project's DVC cache, so a seed built once is restored from the run cache the next time, by any
study or sweep. The claims are then judged over the seeds (pipeline/papers/verdicts.py: the mean
paired difference with a bootstrap over images and seeds) and, beside each, the verdict of the
first seed alone, so the report says which verdicts the extra seeds moved.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import yaml

from pipeline import workers
from pipeline.config import ConfigError, load_params
from pipeline.io import atomic_dir, write_text

STUDY_DIR = "studies"


def seed_params(raw: dict, seed: int) -> dict:
    """params for one seed of the study: its seed, every test image."""
    out = dict(raw)
    out["seed"] = seed
    out["evaluate"] = {**raw["evaluate"], "n_samples": None}
    return out


def build_seed(project_dir: Path, raw: dict, seed: int, items_at_once: int | None = None) -> Path:
    """``dvc repro`` of the study's params at ``seed`` in the seed's worker checkout (the project's
    code as it is, uncommitted changes included): its folder."""
    where = workers.checkout(project_dir, f"study-{seed}")
    (where / "params.yaml").write_text(yaml.safe_dump(seed_params(raw, seed), sort_keys=False))
    env = {**os.environ, **workers.worker_env(project_dir, items_at_once)}
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=where, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"study: dvc repro of seed {seed} failed in {where} (its output above says why)")
    return where


def run(project_dir: str | Path, seeds: Sequence[int], name: str | None = None) -> Path:
    """Build every seed, judge the claims over them and write ``studies/NAME/claims.md``."""
    from pipeline.papers.verdicts import judge, judge_trends, markdown

    project = Path(project_dir).resolve()
    if len(seeds) < 2 or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ConfigError(f"study: give two or more distinct non-negative seeds (got {list(seeds)})")
    params_file = project / "params.yaml"
    load_params(params_file)  # a bad params file fails here, before any seed builds
    raw = yaml.safe_load(params_file.read_text())
    t0 = time.perf_counter()
    roots = []
    for seed in seeds:
        print(f"study: seed {seed} ({len(roots) + 1} of {len(seeds)})", flush=True)
        roots.append(build_seed(project, raw, seed))
    built = time.perf_counter() - t0
    seeded = load_params(roots[0] / "params.yaml")  # every image: the targets as the seeds ran them
    over, trends = judge(seeded, roots), judge_trends(seeded, roots)
    first = {v.claim.id: v.verdict for v in judge(seeded, roots[:1])}
    first |= {v.trend.id: v.verdict for v in judge_trends(seeded, roots[:1])}
    decided = ("holds", "fails")
    moved = [v.claim.id for v in over if first.get(v.claim.id) == "inconclusive" and v.verdict in decided]
    moved += [v.trend.id for v in trends if first.get(v.trend.id) == "inconclusive" and v.verdict in decided]
    name = name or f"seeds-{'-'.join(map(str, seeds))}"
    out = project / STUDY_DIR / name
    text = markdown(over, seeds=len(seeds), trends=trends).replace(
        "# Claims of the papers, checked",
        f"# Claims of the papers over seeds {', '.join(map(str, seeds))}\n\nEvery test image, {len(seeds)} "
        f"training seeds of {params_file.name}, built in {built / 60:.1f} min. Against the first seed alone, "
        f"{len(moved)} verdicts moved from inconclusive: {', '.join(moved) or 'none'}.", 1)
    text += "\n## The first seed alone\n\n" + "\n".join(f"- {k}: {v}" for k, v in first.items()) + "\n"
    with atomic_dir(out) as tmp:
        write_text(tmp / "claims.md", text)
    return out / "claims.md"
