"""Paired statistics for claims: two rows evaluated on the same test images.

Within one seed, each image is a pair of outcomes (A correct?, B correct?). Only the discordant
images carry information about A - B: ``b`` where A alone is right, ``c`` where B alone is. The
difference is (b - c) / n; conditional on the b + c discordant images, b is Binomial(b + c, pi)
and A - B = (b + c) / n * (2 pi - 1). The exact McNemar test is the binomial test of pi = 1/2,
and the interval is the Clopper-Pearson interval of pi carried through that line: the interval
excludes 0 exactly when the test rejects at 5%, so a verdict and its p-value never disagree.

Over seeds (a study), the same images are evaluated under each seed's models: the interval is a
bootstrap that resamples the images (one draw shared by every seed, since they are the same
images) and the seeds, so it holds both the image sample's and the training seed's variation.

No SciPy: the binomial tails are summed exactly in log space (n is at most the test split).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054


def _log_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed exactly."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return min(1.0, sum(math.exp(_log_pmf(i, n, p)) for i in range(k + 1)))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs (1.0 when none)."""
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * binom_cdf(min(b, c), n, 0.5))


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """Exact (Clopper-Pearson) 95% interval of a binomial proportion k / n."""
    if n == 0:
        return (0.0, 1.0)
    lower = 0.0 if k == 0 else _bisect(lambda p: _upper_tail(k, n, p), 0.025, increasing=True)
    upper = 1.0 if k == n else _bisect(lambda p: binom_cdf(k, n, p), 0.025, increasing=False)
    return (lower, upper)


def _upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return 1.0 - binom_cdf(k - 1, n, p)


@dataclass(frozen=True)
class Paired:
    """A - B on the same images: the difference in accuracy, its 95% interval, the p-value of
    the test of no difference, and ``detectable``: the smallest difference this comparison could
    call (this many images, this discordance; over seeds, the bootstrap's 95% half-width)."""
    n: int
    diff: float
    low: float
    high: float
    p_value: float
    detectable: float
    seeds: int = 1
    method: str = "exact McNemar"

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired(a: Sequence[bool], b: Sequence[bool]) -> Paired:
    """Exact McNemar comparison of two per-image outcome vectors of one seed."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired outcomes need two equal-length, non-empty vectors (got {a.shape} and {b.shape})")
    n = len(a)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    m = only_a + only_b
    lo, hi = clopper_pearson(only_a, m)
    scale = m / n
    return Paired(n=n, diff=(only_a - only_b) / n, low=scale * (2 * lo - 1), high=scale * (2 * hi - 1),
                  p_value=mcnemar_exact(only_a, only_b), detectable=detectable(n, m))


def detectable(n: int, m: int) -> float:
    """The smallest |A - B| the exact test calls at 5% on ``n`` images of which ``m`` are
    discordant (all m split as unevenly as needed); NaN when even all m one way is not called."""
    for k in range((m + 1) // 2, m + 1):
        if mcnemar_exact(k, m - k) < 0.05:
            return (2 * k - m) / n
    return math.nan


def _bisect(f, target: float, increasing: bool) -> float:
    """The p in [0, 1] where the monotone ``f`` crosses ``target``."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if (f(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def paired_over_seeds(pairs: Sequence[tuple[Sequence[bool], Sequence[bool]]], draws: int = 4000,
                      seed: int = 0) -> Paired:
    """The mean over seeds of A - B (each seed: both rows on the same images), with a 95% bootstrap
    interval that resamples images (one draw for every seed: they are the same images) and seeds.
    One seed: :func:`paired`."""
    if len(pairs) == 1:
        return paired(*pairs[0])
    a = np.stack([np.asarray(p[0], dtype=bool) for p in pairs])
    b = np.stack([np.asarray(p[1], dtype=bool) for p in pairs])
    if a.shape != b.shape:
        raise ValueError("paired outcomes over seeds need the same images under every seed")
    d = a.astype(np.int8) - b.astype(np.int8)  # seeds x images, in {-1, 0, 1}
    s, n = d.shape
    rng = np.random.default_rng(seed)
    images = rng.integers(0, n, size=(draws, n))
    seeds = rng.integers(0, s, size=(draws, s))
    per_seed = np.stack([d[:, idx].mean(axis=1) for idx in images])  # draws x seeds
    boot = np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    centred = boot - boot.mean()
    half = float(np.quantile(np.abs(centred), 0.95))
    # two-sided bootstrap p-value: how often the centred replicates reach the observed difference
    diff = float(d.mean())
    p = float(min(1.0, (np.abs(centred) >= abs(diff)).mean() + 1.0 / draws)) if diff else 1.0
    return Paired(n=n, diff=diff, low=float(lo), high=float(hi), p_value=p, detectable=max(half, 1.0 / n),
                  seeds=s, method=f"bootstrap over images and {s} seeds")


def verdict(result: Paired, direction: int) -> str:
    """``holds`` when A - B has the paper's sign (``direction`` +1: A above B, -1: below) and its
    interval excludes 0, ``fails`` when the interval excludes 0 on the other side, else
    ``inconclusive``."""
    if direction not in (1, -1):
        raise ValueError(f"a claim's direction is +1 or -1, not {direction!r}")
    if not result.excludes_zero:
        return "inconclusive"
    return "holds" if (result.diff > 0) == (direction > 0) else "fails"


# ---------------------------------------------------------------- trends


def _ranks(v: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (Spearman's convention)."""
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(len(v), dtype=float)
    for value in np.unique(v):
        tied = v == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (0 where either side is constant)."""
    rx, ry = _ranks(np.asarray(x, float)), _ranks(np.asarray(y, float))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx ** 2).sum() * (ry ** 2).sum()))
    return float((rx * ry).sum() / denom) if denom else 0.0


@dataclass(frozen=True)
class Trend:
    """Spearman's rho of a series (the mean over seeds), its two-sided permutation p-value, and
    the smallest |rho| that could reach p < 0.05 with this many points (None: none can)."""
    n: int
    rho: float
    p_value: float
    detectable: float | None
    seeds: int = 1


def _permutations(n: int, rng, draws: int) -> np.ndarray:
    """Every permutation of n points when there are few enough (n <= 7), else ``draws`` random ones."""
    if n <= 7:
        import itertools

        return np.array(list(itertools.permutations(range(n))))
    return np.stack([rng.permutation(n) for _ in range(draws)])


def trend(series: Sequence[tuple[Sequence[float], Sequence[float]]], draws: int = 20000, seed: int = 0) -> Trend:
    """The mean over seeds of Spearman's rho of (x, y), with the permutation test of no relation:
    each seed's y shuffled independently (every permutation when one seed has at most 7 points,
    else ``draws`` Monte-Carlo shuffles)."""
    if not series or any(len(x) != len(y) for x, y in series):
        raise ValueError("a trend needs one (x, y) series of equal lengths per seed")
    n = len(series[0][0])
    if n < 3 or any(len(x) != n for x, _ in series):
        raise ValueError(f"a trend needs at least 3 points and the same points under every seed (got {n})")
    rng = np.random.default_rng(seed)
    observed = float(np.mean([spearman(x, y) for x, y in series]))
    rx = [_ranks(np.asarray(x, float)) for x, _ in series]
    ry = [_ranks(np.asarray(y, float)) for _, y in series]

    def rho_of(rank_x, rank_y):  # rows of permuted rank_y
        cx = rank_x - rank_x.mean()
        cy = rank_y - rank_y.mean(axis=-1, keepdims=True)
        denom = np.sqrt((cx ** 2).sum() * (cy ** 2).sum(axis=-1))
        return np.where(denom > 0, (cy * cx).sum(axis=-1) / np.where(denom > 0, denom, 1), 0.0)

    if len(series) == 1 and n <= 7:
        null = rho_of(rx[0], ry[0][_permutations(n, rng, draws)])
    else:
        null = np.mean([rho_of(rx[i], ry[i][np.stack([rng.permutation(n) for _ in range(draws)])])
                        for i in range(len(series))], axis=0)
    size = np.abs(null)
    exact = len(series) == 1 and n <= 7
    hits = int((size >= abs(observed) - 1e-12).sum())
    p = hits / len(size) if exact else (hits + 1) / (len(size) + 1)  # Monte Carlo: never exactly 0
    reachable = [r for r in np.unique(np.round(size, 12)) if (size >= r - 1e-12).mean() < 0.05]
    detectable = float(min(reachable)) if reachable else None
    return Trend(n=n, rho=observed, p_value=p, detectable=detectable, seeds=len(series))


def trend_verdict(result: Trend, direction: int) -> str:
    """``holds`` when rho has the paper's sign and p < 0.05, ``fails`` when it has the other sign
    and p < 0.05, else ``inconclusive``."""
    if result.p_value >= 0.05:
        return "inconclusive"
    return "holds" if (result.rho > 0) == (direction > 0) else "fails"
