"""Paired statistics and verdicts of the claims: exact McNemar within a seed, a bootstrap over
images and seeds in a study."""

import math

import numpy as np
import pytest

from pipeline.papers.stats import (binom_cdf, clopper_pearson, detectable, mcnemar_exact, paired,
                                   paired_over_seeds, verdict)


def _pair(both: int, only_a: int, only_b: int, neither: int):
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return np.array(a), np.array(b)


def test_exact_mcnemar_is_the_two_sided_binomial_test_of_the_discordant_pairs():
    # 10 against 2 discordant: 2 * P(X <= 2), X ~ Binomial(12, 1/2) = 2 * 79 / 4096
    assert mcnemar_exact(10, 2) == pytest.approx(2 * 79 / 4096, rel=1e-12)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0
    assert binom_cdf(3, 10, 0.3) == pytest.approx(0.6496107184, rel=1e-9)


def test_clopper_pearson_matches_its_tabulated_values():
    assert clopper_pearson(10, 12) == pytest.approx((0.515862, 0.979137), abs=1e-6)
    assert clopper_pearson(0, 20) == pytest.approx((0.0, 0.168433), abs=1e-6)


def test_a_constructed_pair_the_claim_holds_in_its_direction_and_fails_in_the_other():
    a, b = _pair(both=40, only_a=10, only_b=2, neither=48)
    r = paired(a, b)
    assert r.n == 100 and r.diff == pytest.approx(0.08)
    assert r.p_value == pytest.approx(mcnemar_exact(10, 2)) and r.p_value < 0.05
    assert 0 < r.low < 0.08 < r.high
    assert verdict(r, +1) == "holds" and verdict(r, -1) == "fails"


def test_two_identical_models_are_inconclusive_and_the_interval_and_test_agree():
    a, _ = _pair(both=60, only_a=0, only_b=0, neither=40)
    r = paired(a, a.copy())
    assert r.diff == 0 and r.p_value == 1.0 and verdict(r, +1) == verdict(r, -1) == "inconclusive"
    for only_a, only_b in [(9, 2), (10, 2), (6, 0), (5, 0), (30, 18)]:  # interval excludes 0 iff p < 0.05
        res = paired(*_pair(20, only_a, only_b, 30))
        assert res.excludes_zero == (res.p_value < 0.05), (only_a, only_b, res)


def test_the_smallest_detectable_difference_needs_enough_discordant_images():
    assert detectable(100, 12) == pytest.approx(0.08)  # 10 against 2 is the first split called
    assert math.isnan(detectable(100, 5))  # 5 against 0: p = 0.0625
    assert detectable(1000, 12) == pytest.approx(0.008)


def test_over_seeds_the_interval_widens_with_seed_variation_and_one_seed_is_mcnemar():
    a, b = _pair(40, 10, 2, 48)
    assert paired_over_seeds([(a, b)]) == paired(a, b)
    steady = paired_over_seeds([(a, b)] * 3)
    assert steady.seeds == 3 and steady.diff == pytest.approx(0.08) and verdict(steady, +1) == "holds"
    a2, b2 = _pair(40, 2, 10, 48)  # one seed the other way round
    mixed = paired_over_seeds([(a, b), (a, b), (a2, b2)])
    assert mixed.diff == pytest.approx((0.08 + 0.08 - 0.08) / 3)
    assert mixed.high - mixed.low > steady.high - steady.low and verdict(mixed, +1) == "inconclusive"


def test_bad_outcomes_and_directions_are_errors():
    with pytest.raises(ValueError, match="equal-length"):
        paired([True, False], [True])
    with pytest.raises(ValueError, match="direction"):
        verdict(paired([True], [False]), 0)


def test_a_trend_is_judged_by_spearmans_rho_and_its_exact_permutation_test():
    from pipeline.papers.stats import spearman, trend, trend_verdict

    rising = trend([([0, 1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4, 0.5])])
    assert rising.rho == 1.0 and rising.p_value == pytest.approx(2 / 120)  # 2 of 5! orderings reach |rho| = 1
    assert trend_verdict(rising, 1) == "holds" and trend_verdict(rising, -1) == "fails"
    # AFA's fusion weight on the default: falling by 1e-4 per step is still a perfect (and significant) ordering
    w1 = trend([([0, 0.025, 0.05, 0.075, 0.1], [0.4411, 0.4409, 0.4408, 0.4407, 0.4406])])
    assert w1.rho == -1.0 and trend_verdict(w1, 1) == "fails"
    three = trend([([0.0, 0.5, 1.0], [0.3, 0.2, 0.1])])  # 2 of 3! orderings reach |rho| = 1: p = 1/3
    assert three.p_value == pytest.approx(1 / 3) and three.detectable is None and trend_verdict(three, -1) == "inconclusive"
    assert spearman([1, 2, 3], [5, 5, 5]) == 0.0 and spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)
    over = trend([([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])] * 3)
    assert over.seeds == 3 and over.p_value < 0.01 and over.p_value > 0  # Monte Carlo: never exactly 0
    with pytest.raises(ValueError, match="at least 3 points"):
        trend([([0, 1], [1, 2])])
