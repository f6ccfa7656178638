"""Verdicts: each claim of the ledger checked against our runs, paired on the same test images.

A claim's roles resolve to evaluated targets (:func:`resolve`); their per-image outcomes
(pipeline/papers/outcomes.py) give the paired difference A - B and its interval
(pipeline/papers/stats.py), over the images both were evaluated on, and over seeds in a study.
Beside the verdict, each claim says how our setting differs from the paper's and flags what
makes a verdict weaker than it looks: a side whose training had not converged (test accuracy
still rising over its last epochs) and two sides trained with unequal budgets.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.papers import CLAIM_SETTINGS, PAPERS, outcomes
from pipeline.papers.ledger import Claim, Paper, Setting
from pipeline.papers.stats import Paired, paired_over_seeds, verdict

RISING = 0.01  # test accuracy up more than this over the last epoch: not converged
VERDICT_CODE = {"holds": 1.0, "inconclusive": 0.0, "fails": -1.0}  # as an MLflow metric


# ---------------------------------------------------------------- roles


def resolve(params) -> dict[str, str | None]:
    """Every role of every claim -> the target that fills it (``ledger.roles``, else the target of
    that name), or None where ``ledger.not_run`` lists it or, in params without a ``ledger``
    section, where no target fills it."""
    ledger = params.ledger
    roles = ledger.roles if ledger is not None else {}
    not_run = set(ledger.not_run) if ledger is not None else set()
    out = {}
    for paper in PAPERS.values():
        for role in sorted(paper.roles()):
            target = None if role in not_run else roles.get(role, role)
            out[role] = target if ledger is not None or target in params.targets else None
    return out


def check_roles(params) -> None:
    """ValueError naming the first claim whose role no evaluated target fills and that
    ``ledger.not_run`` does not list: a renamed model must take its ledger rows with it."""
    targets = params.targets
    for role, target in resolve(params).items():
        if target is not None and target not in targets:
            claim = next(c for p in PAPERS.values() for c in p.claims if role in (c.a, c.b))
            mapped = f"ledger.roles maps it to {target!r}, which" if target != role else "no target of that name"
            raise ValueError(f"ledger: claim {claim.id} ({claim.where}) needs role {role!r}: {mapped} is evaluated; "
                             f"map it with ledger.roles.{role}: TARGET, or list it in ledger.not_run")


# ---------------------------------------------------------------- our side


def our_setting(params, target: str, metric: str) -> Setting:
    """The setting our figure for ``target`` under ``metric`` comes from."""
    t = params.targets[target]
    cfg = params.evaluation_config(target)
    arch = params.architecture(t.model).arch
    train = params.training(t.model)
    if metric == "clean":
        attack = "none (clean accuracy)"
    elif metric == "worst_case":
        attack = "worst case over " + ", ".join(a.key for a in cfg.attack_list)
    else:
        spec = next((a for a in cfg.attack_list if a.key == metric), None)
        steps = getattr(spec, "steps", None)
        attack = metric if spec is None else spec.key + (f" ({steps} steps)" if steps else "")
    return Setting(dataset=params.data.dataset, arch=arch, epochs=budget(params, t.model)[0], threat_eps=cfg.threat,
                   attack=attack, deployment=deployment_of(t), metric=CLEAN_METRIC if metric == "clean" else OUR_METRIC)


OUR_METRIC = "correct on the clean and the attacked input"
CLEAN_METRIC = "correct on the clean input"


def deployment_of(target) -> str:
    """How a target runs at inference, in the ledger's words: as its method deploys it (population
    statistics for plain BN, a method's own route otherwise) unless its view says otherwise."""
    view = target.view
    if view is None or (not view.mode and not view.route):
        return "as its method deploys it"
    parts = ([f"mode {view.mode}"] if view.mode else []) + [f"{k} {v}" for k, v in view.route.items()]
    return ", ".join(parts)


def paper_setting_for(paper: Paper, claim: Claim) -> Setting:
    """The setting the paper's figures for ``claim`` come from; for a clean-accuracy claim, its
    attack and metric are those of clean accuracy."""
    setting = CLAIM_SETTINGS.get(claim.id, paper.setting)
    if claim.metric == "clean":
        setting = replace(setting, attack="none (clean accuracy)", metric=CLEAN_METRIC)
    return setting


def rising(history: Path) -> float | None:
    """How much test accuracy rose over the last epoch (None: fewer than two epochs recorded)."""
    if not history.exists():
        return None
    with open(history, newline="") as f:
        accs = [float(r["test_acc"]) for r in csv.DictReader(f) if r.get("test_acc") not in (None, "")]
    return accs[-1] - accs[-2] if len(accs) >= 2 else None


def budget(params, model: str) -> tuple[int, int]:
    """(epochs, attack steps per training step) of ``model``, with its start model's epochs for a fine-tune."""
    cfg = params.training(model)
    steps = (cfg.attack.steps if getattr(cfg, "attack", None) else 0) or 0
    start = params.start_of(model)
    return (cfg.epochs + (budget(params, start)[0] if start else 0), steps)


# ---------------------------------------------------------------- verdicts


@dataclass
class Verdict:
    paper: Paper
    claim: Claim
    a: str | None  # the targets filling the roles (None: not run in this config)
    b: str | None
    metric: str  # the metric compared (a worst case over different attacks is compared under PGD)
    result: Paired | None = None
    verdict: str = "not run"
    setting: str = ""
    flags: list[str] = field(default_factory=list)


def _outcome(root: Path, params, target: str, metric: str) -> np.ndarray:
    from pipeline.layout import result_dir

    path = result_dir(params, target, root) / outcomes.FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no per-image outcomes (evaluate the target again: `dvc repro`)")
    return outcomes.metric(outcomes.load(path), metric)


def _diverged(params, roots: Sequence[Path], targets: Sequence[str]) -> str | None:
    """Which side's model diverged in training (its result is a diverged marker), in words."""
    from pipeline import divergence
    from pipeline.layout import result_dir

    for root in roots:
        for target in (t for t in targets if t in params.targets):
            info = divergence.read(result_dir(params, target, root))
            if info is not None:
                return f"{target}: model {info['model']} {divergence.describe(info)}"
    return None


def judge(params, roots: Sequence[str | Path] = (".",), claims: Sequence[str] | None = None) -> list[Verdict]:
    """Every claim (or those of ids ``claims``) against the runs of ``roots`` (one built project per
    seed, same params but the seed); a claim whose role is not run is listed as such."""
    roots = [Path(r) for r in roots]
    roles = resolve(params)
    out = []
    for paper in PAPERS.values():
        for claim in paper.claims:
            if claims is not None and claim.id not in claims:
                continue
            a, b = roles[claim.a], roles[claim.b]
            metric = claim.metric
            v = Verdict(paper, claim, a, b, metric)
            out.append(v)
            if a is None or b is None:
                continue
            diverged = _diverged(params, roots, (a, b))
            if diverged:  # stays "not run": one side has no outcomes to pair
                v.flags.append(diverged)
                continue
            if metric == "worst_case" and params.targets[a].tier != params.targets[b].tier:
                v.metric = metric = "pgd"
                v.flags.append("the two sides' worst cases are over different attacks (tiers "
                               f"{params.targets[a].tier} and {params.targets[b].tier}): compared under PGD")
            pairs = []
            for root in roots:
                oa, ob = _outcome(root, params, a, metric), _outcome(root, params, b, metric)
                n = min(len(oa), len(ob))  # both evaluate the split's first images
                pairs.append((oa[:n], ob[:n]))
            v.result = paired_over_seeds(pairs)
            v.verdict = verdict(v.result, claim.direction)
            v.setting = paper_setting_for(paper, claim).comparability(our_setting(params, a, metric))
            v.flags += _flags(params, roots[0], a, b)
    return out


def _flags(params, root: Path, a: str, b: str) -> list[str]:
    from pipeline.layout import model_dir

    flags = []
    for target in (a, b):
        model = params.targets[target].model
        up = rising(model_dir(params, model, root) / "history.csv")
        if up is not None and up > RISING:
            flags.append(f"{model} not converged (test accuracy +{100 * up:.1f} points over its last epoch)")
    (ea, sa), (eb, sb) = budget(params, params.targets[a].model), budget(params, params.targets[b].model)
    if (ea, sa) != (eb, sb):
        flags.append(f"unequal budgets: {params.targets[a].model} {ea} epochs, {sa}-step attack; "
                     f"{params.targets[b].model} {eb} epochs, {sb}-step attack")
    return flags


# ---------------------------------------------------------------- output


def _pts(x: float | None, signed: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:+.1f}" if signed else f"{x:.1f}"


def _counts(verdicts: list[Verdict]) -> dict[str, int]:
    return {k: sum(v.verdict == k for v in verdicts) for k in ("holds", "fails", "inconclusive", "not run")}


def summary_line(verdicts: list[Verdict]) -> str:
    c = _counts(verdicts)
    return (f"The papers' claims, checked paired on the same test images: {c['holds']} hold, {c['fails']} fail, "
            f"{c['inconclusive']} inconclusive, {c['not run']} not run in this config")


def markdown(verdicts: list[Verdict], seeds: int = 1) -> str:
    """reports/claims.md: one row per claim."""
    counts = _counts(verdicts)
    method = ("the exact McNemar test on the images both sides were evaluated on, with the Clopper-Pearson "
              "interval of the discordant split carried to A - B (the interval excludes 0 exactly when the test "
              "rejects at 5%)" if seeds == 1 else
              f"the mean over {seeds} seeds of A - B on the same images, with a 95% bootstrap interval that "
              "resamples the images and the seeds")
    lines = ["# Claims of the papers, checked", "",
             f"{len(verdicts)} claims: {counts['holds']} hold, {counts['fails']} fail, {counts['inconclusive']} "
             f"inconclusive, {counts['not run']} not run in this config. Accuracy differences A - B in points. "
             f"Method: {method}. A claim *holds* when our difference has the paper's sign and its interval excludes "
             "0, *fails* when it excludes 0 on the other side, and is *inconclusive* otherwise; *detectable* is the "
             "smallest difference this comparison could call (\"—\": none, too few images differ). The setting "
             "column names every field where ours differs from the paper's.", "",
             "| paper | where | claim | A vs B | metric | paper A - B | ours A - B [95%] | p | detectable | verdict | "
             "setting | flags |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for v in verdicts:
        c, r = v.claim, v.result
        ours = "—" if r is None else f"{100 * r.diff:+.1f} [{100 * r.low:+.1f}, {100 * r.high:+.1f}]"
        p = "—" if r is None else (f"{r.p_value:.2g}")
        det = "—" if r is None else _pts(100 * r.detectable, signed=False)
        sides = f"{v.a or c.a} vs {v.b or c.b}"
        lines.append(f"| {v.paper.key} | {c.where} | {c.text} | {sides} | {v.metric} | {_pts(c.paper_effect)} | {ours} "
                     f"| {p} | {det} | **{v.verdict}** | {v.setting or '—'} | {'; '.join(v.flags) or '—'} |")
    titles = "; ".join(f"{p.key}: \"{p.title}\"" for p in {v.paper.key: v.paper for v in verdicts}.values())
    return "\n".join(lines + ["", f"Papers: {titles}.", ""])


def metrics(verdicts: list[Verdict]) -> dict[str, float]:
    """One MLflow metric per judged claim and measure: ``claim/ID/diff`` (points), ``.../low``,
    ``.../high`` and ``.../verdict`` (+1 holds, 0 inconclusive, -1 fails)."""
    out = {}
    for v in verdicts:
        if v.result is None:
            continue
        key = f"claim/{v.claim.id}"
        out.update({f"{key}/diff": 100 * v.result.diff, f"{key}/low": 100 * v.result.low,
                    f"{key}/high": 100 * v.result.high, f"{key}/verdict": VERDICT_CODE[v.verdict]})
    return out
