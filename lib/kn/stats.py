"""kn.stats: intervals over facts, and the sentences that compare methods with them.

API
    Interval(mean, lo, hi, n, median=nan)            a bootstrap interval; str() -> "0.12 [0.05, 0.20]"
        .covers(x) -> bool; .excludes_zero -> bool; .format(fmt) -> str
    bootstrap_mean(values [n], *, n_boot=1000, seed=0, level=0.95) -> Interval
        percentile bootstrap of the mean over the non-nan values (facts are the resampled unit)
    paired_difference(a [n], b [n], *, n_boot, seed, level) -> Interval
        the mean of a - b over the units where both are defined, resampling units (a paired bootstrap)
    compare(name_a, name_b, interval, *, unit="", fmt="{:.2f}", higher="better") -> str
        "A exceeds B by 0.31 [0.12, 0.50]" or "A and B are not distinguishable here (difference ...)"
    reaches(name, interval, threshold, *, what, source) -> str      a claim's threshold, quoted from its source

Every verdict in the book goes through ``compare`` or ``reaches``, so "not distinguishable here" is said wherever the
interval covers zero (or the threshold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Interval", "bootstrap_mean", "paired_difference", "compare", "reaches"]


@dataclass(frozen=True)
class Interval:
    """A mean over n units with its percentile-bootstrap interval [lo, hi] (and the median of the units)."""

    mean: float
    lo: float
    hi: float
    n: int
    median: float = float("nan")

    def covers(self, x: float) -> bool:
        return bool(self.lo <= x <= self.hi)

    @property
    def excludes_zero(self) -> bool:
        return not math.isnan(self.lo) and not self.covers(0.0)

    def format(self, fmt: str = "{:.2f}") -> str:
        if math.isnan(self.mean):
            return "–"
        return f"{fmt.format(self.mean)} [{fmt.format(self.lo)}, {fmt.format(self.hi)}]"

    def __str__(self) -> str:
        return self.format()

    def as_dict(self) -> dict:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "n": self.n, "median": self.median}

    @classmethod
    def from_dict(cls, d: dict) -> "Interval":
        return cls(float(d["mean"]), float(d["lo"]), float(d["hi"]), int(d["n"]), float(d.get("median", "nan")))


def _resampled_means(v: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, 4_000_000 // max(v.size, 1))
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        means[start:start + k] = v[rng.integers(0, v.size, size=(k, v.size))].mean(axis=1)
    return means


def bootstrap_mean(values, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Interval:
    """Mean of the non-nan ``values`` [n] with its percentile-bootstrap ``level`` interval; all-nan or empty input
    gives nan; a constant array gives (c, c, c) exactly."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[~np.isnan(v)]
    if v.size == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, 0, nan)
    median = float(np.median(v))
    if np.all(v == v[0]):
        c = float(v[0])
        return Interval(c, c, c, int(v.size), median)
    means = _resampled_means(v, n_boot, seed)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(means, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return Interval(float(v.mean()), float(lo), float(hi), int(v.size), median)


def paired_difference(a, b, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Interval:
    """Mean of a - b [n] over the units (facts) where both are defined, with a bootstrap that resamples units, so
    that what a unit shares between the two methods cancels. a and b must be aligned unit by unit."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.shape} and {b.shape}")
    return bootstrap_mean(a - b, n_boot=n_boot, seed=seed, level=level)


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
