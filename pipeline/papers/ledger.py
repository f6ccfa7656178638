"""The ledger's vocabulary: a paper's setting, its tables, its claims and trends, and the check
of how far our setting is from the paper's.

A *source* is what fills a table row or one side of a claim: a *role* (``standard``,
``adversarial``, ``bn_params``, ...), by default the evaluated target of that name, else what
params' ``ledger.roles`` maps it to; or a point of an ablation grid, written ``GRID=VALUE``
(``afa_k=5``, ``activation=silu``). A source that a params file does not run is an error when
params load, naming the row or claim, unless ``ledger.not_run`` lists it (it is then shown as not
run in this config). The papers' declarations are the modules beside this one
(pipeline/papers/__init__.py lists them).

A *claim* is "A against B under a metric at the threat eps", with the paper's direction and,
where the paper prints both figures, its size; it is judged paired on the same test images
(verdicts.py). A *trend* is "Y rises (or falls) with X" along a series (a dial, an interpolation,
a grid, an analysis against eps), judged by the sign of Spearman's rho and its exact permutation
test. A *table* lays the paper's rows beside ours, one renderer for all (render.py).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

#: what a claim may compare: clean accuracy, an attack's accuracy at the threat eps (its key in
#: params, e.g. ``pgd``: the same attack on both sides whatever their tier; ``KEY_alone``: the
#: attack by itself), or the worst case over every attack run (only where both sides ran the same
#: attacks)
METRICS = ("clean", "fgsm", "pgd", "cw_linf", "worst_case")


@dataclass(frozen=True)
class Setting:
    """Where a figure comes from. ``None``: the paper does not say, or it does not apply."""
    dataset: str
    arch: str
    epochs: int | None
    threat_eps: float
    attack: str  # the attack behind the robust figures, with its strength ("PGD-100", "AutoAttack standard")
    deployment: str  # how the models are run at inference ("population statistics", "BN+Shaping, 9 clean images")
    metric: str  # what an accuracy counts ("correct on the attacked input", "correct on clean and attacked")

    def differences(self, ours: Setting) -> list[str]:
        """Each field where ``ours`` differs, as ``field: paper's value vs ours``; eps compared to 1e-6."""
        out = []
        for f in fields(self):
            theirs, mine = getattr(self, f.name), getattr(ours, f.name)
            same = abs(theirs - mine) < 1e-6 if isinstance(theirs, float) and isinstance(mine, float) else theirs == mine
            if not same:
                out.append(f"{f.name}: {_show(theirs)} vs {_show(mine)}")
        return out

    def comparability(self, ours: Setting) -> str:
        """"same setting" when every field matches, else which fields differ."""
        diff = self.differences(ours)
        return "same setting" if not diff else "differs in " + "; ".join(diff)


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value * 255:.3g}/255"
    return "unstated" if value is None else str(value)


@dataclass(frozen=True)
class Claim:
    """A is above (``direction`` +1) or below (-1) B under ``metric``, as the paper found it.
    ``paper_a`` / ``paper_b``: the paper's figures (accuracy in %) where it prints both."""
    id: str
    where: str  # "Table 1"
    text: str  # the claim in our words
    a: str  # role
    b: str  # role
    metric: str
    direction: int
    paper_a: float | None = None
    paper_b: float | None = None
    metric_b: str | None = None  # B's metric where it is not A's: two attacks on the same source, paired
    analysis: str | None = None  # both sides are items of this analysis kind; metrics name its outcomes

    def __post_init__(self):
        if self.direction not in (1, -1):
            raise ValueError(f"claim {self.id}: direction is +1 or -1, not {self.direction!r}")
        for m in (self.metric, self.metric_b or self.metric):
            if self.analysis is None and m not in METRICS and not m.endswith(("_alone", "_best_single")):
                raise ValueError(f"claim {self.id}: metric {m!r} is not one of {METRICS}, an attack's KEY_alone "
                                 "or KEY_best_single")
        if (self.paper_a is None) != (self.paper_b is None):
            raise ValueError(f"claim {self.id}: give both of the paper's figures or neither")
        if self.paper_a is not None and (self.paper_a - self.paper_b) * self.direction <= 0:
            raise ValueError(f"claim {self.id}: the paper's figures {self.paper_a} and {self.paper_b} do not go "
                             f"the claim's direction {self.direction:+d}")

    @property
    def paper_effect(self) -> float | None:
        """A - B in points, as the paper printed them."""
        return None if self.paper_a is None else round(self.paper_a - self.paper_b, 2)


def is_grid_point(source: str) -> bool:
    """``GRID=VALUE``: a point of an ablation grid; anything else names a role."""
    return "=" in source


@dataclass(frozen=True)
class Trend:
    """``y`` rises (``direction`` +1) or falls (-1) with ``x`` along ``series``, as the paper found it.

    ``series`` names where the points come from: ``dial:ROLE`` (the strength dial of analyses
    whose model fills ROLE; x the dial's setting), ``interpolate:PAIR`` (an interpolation
    analysis, rows of ``stats: interpolate``; x is p), ``strength:ROLE`` (the feature-statistics
    analysis of ROLE; x is eps, y a per-eps list of its metrics) or ``grid:GRID`` (an ablation's
    points, x the grid's value, y a metric of each point)."""
    id: str
    where: str
    text: str
    series: str
    x: str
    y: str
    direction: int

    def __post_init__(self):
        if self.direction not in (1, -1):
            raise ValueError(f"trend {self.id}: direction is +1 or -1, not {self.direction!r}")
        if self.series.split(":")[0] not in TREND_SERIES:
            raise ValueError(f"trend {self.id}: series {self.series!r} is not one of {TREND_SERIES} followed by ':NAME'")


TREND_SERIES = ("dial", "interpolate", "strength", "grid")


@dataclass(frozen=True)
class Column:
    """One figure of a row. ``measure`` is read from the row's source: for a target or grid point
    ``clean``, an attack key (its threat-eps column), ``KEY_alone`` or ``worst_case``; for an
    analysis row a dotted path into its metrics.json (``clean.BN``, ``adaptive.eot``). ``eps``: a
    fraction of the threat eps, read from the accuracy curve instead of the threat-eps metrics
    (AFA's {0, 1, 2, 4, 8}/255 at 8/255 is 0, 1/8, 1/4, 1/2, 1). ``model.KEY``: KEY of the
    training metrics of the row's model. ``error``: shown as 100 minus the accuracy, as the paper
    prints it. ``scale``: ours times this is the paper's unit (100: a fraction shown in %)."""
    label: str
    measure: str = "clean"
    eps: float | None = None
    error: bool = False
    scale: float = 100.0


@dataclass(frozen=True)
class Row:
    """A row of a paper table: ``source`` fills it (a role or ``GRID=VALUE``; with ``analysis``,
    the analysis of that kind whose item is the role's target), ``paper`` its figures per column
    in % (None: the paper prints none there). ``fallback``: the role that fills the row where
    params have no such grid point (AFA's K = 5 is the main model). ``deployment``: how the paper
    deployed this row, in our words, where it is not the table's. ``measure_args``: fills the
    ``{name}`` fields of the columns' measures (one column layout for several attacks)."""
    label: str
    source: str
    paper: tuple[float | None, ...]
    analysis: str | None = None
    fallback: str | None = None
    deployment: str | None = None
    measure_args: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Table:
    """A paper table or figure. Tables of one paper that share ``where`` are variants of one
    table in other settings (Table 3 per architecture, dataset and epochs): the report lays the
    variant closest to ours. ``average``: a last column, the mean over the eps columns of that
    measure (AFA's avg over its eps grid)."""
    where: str
    title: str
    setting: Setting
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    average: str | None = None
    note: str = ""

    def __post_init__(self):
        width = len(self.columns) + (self.average is not None)
        for row in self.rows:
            if len(row.paper) != width:
                raise ValueError(f"{self.where}, row {row.label!r}: {len(row.paper)} paper figures for {width} columns")
        if self.average is not None and not self.averaged():
            raise ValueError(f"{self.where}: no eps column of measure {self.average!r} to average")

    def averaged(self) -> list[int]:
        """The columns the average is over."""
        return [i for i, c in enumerate(self.columns) if c.measure == self.average and c.eps is not None]

    def sources(self) -> list[tuple[Row, str]]:
        """(row, source) for every source a row may read: its own and its fallback."""
        return [(r, s) for r in self.rows for s in (r.source, r.fallback) if s is not None]


@dataclass(frozen=True)
class Reading:
    """One reading of a method the paper leaves open (RobMask with or without its clean pass),
    and the claims that test it: the report says, per reading, how many of them ours point the
    paper's way, so that a reader sees which reading is closer to the paper's tables in direction."""
    label: str  # "Algorithm 1 as printed (`robmask_alg1`)"
    claims: tuple[str, ...]  # claim ids of the paper


@dataclass(frozen=True)
class Paper:
    key: str
    title: str
    setting: Setting
    claims: tuple[Claim, ...]
    tables: tuple[Table, ...] = ()
    trends: tuple[Trend, ...] = ()
    short: str = ""  # how the report names it ("Adversarial Masking")
    readings: tuple[Reading, ...] = ()

    def __post_init__(self):
        ids = {c.id for c in self.claims}
        for reading in self.readings:
            unknown = [i for i in reading.claims if i not in ids]
            if unknown or not reading.claims:
                raise ValueError(f"{self.key}: reading {reading.label!r} names no claim or unknown claims {unknown}")

    def roles(self) -> set[str]:
        """Every source of its claims and table rows."""
        return {r for c in self.claims for r in (c.a, c.b)} | {s for t in self.tables for _, s in t.sources()}
