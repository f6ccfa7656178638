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


from pipeline.attacks import attack_of
from pipeline.papers import CLAIM_SETTINGS, PAPERS
from pipeline.papers.built import Built
from pipeline.papers.ledger import Claim, Paper, Setting, Trend, is_grid_point
from pipeline.papers.shaping import CONFOUNDING_ATTACK, CONFOUNDING_DEPLOYMENT, CONFOUNDING_METRIC
from pipeline.papers.stats import Paired, paired_over_seeds, trend_verdict, verdict
from pipeline.papers.stats import Trend as TrendResult
from pipeline.papers.stats import trend as spearman_trend

RISING = 0.01  # test accuracy up more than this over the last epoch: not converged
VERDICT_CODE = {"holds": 1.0, "inconclusive": 0.0, "fails": -1.0}  # as an MLflow metric


# ---------------------------------------------------------------- sources


def _exists(params, source: str, analysis: str | None = "any") -> bool:
    """Whether params run ``source``: a point of an ablation grid, else an evaluated target
    (``analysis`` None), an item of that analysis kind, or ("any") either."""
    if is_grid_point(source):
        grid, _, value = source.partition("=")
        spec = params.ablations.get(grid)
        return spec is not None and any(str(v) == value for v in spec.values)
    items = {name for kind, name in params.analysis_items if analysis in ("any", kind)}
    return (analysis in ("any", None) and source in params.targets) or source in items


def resolve(params) -> dict[str, str | None]:
    """Every source of every claim and table row -> what fills it: the target ``ledger.roles``
    maps a role to, else the target of that name, or the grid point itself; None where
    ``ledger.not_run`` lists it or, in params without a ``ledger`` section, where nothing fills
    it. A source that does not exist in params with a ``ledger`` section stays as named, for
    :func:`check_roles` to refuse."""
    ledger = params.ledger
    roles = ledger.roles if ledger is not None else {}
    not_run = set(ledger.not_run) if ledger is not None else set()
    out = {}
    for paper in PAPERS.values():
        for role in sorted(paper.roles()):
            target = None if role in not_run else roles.get(role, role)
            out[role] = target if target is not None and (ledger is not None or _exists(params, target)) else None
    return out


def papers_not_run(params) -> set[str]:
    """The papers ``ledger.not_run`` names by key (``afa``, ``shaping``, ...): none of their
    tables, claims or trends is run in this config."""
    return {key for key in (params.ledger.not_run if params.ledger is not None else []) if key in PAPERS}


def check_roles(params) -> None:
    """ValueError naming the first claim or table row whose source params do not run and that
    ``ledger.not_run`` does not list: a renamed model must take its ledger rows with it. A table
    row with a fallback is filled by either."""
    if params.ledger is None:
        return
    sources = resolve(params)

    def present(role, analysis=None):
        return sources[role] is not None and _exists(params, sources[role], analysis)

    def ok(role, analysis=None):  # filled, or not run by declaration
        return sources[role] is None or present(role, analysis)

    skipped = papers_not_run(params)
    for paper in (p for p in PAPERS.values() if p.key not in skipped):
        for table in paper.tables:
            for row in table.rows:
                if present(row.source, row.analysis) or (row.fallback and present(row.fallback, row.analysis)):
                    continue
                candidates = [r for r in (row.source, row.fallback) if r]
                if any(sources[r] is None for r in candidates):  # declared not run
                    continue
                bad = candidates[0]
                if bad:
                    raise ValueError(_refusal(bad, sources[bad], f"{paper.short or paper.key}, {table.where}, "
                                                                 f"row {row.label!r}", row.analysis))
        for claim in paper.claims:
            for role in (claim.a, claim.b):
                if not ok(role, claim.analysis):
                    raise ValueError(_refusal(role, sources[role], f"claim {claim.id} ({claim.where})", claim.analysis))


def _refusal(role: str, target: str, needed_by: str, analysis: str | None = None) -> str:
    if analysis:
        what = f"params have no {analysis} analysis of {target!r}"
    elif is_grid_point(target):
        what = f"params have no ablation point {target}"
    elif target != role:
        what = f"ledger.roles maps it to {target!r}, which is not evaluated"
    else:
        what = "no target of that name is evaluated"
    return (f"ledger: {needed_by} needs {role!r}: {what}; map it with ledger.roles.{role}: TARGET, or list it "
            f"in ledger.not_run")


# ---------------------------------------------------------------- our side


def attack_name(spec) -> str:
    """An attack and its strength in the papers' words: ``PGD-50``, ``AutoAttack standard``."""
    return attack_of(spec).in_words(spec)


def _attack(cfg, metric: str) -> str:
    if metric == "clean":
        return "none (clean accuracy)"
    if metric == "worst_case":
        return "worst case over " + ", ".join(attack_name(a) for a in cfg.attack_list)
    spec = next((a for a in cfg.attack_list if a.key == metric.removesuffix("_alone")), None)
    return f"{metric} (not in this tier's suite)" if spec is None else attack_name(spec)


def our_setting(params, source: str, metric: str, analysis: str | None = None) -> Setting:
    """The setting our figure for a target or grid point under ``metric`` comes from (for an
    analysis row: the analysis of that kind on the target)."""
    clean = metric == "clean" or metric.startswith("clean.")
    if is_grid_point(source):
        grid, _, value = source.partition("=")
        spec = params.ablations[grid]
        match = next(v for v in spec.values if str(v) == value)
        cfg = spec.config_for(match)
        then = spec.then_config()
        arch = (cfg.model or params.model).arch
        epochs = cfg.epochs + (then.epochs if then is not None else 0)
        ecfg = params.evaluate.for_tier("screen").plus(spec.extra_attacks)  # as stages/ablation.py runs it
        deployment = "as its method deploys it"
    else:  # a target, or the model an analysis item is named after
        t = params.targets.get(source)
        model = t.model if t is not None else source
        ecfg = params.evaluation_config(source) if t is not None else params.evaluate
        arch = params.architecture(model).arch
        epochs = budget(params, model)[0]
        deployment = deployment_of(t) if t is not None else "as its method deploys it"
    attack = _attack(ecfg, metric)
    if analysis == "shaping":
        d = params.evaluate.deployment
        deployment = f"BN (batches of {d.batch_size}), PN and BN+Shaping ({d.n_ref} clean images)"
        attack = "none (clean accuracy)" if clean else ", ".join(attack_name(a) for a in params.shaping_eval.attacks)
    metric_text = CLEAN_METRIC if clean else ATTACKED_METRIC if metric.startswith("attacked") else OUR_METRIC
    if analysis == "confoundings":  # ratios of the model's training attack, as the paper's Sec. IV
        attack, deployment, metric_text = CONFOUNDING_ATTACK, CONFOUNDING_DEPLOYMENT, CONFOUNDING_METRIC
    return Setting(dataset=params.data.dataset, arch=arch, epochs=epochs, threat_eps=ecfg.threat, attack=attack,
                   deployment=deployment, metric=metric_text)


OUR_METRIC = "correct on the clean and the attacked input"
CLEAN_METRIC = "correct on the clean input"
ATTACKED_METRIC = "correct on the attacked input"  # norm shaping's R.Acc (``attacked`` of its analysis)


def deployment_of(target) -> str:
    """How a target runs at inference, in the ledger's words: as its method deploys it (population
    statistics for plain BN, a method's own route otherwise) unless its view says otherwise."""
    view = target.view
    if view is None or (not view.mode and not view.route):
        return "as its method deploys it"
    parts = ([f"mode {view.mode}"] if view.mode else []) + [f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                                            for k, v in view.route.items()]
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


def _diverged(params, roots: Sequence[Path], targets: Sequence[str]) -> str | None:
    """Which side's model diverged in training (its result is a diverged marker), in words."""
    from pipeline import divergence

    for root in roots:
        built = Built(params, root)
        for source in targets:
            folder = built.folder(source)
            for where in ((folder, folder.parent) if folder is not None else ()):
                info = divergence.read(where)
                if info is not None:
                    return f"{source}: model {info.get('model', source)} {divergence.describe(info)}"
    return None


def judge(params, roots: Sequence[str | Path] = (".",), claims: Sequence[str] | None = None) -> list[Verdict]:
    """Every claim (or those of ids ``claims``) against the runs of ``roots`` (one built project per
    seed, same params but the seed); a claim whose role is not run is listed as such."""
    roots = [Path(r) for r in roots]
    roles = resolve(params)
    skipped = papers_not_run(params)
    out = []
    for paper in PAPERS.values():
        for claim in paper.claims:
            if claims is not None and claim.id not in claims:
                continue
            a, b = (None, None) if paper.key in skipped else (roles[claim.a], roles[claim.b])
            metric = claim.metric
            v = Verdict(paper, claim, a, b, metric if claim.metric_b is None else f"{metric} vs {claim.metric_b}")
            out.append(v)
            if a is None or b is None:
                continue
            diverged = _diverged(params, roots, (a, b))
            if diverged:  # stays "not run": one side has no outcomes to pair
                v.flags.append(diverged)
                continue
            tiers = (None, None) if claim.analysis else (tier_of(params, a), tier_of(params, b))
            if metric == "worst_case" and tiers[0] != tiers[1]:
                v.metric = metric = "pgd"
                v.flags.append(f"the two sides' worst cases are over different attacks (tiers {tiers[0]} and "
                               f"{tiers[1]}): compared under PGD")
            pairs = []
            try:
                for root in roots:
                    built = Built(params, root)
                    oa = built.outcomes(a, metric, claim.analysis)
                    ob = built.outcomes(b, claim.metric_b or metric, claim.analysis)
                    n = min(len(oa), len(ob))  # both evaluate the split's first images
                    pairs.append((oa[:n], ob[:n]))
            except FileNotFoundError as missing:  # a build from before outcomes were kept, or an unfinished one
                v.flags.append(str(missing))
                continue
            v.result = paired_over_seeds(pairs)
            v.verdict = verdict(v.result, claim.direction)
            measure = metric.split("/")[0] if claim.analysis else metric
            v.setting = paper_setting_for(paper, claim).comparability(our_setting(params, a, measure, claim.analysis))
            v.flags += _flags(params, roots[0], a, b)
    return out


def tier_of(params, source: str) -> str:
    return "screen" if is_grid_point(source) else params.targets[source].tier


def _history(params, root: Path, source: str) -> tuple[str, Path]:
    """(the model's name, its history.csv) of a target or grid point."""
    from pipeline.layout import ablation_dir, model_dir

    if is_grid_point(source):
        grid, _, value = source.partition("=")
        match = next(v for v in params.ablations[grid].values if str(v) == value)
        return source, ablation_dir(grid, match, root) / "model" / "history.csv"
    model = params.targets[source].model if source in params.targets else source  # else an analysis item: a model
    return model, model_dir(params, model, root) / "history.csv"


def source_budget(params, source: str) -> tuple[int, int]:
    """(epochs, attack steps per training step) of a target's model or a grid point."""
    if is_grid_point(source):
        grid, _, value = source.partition("=")
        spec = params.ablations[grid]
        cfg, then = spec.config_for(next(v for v in spec.values if str(v) == value)), spec.then_config()
        steps = (cfg.attack.steps if cfg.attack else 0) or 0
        return cfg.epochs + (then.epochs if then is not None else 0), steps
    return budget(params, params.targets[source].model if source in params.targets else source)


def _ancestors(params, model: str) -> set[str]:
    """The models ``model`` was fine-tuned from, directly or not (none for a grid point)."""
    out = set()
    while model in params.trained and (model := params.start_of(model)):
        out.add(model)
    return out


def _flags(params, root: Path, a: str, b: str) -> list[str]:
    flags = []
    for source in dict.fromkeys((a, b)):  # once where both sides are one source (two of its attacks)
        model, history = _history(params, root, source)
        up = rising(history)
        if up is not None and up > RISING:
            flags.append(f"{model} not converged (test accuracy +{100 * up:.1f} points over its last epoch)")
    (ea, sa), (eb, sb) = source_budget(params, a), source_budget(params, b)
    ma, mb = _history(params, root, a)[0], _history(params, root, b)[0]
    before_after = mb in _ancestors(params, ma) or ma in _ancestors(params, mb)
    if ea != eb and not before_after:  # a fine-tune against its own start is unequal by design
        flags.append(f"unequal budgets: {ma} {ea} epochs ({sa}-step attack), {mb} {eb} epochs ({sb}-step attack)")
    return flags


# ---------------------------------------------------------------- trends


@dataclass
class TrendVerdict:
    paper: Paper
    trend: Trend
    source: str | None  # what the series was read from (None: not run in this config)
    result: TrendResult | None = None
    verdict: str = "not run"
    points: list[tuple[float, float]] = field(default_factory=list)  # the first seed's series


def series(params, built: Built, trend: Trend, sources: dict[str, str | None]) -> tuple[str | None, list[tuple[float, float]]]:
    """(what the series was read from, its (x, y) points) of ``trend`` in one built project."""
    kind, _, name = trend.series.partition(":")
    if kind == "grid":
        spec = params.ablations.get(name)
        points = [(float(v), (built.metrics(f"{name}={v}") or {}).get(trend.y)) for v in (spec.values if spec else [])]
        return (f"ablations.{name}" if spec else None), [(x, y) for x, y in points if y is not None]
    if kind == "interpolate":
        rows = built.analysis_rows("interpolate", name, "interpolation.csv")
        return (name if rows else None), [(r[trend.x], r[trend.y]) for r in rows if r.get("stats") == "interpolate"]
    target = sources.get(name, name)
    if kind == "dial":
        dial = next((d for d, cfg in params.analyses_of("dial").items()
                     if cfg.model == target and cfg.key == trend.x), None)
        rows = built.analysis_rows("dial", dial, "dial.csv") if dial else []
        return (dial if rows else None), [(r[trend.x], r[trend.y]) for r in rows if r.get(trend.y) is not None]
    m = built.analysis("strength", target) if target else None
    xs, ys = (m or {}).get(trend.x), (m or {}).get(trend.y)
    return (f"strength analysis of {target}" if xs and ys else None), list(zip(xs or [], ys or []))


def judge_trends(params, roots: Sequence[str | Path] = (".",)) -> list[TrendVerdict]:
    """Every trend of the ledger along its series in each built project of ``roots`` (one per seed)."""
    sources = resolve(params)
    skipped = papers_not_run(params)
    out = []
    for paper in PAPERS.values():
        for t in paper.trends:
            if paper.key in skipped:
                out.append(TrendVerdict(paper, t, None))
                continue
            found = [series(params, Built(params, root), t, sources) for root in roots]
            source, points = found[0]
            v = TrendVerdict(paper, t, source, points=points)
            out.append(v)
            if source is None or len(points) < 3 or any(len(p) != len(points) for _, p in found):
                continue
            v.result = spearman_trend([([x for x, _ in p], [y for _, y in p]) for _, p in found])
            v.verdict = trend_verdict(v.result, t.direction)
    return out


# ---------------------------------------------------------------- output


def _pts(x: float | None, signed: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:+.1f}" if signed else f"{x:.1f}"


def _counts(verdicts: list[Verdict]) -> dict[str, int]:
    return {k: sum(v.verdict == k for v in verdicts) for k in ("holds", "fails", "inconclusive", "not run")}


def summary_line(verdicts: list[Verdict], trends: Sequence[TrendVerdict] = ()) -> str:
    c, t = _counts(verdicts), _counts(trends)
    line = (f"The papers' claims, checked paired on the same test images: {c['holds']} hold, {c['fails']} fail, "
            f"{c['inconclusive']} inconclusive, {c['not run']} not run in this config")
    if trends:
        line += f"; their trends: {t['holds']} hold, {t['fails']} fail, {t['inconclusive']} inconclusive, {t['not run']} not run"
    return line


def markdown(verdicts: list[Verdict], seeds: int = 1, trends: Sequence[TrendVerdict] = ()) -> str:
    """reports/claims.md: one row per claim, then one per trend."""
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
    if trends:
        lines += ["", "## Trends", "",
                  "Y rising (+1) or falling (-1) with X along a series, as the paper found it: Spearman's rho "
                  + ("of the series" if seeds == 1 else f"averaged over {seeds} seeds")
                  + " and its two-sided permutation p-value (every ordering of the points where there are at most 7, "
                  "else 20,000 shuffles); it *holds* when rho has the paper's sign and p < 0.05, *fails* when the other "
                  "sign and p < 0.05. *detectable*: the smallest |rho| that could reach p < 0.05 with this many points "
                  "(\"none\": no ordering of so few points could).", "",
                  f"| paper | where | trend | series | points (x: y){', the first seed' if seeds > 1 else ''} | rho | p | "
                  "detectable | verdict |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [trend_row(v) for v in trends]
    papers = {v.paper.key: v.paper for v in [*verdicts, *trends]}
    titles = "; ".join(f"{p.key}: \"{p.title}\"" for p in papers.values())
    return "\n".join(lines + ["", f"Papers: {titles}.", ""])


def trend_row(v: TrendVerdict) -> str:
    t, r = v.trend, v.result
    pts = ", ".join(f"{x:g}: {100 * y:.1f}" if abs(y) <= 1 else f"{x:g}: {y:.3g}" for x, y in v.points) or "—"
    det = "—" if r is None else ("none" if r.detectable is None else f"{r.detectable:.2f}")
    return (f"| {v.paper.key} | {t.where} | {t.text} ({t.y} {'rises' if t.direction > 0 else 'falls'} with {t.x}) | "
            f"{v.source or 'not run in this config'} | {pts} | {'—' if r is None else f'{r.rho:+.2f}'} | "
            f"{'—' if r is None else f'{r.p_value:.2g}'} | {det} | **{v.verdict}** |")


def claim_line(v: Verdict) -> str:
    """One claim's verdict as a sentence of the report, under the table it comes from."""
    c, r = v.claim, v.result
    paper = "" if c.paper_effect is None else f"paper {c.paper_effect:+.1f}, "
    if r is None:
        why = "; ".join(v.flags) or "not run in this config"
        return f"- {c.text} ({v.a or c.a} vs {v.b or c.b}, {v.metric}): **{v.verdict}** ({why})."
    return (f"- {c.text} ({v.a} vs {v.b}, {v.metric}): {paper}ours {100 * r.diff:+.1f} "
            f"[{100 * r.low:+.1f}, {100 * r.high:+.1f}], **{v.verdict}**" + (f"; {'; '.join(v.flags)}" if v.flags else "") + ".")


def trend_line(v: TrendVerdict) -> str:
    t, r = v.trend, v.result
    if r is None:
        return f"- {t.text}: **{v.verdict}** ({v.source or 'not run in this config'})."
    return f"- {t.text}: rho {r.rho:+.2f} over {r.n} points (p {r.p_value:.2g}), **{v.verdict}**."


def metrics(verdicts: list[Verdict], trends: Sequence[TrendVerdict] = ()) -> dict[str, float]:
    """One MLflow metric per judged claim and measure: ``claim/ID/diff`` (points), ``.../low``,
    ``.../high`` and ``.../verdict`` (+1 holds, 0 inconclusive, -1 fails); per trend
    ``trend/ID/rho`` and ``.../verdict``."""
    out = {}
    for v in trends:
        if v.result is not None:
            out.update({f"trend/{v.trend.id}/rho": v.result.rho, f"trend/{v.trend.id}/verdict": VERDICT_CODE[v.verdict]})
    for v in verdicts:
        if v.result is None:
            continue
        key = f"claim/{v.claim.id}"
        out.update({f"{key}/diff": 100 * v.result.diff, f"{key}/low": 100 * v.result.low,
                    f"{key}/high": 100 * v.result.high, f"{key}/verdict": VERDICT_CODE[v.verdict]})
    return out
