"""kn.base.stats: bootstrap intervals over facts, the paired difference, and the verdict sentences."""

import numpy as np
import pytest
from kn.base.stats import Interval, bootstrap_mean, compare, paired_difference, reaches


def test_bootstrap_mean():
    constant = bootstrap_mean(np.full(50, 0.1))  # equal values: no interval, never [0.1, 0.1]
    assert constant.mean == 0.1 and np.isnan(constant.lo) and not constant.excludes_zero and constant.covers(5.0)
    assert str(constant) == "0.10 (no spread over 50: no interval)"
    assert bootstrap_mean([0.3, np.nan, 0.3]).n == 2
    empty = bootstrap_mean([np.nan, np.nan])
    assert empty.n == 0 and np.isnan(empty.mean) and str(empty) == "–"
    v = np.random.default_rng(1).normal(2.0, 1.0, 200)
    i = bootstrap_mean(v, n_boot=500, seed=4)
    assert i.mean == pytest.approx(v.mean()) and i.median == pytest.approx(np.median(v))
    assert i.lo < i.mean < i.hi
    assert i.hi - i.lo == pytest.approx(2 * 1.96 / np.sqrt(200), rel=0.3)
    assert bootstrap_mean(v, n_boot=500, seed=4) == i
    assert bootstrap_mean(np.append(v, np.nan), n_boot=500, seed=4) == i
    half = bootstrap_mean(v, n_boot=500, seed=4, level=0.5)
    assert i.lo < half.lo < half.hi < i.hi


def test_paired_difference_cancels_what_units_share():
    rng = np.random.default_rng(0)
    fact_effect = rng.normal(0, 10, 40)  # large differences between facts, shared by both methods
    a = fact_effect + 1.0 + rng.normal(0, 0.1, 40)
    b = fact_effect
    paired = paired_difference(a, b, seed=0)
    assert paired.lo > 0.9 and paired.hi < 1.1  # the fact effect cancels
    unpaired_width = bootstrap_mean(a, seed=0).hi - bootstrap_mean(a, seed=0).lo
    assert paired.hi - paired.lo < unpaired_width / 10
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([1, 2], [1])
    # units where one side is undefined drop out of both
    assert paired_difference([1.0, np.nan, 3.0], [0.0, 5.0, 1.0]).n == 2


def test_sentences_say_not_distinguishable_when_the_interval_covers_zero():
    assert "not distinguishable here" in compare("LAND", "KN-refined", Interval(0.2, -0.1, 0.5, 16))
    assert compare("LAND", "KN-refined", Interval(0.3, 0.1, 0.5, 16)).startswith("LAND exceeds KN-refined by 0.30")
    assert compare("LAND", "Baseline", Interval(-0.3, -0.5, -0.1, 16)) == \
        "LAND falls below Baseline by 0.30 [0.10, 0.50] (n = 16)."
    assert "lies above" in reaches("ours", Interval(0.98, 0.97, 0.99, 9), 0.9658, what="R_Lo", source="LAND")
    assert "falls short" in reaches("ours", Interval(0.5, 0.4, 0.6, 9), 0.9658, what="R_Lo", source="LAND")
    assert "not distinguishable" in reaches("ours", Interval(0.95, 0.9, 0.99, 9), 0.9658, what="R_Lo", source="LAND")
    assert Interval(0.5, 0.25, 0.75, 3).format("{:.0%}") == "50% [25%, 75%]"


def test_relative_change_is_a_geometric_mean_that_one_blow_up_cannot_own():
    from kn.book.findings.editing import _relative_change

    before = np.full(5, 10.0)
    after = np.array([20.0, 20.0, 20.0, 20.0, 1e25])  # four doublings and one edit that destroys the model
    change = _relative_change(after / before - 1, np.arange(5), n_boot=200, seed=0)  # one fact per relation
    assert change.median == pytest.approx(1.0)  # the typical fact: +100%
    assert change.mean == pytest.approx(np.exp(np.mean(np.log(after / before))) - 1)
    assert change.mean < 1e6 < np.mean(after / before - 1)  # the arithmetic mean would report the blow-up
    assert _relative_change(before / before - 1, np.arange(5), n_boot=200, seed=0).format("{:+.0%}") == "+0% (no spread over 5: no interval)"


# --------------------------------------------------------------------------- clusters, rates, paired tests, families
from kn.base.stats import (
    cluster_bootstrap_mean,
    cluster_paired_difference,
    holm,
    mcnemar_exact,
    power_mcnemar_n,
    power_mean_n,
    rate,
    rate_from_counts,
)


def test_the_cluster_interval_is_wider_when_relations_differ():
    rng = np.random.default_rng(1)
    relation = np.repeat(np.arange(9), 3)  # 9 relations x 3 facts, as the default run's test facts
    values = rng.normal(0, 0.1, relation.size) + rng.normal(0, 1.0, 9)[relation]  # a strong relation effect
    facts = bootstrap_mean(values, n_boot=2000, seed=0)
    clustered = cluster_bootstrap_mean(values, relation, n_boot=2000, seed=0)
    assert clustered.mean == pytest.approx(values.mean()) and clustered.n == 27
    assert (clustered.hi - clustered.lo) > 1.4 * (facts.hi - facts.lo)
    # one fact per relation: the two-stage bootstrap is the plain one (same spread within Monte-Carlo error)
    single = cluster_bootstrap_mean(values[::3], relation[::3], n_boot=4000, seed=0)
    plain = bootstrap_mean(values[::3], n_boot=4000, seed=0)
    assert abs((single.hi - single.lo) - (plain.hi - plain.lo)) < 0.15 * (plain.hi - plain.lo)
    paired = cluster_paired_difference(values + 1.0, values, relation, n_boot=200, seed=0)
    assert (paired.mean, paired.lo, paired.hi) == pytest.approx((1.0, 1.0, 1.0))


def test_exact_and_wilson_rates_against_scipy_and_by_hand():
    from scipy.stats import binomtest

    zero = rate_from_counts(0, 27)
    assert zero.lo == 0.0 and zero.hi == pytest.approx(1 - 0.025 ** (1 / 27))  # Clopper-Pearson's 0-of-n bound by hand
    assert zero.hi == pytest.approx(0.1277, abs=1e-4) and zero.hi > 0
    full = rate_from_counts(27, 27)
    assert full.hi == 1.0 and full.lo == pytest.approx(0.025 ** (1 / 27)) and full.lo < 1
    six = rate([True] * 6 + [False] * 21, method="wilson")
    ci = binomtest(6, 27).proportion_ci(method="wilson")
    assert (six.k, six.n, six.lo, six.hi) == (6, 27, pytest.approx(ci.low), pytest.approx(ci.high))
    z, p = 1.959963984540054, 6 / 27  # Wilson's interval by hand
    centre = (p + z * z / 54) / (1 + z * z / 27)
    half = z * np.sqrt(p * (1 - p) / 27 + z * z / (4 * 27 * 27)) / (1 + z * z / 27)
    assert (six.lo, six.hi) == (pytest.approx(centre - half), pytest.approx(centre + half))
    assert str(zero) == "0% [0%, 13%] (0/27)"
    assert rate([1.0, np.nan, 0.0]).n == 2


def test_mcnemar_exact_is_the_sign_test_on_discordant_pairs():
    from statsmodels.stats.contingency_tables import mcnemar

    a = [1, 1, 1, 1, 0, 0, 1, 0]
    b = [0, 0, 0, 0, 0, 0, 1, 0]
    result = mcnemar_exact(a, b)
    assert (result.a_only, result.b_only, result.n) == (4, 0, 8)
    assert result.p_value == pytest.approx(2 * 0.5 ** 4)  # 0.125 by hand: 4 one-sided discordant pairs
    table = [[1, 4], [0, 3]]
    assert result.p_value == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert mcnemar_exact([0, 1], [0, 1]).p_value == 1.0


def test_holm_against_statsmodels_and_by_hand():
    p = [0.01, 0.04, 0.03, np.nan]
    adjusted = holm(p)
    # by hand: sorted 0.01, 0.03, 0.04 times 3, 2, 1, made monotone: 0.03, 0.06, 0.06
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and np.isnan(adjusted[3])


def test_power_needs_more_units_for_smaller_effects():
    from statsmodels.stats.power import TTestPower

    assert power_mean_n(0.05, 0.3) == pytest.approx(TTestPower().solve_power(0.05 / 0.3, alpha=0.05, power=0.8))
    assert power_mean_n(0.05, 0.3) > power_mean_n(0.10, 0.3)
    n = power_mcnemar_n(0.15, 0.10)
    assert 700 < n < 900 and power_mcnemar_n(0.2, 0.05) < n and power_mcnemar_n(0.1, 0.1) == float("inf")


def test_the_cluster_bootstrap_p_value():
    from kn.base.stats import cluster_bootstrap_p

    relation = np.repeat(np.arange(9), 3)
    strong = np.random.default_rng(0).normal(1.0, 0.2, 27)
    assert cluster_bootstrap_p(strong, relation, n_boot=999) == pytest.approx(2 / 1000)  # no resample crosses 0
    noise = np.random.default_rng(0).normal(0.0, 1.0, 27)
    assert cluster_bootstrap_p(noise, relation, n_boot=999) > 0.2
    assert cluster_bootstrap_p(np.zeros(5), np.arange(5)) == 1.0


def test_a_share_of_facts_is_never_a_zero_width_interval():
    """Chapter 6's success table: 0 of 27 facts must print [0%, 12.8%] (exact), not the bootstrap's [0%, 0%]; where
    the shares vary, the interval holds the cluster bootstrap's and the exact one over the facts."""
    from kn.base.stats import cluster_bootstrap_mean, cluster_share, rate_from_counts

    relation = np.repeat(np.arange(9), 3)
    none = cluster_share(np.zeros(27), relation, n_boot=500, seed=0)
    assert none.mean == 0 and none.lo == 0 and none.hi == pytest.approx(rate_from_counts(0, 27).hi)
    assert none.hi == pytest.approx(0.128, abs=5e-4)
    every = cluster_share(np.ones(27), relation, n_boot=500, seed=0)
    assert every.hi == 1 and every.lo == pytest.approx(rate_from_counts(27, 27).lo)
    rng = np.random.default_rng(1)
    shares = rng.integers(0, 2, size=27).astype(float)
    mixed = cluster_share(shares, relation, n_boot=500, seed=0)
    boot = cluster_bootstrap_mean(shares, relation, n_boot=500, seed=0)
    exact = rate_from_counts(int(shares.sum()), 27)
    assert mixed.mean == boot.mean
    assert mixed.lo == pytest.approx(min(boot.lo, exact.lo)) and mixed.hi == pytest.approx(max(boot.hi, exact.hi))
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        cluster_share(np.full(27, 2.0), relation)


def test_chapter_6s_success_table_gives_an_exact_bound_for_none_of_n():
    import pandas as pd
    from kn.book.findings.editing import rate_table
    from kn.experiments.conditions import CONDITIONS

    facts = [f"f{i}" for i in range(27)]
    frame = pd.DataFrame({"fact_id": facts, "relation": [f"P{i // 3}" for i in range(27)], "method": "LAND"}
                         | {f"success_{c}": 0.0 for c in CONDITIONS})
    table = rate_table(frame, "success", n_boot=200, seed=0)
    for c in CONDITIONS:
        assert table.loc["LAND", c].hi == pytest.approx(0.128, abs=5e-4)
