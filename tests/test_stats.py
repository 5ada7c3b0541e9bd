"""kn.stats: bootstrap intervals over facts, the paired difference, and the verdict sentences."""

import numpy as np
import pytest

from kn.stats import Interval, bootstrap_mean, compare, paired_difference, reaches


def test_bootstrap_mean():
    assert bootstrap_mean(np.full(50, 0.1)) == Interval(0.1, 0.1, 0.1, 50, 0.1)
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
    from kn.findings import _relative_change

    before = np.full(5, 10.0)
    after = np.array([20.0, 20.0, 20.0, 20.0, 1e25])  # four doublings and one edit that destroys the model
    change = _relative_change(after / before - 1, n_boot=200, seed=0)
    assert change.median == pytest.approx(1.0)  # the typical fact: +100%
    assert change.mean == pytest.approx(np.exp(np.mean(np.log(after / before))) - 1)
    assert change.mean < 1e6 < np.mean(after / before - 1)  # the arithmetic mean would report the blow-up
    assert _relative_change(before / before - 1, n_boot=200, seed=0).format("{:+.0%}") == "+0% [+0%, +0%]"
