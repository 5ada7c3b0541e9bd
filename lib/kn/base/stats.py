"""kn.base.stats: intervals over facts, and the sentences that compare methods with them.

API
    Interval(mean, lo, hi, n, median=nan, n_clusters=0)   a bootstrap interval; str() -> "0.12 [0.05, 0.20]"
        .covers(x) -> bool; .excludes_zero -> bool; .decidable (>= 2 clusters, bounds); .format(fmt) -> str
        never zero-width: equal values give the exact interval within known bounds, else none (nan, "no spread")
    bootstrap_mean(values [n], *, n_boot=1000, seed=0, level=0.95) -> Interval
        percentile bootstrap of the mean over the non-nan values (facts are the resampled unit)
    paired_difference(a [n], b [n], *, n_boot, seed, level) -> Interval
        the mean of a - b over the units where both are defined, resampling units (a paired bootstrap)
    cluster_bootstrap_mean(values [n], clusters [n], *, n_boot, seed, level) -> Interval
        two-stage bootstrap: resample clusters (relations), then units (facts) within each drawn cluster
    cluster_paired_difference(a [n], b [n], clusters [n], *, n_boot, seed, level) -> Interval
    cluster_bootstrap_p(values [n], clusters [n], *, n_boot, seed) -> float   two-sided p of "the mean is 0"
        (kept for reference; the book's tests are the exact sign flips below)
    (the tests over clusters, their floor and power: kn.base.clustered)
    cluster_share(shares [n], clusters [n], *, n_boot, seed, level) -> Interval
        the mean of per-unit shares of yes/no outcomes: the cluster interval, widened to the exact one over the units
    compare(name_a, name_b, interval, *, fmt="{:.2f}", unit="") -> str
        "A exceeds B by 0.31 [0.12, 0.50]" or "A and B are not distinguishable here (difference ...)"
    reaches(name, interval, threshold, *, what, source) -> str      a claim's threshold, quoted from its source
    Rate(k, n, lo, hi, method)        a share of yes/no outcomes with its exact (Clopper-Pearson) or Wilson interval;
        .p; str() -> "22% [7%, 41%] (6/27)"; never a zero-width interval for 0 of n or n of n
    rate(yes [n] bool, *, level=0.95, method="exact") -> Rate;  rate_from_counts(k, n, ...) -> Rate
    McNemar(a_only, b_only, n, p_value)  paired yes/no comparison: the discordant counts and the exact two-sided p
    mcnemar_exact(a_yes [n], b_yes [n]) -> McNemar       (statsmodels' exact McNemar test)
    holm(p_values) -> adjusted p-values                  Holm's step-down correction within one family (statsmodels)
    power_mcnemar_n(p_a_only, p_b_only, *, alpha=0.05, power=0.8) -> n units for a paired yes/no difference
    power_mean_n(difference, sd, *, alpha=0.05, power=0.8) -> n units for a paired mean difference (t test)

Every verdict in the book goes through ``compare`` or ``reaches``, so "not distinguishable here" is said wherever the
interval covers zero (or the threshold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta as beta_dist
from scipy.stats import binomtest, norm
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower


@dataclass(frozen=True)
class Interval:
    """A mean over n units with its percentile-bootstrap interval [lo, hi] (and the median of the units)."""

    mean: float
    lo: float
    hi: float
    n: int
    median: float = float("nan")
    n_clusters: int = 0  # clusters (relations, merged where they share facts) behind it; 0: not clustered

    def covers(self, x: float) -> bool:
        """Whether x is inside [lo, hi]; an interval without bounds (no spread, unbounded data) covers everything."""
        if math.isnan(self.lo) or math.isnan(self.hi):
            return True
        return bool(self.lo <= x <= self.hi)

    @property
    def excludes_zero(self) -> bool:
        return not math.isnan(self.lo) and not self.covers(0.0)

    @property
    def decidable(self) -> bool:
        """At least two clusters (or, unclustered, two units) and bounds: a claim needs this to be decided at all."""
        return (self.n_clusters if self.n_clusters else self.n) >= 2 and not math.isnan(self.lo)

    def format(self, fmt: str = "{:.2f}") -> str:
        if math.isnan(self.mean):
            return "–"
        if math.isnan(self.lo) or math.isnan(self.hi):
            return f"{fmt.format(self.mean)} (no spread over {self.n}: no interval)"
        return f"{fmt.format(self.mean)} [{fmt.format(self.lo)}, {fmt.format(self.hi)}]"

    def __str__(self) -> str:
        return self.format()

    def as_dict(self) -> dict:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "n": self.n, "median": self.median,
                "n_clusters": self.n_clusters}

    @classmethod
    def from_dict(cls, d: dict) -> "Interval":
        return cls(float(d["mean"]), float(d["lo"]), float(d["hi"]), int(d["n"]), float(d.get("median", "nan")),
                   int(d.get("n_clusters", 0)))


def _exact_bounds(total: float, n: int, level: float) -> tuple[float, float]:
    """Clopper-Pearson bounds of a mean of n values in [0, 1] that sum to ``total`` (beta quantiles take a
    fractional count): conservative for any [0, 1]-bounded mean, never zero-width."""
    alpha = (1.0 - level) / 2.0
    lo = 0.0 if total <= 0 else float(beta_dist.ppf(alpha, total, n - total + 1))
    hi = 1.0 if total >= n else float(beta_dist.ppf(1.0 - alpha, total + 1, n - total))
    return lo, hi


def _no_spread(c: float, n: int, median: float, bounds, level: float, n_clusters: int = 0) -> Interval:
    """The interval of n equal values c: resampling them gives [c, c], which claims a certainty the data do not
    hold. With known ``bounds`` (a, b) of the quantity the exact (Clopper-Pearson) interval of the mean, mapped to
    [a, b]; without, no bounds at all (nan: the interval then covers every value and decides nothing)."""
    if bounds is None:
        return Interval(c, float("nan"), float("nan"), n, median, n_clusters)
    a, b = (float(x) for x in bounds)
    lo, hi = _exact_bounds((c - a) / (b - a) * n, n, level)
    return Interval(c, a + lo * (b - a), a + hi * (b - a), n, median, n_clusters)


def _resampled_means(v: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, 4_000_000 // max(v.size, 1))
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        means[start:start + k] = v[rng.integers(0, v.size, size=(k, v.size))].mean(axis=1)
    return means


def bootstrap_mean(values, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95, bounds=None) -> Interval:
    """Mean of the non-nan ``values`` [n] with its percentile-bootstrap ``level`` interval; all-nan or empty input
    gives nan; a constant array (or n = 1) never gives a zero-width interval: the exact interval within ``bounds``
    (a, b) of the quantity where given (shares: (0, 1), differences of shares: (-1, 1)), else no bounds."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[~np.isnan(v)]
    if v.size == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, 0, nan)
    median = float(np.median(v))
    if np.all(v == v[0]):
        return _no_spread(float(v[0]), int(v.size), median, bounds, level)
    means = _resampled_means(v, n_boot, seed)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(means, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return Interval(float(v.mean()), float(lo), float(hi), int(v.size), median)


def paired_difference(a, b, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95, bounds=None) -> Interval:
    """Mean of a - b [n] over the units (facts) where both are defined, with a bootstrap that resamples units, so
    that what a unit shares between the two methods cancels. a and b must be aligned unit by unit."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.shape} and {b.shape}")
    return bootstrap_mean(a - b, n_boot=n_boot, seed=seed, level=level, bounds=bounds)


def cluster_bootstrap_mean(values, clusters, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                           bounds=None) -> Interval:
    """Mean of the non-nan ``values`` with a two-stage percentile bootstrap: draw as many clusters as there are, with
    replacement, then within each drawn cluster as many of its units as it has, with replacement. Facts of one
    relation share templates and answer types, so relations are the clusters; with one unit per cluster this is the
    plain bootstrap. The estimate is the plain mean over units; the Interval records its number of clusters. Equal
    values never give a zero-width interval (see bootstrap_mean's ``bounds``)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    c = np.asarray(clusters).reshape(-1)
    if v.shape != c.shape:
        raise ValueError(f"values and clusters differ in length: {v.shape} and {c.shape}")
    keep = ~np.isnan(v)
    v, c = v[keep], c[keep]
    if v.size == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, 0, nan)
    median = float(np.median(v))
    k = len(set(c.tolist()))
    if np.all(v == v[0]):
        return _no_spread(float(v[0]), int(v.size), median, bounds, level, k)
    means = _cluster_means(v, c, n_boot, seed)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(means, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return Interval(float(v.mean()), float(lo), float(hi), int(v.size), median, k)


def _cluster_means(v: np.ndarray, c: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of n_boot two-stage resamples: clusters with replacement, then units within each drawn cluster."""
    groups = [v[c == label] for label in dict.fromkeys(c.tolist())]
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    for b in range(n_boot):
        drawn = rng.integers(0, len(groups), size=len(groups))
        total = count = 0.0
        for g in drawn:
            units = groups[g]
            total += units[rng.integers(0, units.size, size=units.size)].sum()
            count += units.size
        means[b] = total / count
    return means


def cluster_bootstrap_p(values, clusters, *, n_boot: int = 1000, seed: int = 0) -> float:
    """Two-sided bootstrap p-value of "the mean is 0": twice the smaller share of two-stage resampled means on either
    side of 0, with the (count + 1) / (n_boot + 1) correction, so it is never 0; 1 for a constant 0."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    c = np.asarray(clusters).reshape(-1)
    keep = ~np.isnan(v)
    v, c = v[keep], c[keep]
    if v.size == 0 or np.all(v == 0):
        return 1.0
    if np.all(v == v[0]):
        return 1.0 / (n_boot + 1)
    means = _cluster_means(v, c, n_boot, seed)
    below, above = int((means <= 0).sum()), int((means >= 0).sum())
    return float(min(1.0, 2 * (min(below, above) + 1) / (n_boot + 1)))


def cluster_paired_difference(a, b, clusters, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                              bounds=None) -> Interval:
    """The paired difference a - b over units, resampled by cluster then unit (see cluster_bootstrap_mean)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.shape} and {b.shape}")
    return cluster_bootstrap_mean(a - b, clusters, n_boot=n_boot, seed=seed, level=level, bounds=bounds)


def cluster_share(shares, clusters, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Interval:
    """The mean over units (facts) of each unit's share of yes outcomes ``shares`` [n] in [0, 1], with the cluster
    bootstrap's interval (cluster_bootstrap_mean) widened to cover the exact (Clopper-Pearson) interval of
    sum(shares) yes of n units. Resampling shares that are all 0 (or all 1) gives a zero-width interval, though 0 of
    27 facts leaves an upper bound of 12.8%; counting each unit once (not each of its probes) keeps the exact part
    honest when a unit's probes agree. Beta quantiles take the fractional count sum(shares)."""
    boot = cluster_bootstrap_mean(shares, clusters, n_boot=n_boot, seed=seed, level=level, bounds=(0.0, 1.0))
    if boot.n == 0:
        return boot
    if not 0.0 <= boot.lo <= boot.hi <= 1.0:
        raise ValueError(f"cluster_share: shares must lie in [0, 1], got a mean interval {boot}")
    lo, hi = _exact_bounds(boot.mean * boot.n, boot.n, level)
    return Interval(boot.mean, min(boot.lo, lo), max(boot.hi, hi), boot.n, boot.median, boot.n_clusters)


@dataclass(frozen=True)
class Rate:
    """k yes outcomes of n with a binomial interval [lo, hi] (exact Clopper-Pearson or Wilson)."""

    k: int
    n: int
    lo: float
    hi: float
    method: str = "exact"

    @property
    def p(self) -> float:
        return self.k / self.n if self.n else float("nan")

    def format(self, fmt: str = "{:.0%}") -> str:
        if not self.n:
            return "–"
        return f"{fmt.format(self.p)} [{fmt.format(self.lo)}, {fmt.format(self.hi)}] ({self.k}/{self.n})"

    def __str__(self) -> str:
        return self.format()

    def as_dict(self) -> dict:
        return {"k": self.k, "n": self.n, "lo": self.lo, "hi": self.hi, "method": self.method}

    @classmethod
    def from_dict(cls, d: dict) -> "Rate":
        return cls(int(d["k"]), int(d["n"]), float(d["lo"]), float(d["hi"]), str(d.get("method", "exact")))


def rate_from_counts(k: int, n: int, *, level: float = 0.95, method: str = "exact") -> Rate:
    """k of n with scipy's binomial interval: "exact" (Clopper-Pearson) or "wilson"."""
    if method not in ("exact", "wilson"):
        raise ValueError(f"method must be exact or wilson, got {method!r}")
    if n == 0:
        return Rate(0, 0, float("nan"), float("nan"), method)
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method=method)
    return Rate(int(k), int(n), float(ci.low), float(ci.high), method)


def rate(yes, *, level: float = 0.95, method: str = "exact") -> Rate:
    """The share of True among the defined (non-nan) outcomes ``yes`` [n]."""
    v = np.asarray(yes, dtype=np.float64).reshape(-1)
    v = v[~np.isnan(v)]
    return rate_from_counts(int(v.sum()), int(v.size), level=level, method=method)


@dataclass(frozen=True)
class McNemar:
    """A paired yes/no comparison: units where only A said yes, only B, the units compared, and the exact p."""

    a_only: int
    b_only: int
    n: int
    p_value: float

    def format(self) -> str:
        return f"{self.a_only} vs {self.b_only} discordant of {self.n}, exact p = {self.p_value:.3g}"

    def as_dict(self) -> dict:
        return {"a_only": self.a_only, "b_only": self.b_only, "n": self.n, "p_value": self.p_value}

    @classmethod
    def from_dict(cls, d: dict) -> "McNemar":
        return cls(int(d["a_only"]), int(d["b_only"]), int(d["n"]), float(d["p_value"]))


def mcnemar_exact(a_yes, b_yes) -> McNemar:
    """McNemar's exact test of paired outcomes a_yes, b_yes [n] (units where either is nan are left out)."""
    a = np.asarray(a_yes, dtype=np.float64).reshape(-1)
    b = np.asarray(b_yes, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes differ in length: {a.shape} and {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep] > 0.5, b[keep] > 0.5
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    if a_only + b_only == 0:
        return McNemar(0, 0, int(a.size), 1.0)
    table = [[int((a & b).sum()), a_only], [b_only, int((~a & ~b).sum())]]
    return McNemar(a_only, b_only, int(a.size), float(mcnemar(table, exact=True).pvalue))


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values of one family (nan entries stay nan and do not count)."""
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def power_mcnemar_n(p_a_only: float, p_b_only: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Units needed for McNemar's test to detect discordance rates p_a_only vs p_b_only at ``power`` (two-sided,
    the normal approximation of Connor, 1987); inf when the rates are equal."""
    d = p_a_only - p_b_only
    s = p_a_only + p_b_only
    if d == 0 or s == 0:
        return float("inf")
    za, zb = norm.ppf(1 - alpha / 2), norm.ppf(power)
    return float((za * math.sqrt(s) + zb * math.sqrt(max(s - d * d, 0.0))) ** 2 / (d * d))


def power_mean_n(difference: float, sd: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Units needed for a paired t test to detect a mean ``difference`` given the per-unit ``sd`` of differences."""
    if sd <= 0 or difference == 0 or math.isnan(sd) or math.isnan(difference):
        return float("inf")
    return float(TTestPower().solve_power(effect_size=abs(difference) / sd, alpha=alpha, power=power,
                                          alternative="two-sided"))


def compare(name_a: str, name_b: str, interval: Interval, *, fmt: str = "{:.2f}", unit: str = "") -> str:
    """One sentence on the paired difference A - B: which is larger, by how much, or that the data cannot tell."""
    text = interval.format(fmt) + unit
    if math.isnan(interval.mean):
        return f"{name_a} and {name_b} cannot be compared here (no unit has both)."
    if not interval.excludes_zero:
        return f"{name_a} and {name_b} are not distinguishable here (difference {text}, n = {interval.n})."
    if interval.mean > 0:
        return f"{name_a} exceeds {name_b} by {text} (n = {interval.n})."
    flipped = Interval(-interval.mean, -interval.hi, -interval.lo, interval.n, -interval.median)
    return f"{name_a} falls below {name_b} by {flipped.format(fmt)}{unit} (n = {interval.n})."


def reaches(name: str, interval: Interval, threshold: float, *, what: str, source: str,
            fmt: str = "{:.1%}") -> str:
    """One sentence on whether ``interval`` reaches a claimed level ``threshold`` (quoted with its ``source``)."""
    text = interval.format(fmt)
    claim = f"{source}'s {fmt.format(threshold)}"
    if math.isnan(interval.mean):
        return f"{name}: no {what} to set against {claim}."
    if interval.lo > threshold:
        return f"{name}: {what} {text} lies above {claim}."
    if interval.hi < threshold:
        return f"{name}: {what} {text} falls short of {claim}."
    return f"{name}: {what} {text} is not distinguishable here from {claim}."
