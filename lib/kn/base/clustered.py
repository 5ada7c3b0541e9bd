"""kn.base.clustered: tests, floors and power over facts in relation clusters (the unit is the fact; relations, merged
where they hold the same prompts, are the clusters: kn.data.clusters).

API
    cluster_column(frame) -> the rows' clusters (the ``cluster`` column, else ``relation``)
    cluster_sign_flip_p(values [n], clusters [n]) -> float   exact two-sided test of "the mean is 0", flipping the sign
        of whole clusters; min_sign_flip_p(K) -> its floor, 2 / 2^K
    design_effect(values [n], clusters [n]) -> (1 + (m - 1) ICC, ICC)
    facts_needed(effect, sd, *, alpha, power, design_effect) -> facts to detect a per-fact mean difference at a level
    min_detectable_effect(sd, n, n_clusters, *, alpha, power, design_effect) -> the smallest detectable difference
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import t as t_dist

from kn.base.stats import power_mean_n


def cluster_column(frame):
    """The clusters of a frame's rows: its ``cluster`` column (relations merged where they share subject-object pairs,
    kn.data.pararel.relation_clusters), else its ``relation`` column (a frame made without chapter 1's table)."""
    return frame["cluster"] if "cluster" in frame else frame["relation"]


def _cluster_sums(values, clusters) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    c = np.asarray(clusters).reshape(-1)
    if v.shape != c.shape:
        raise ValueError(f"values and clusters differ in length: {v.shape} and {c.shape}")
    keep = ~np.isnan(v)
    v, c = v[keep], c[keep]
    labels = list(dict.fromkeys(c.tolist()))
    return np.array([v[c == label].sum() for label in labels], dtype=np.float64)


def min_sign_flip_p(n_clusters: int) -> float:
    """The smallest two-sided p the exact cluster sign-flip test can give with ``n_clusters`` clusters: 2 / 2^K (1 for
    K <= 1). A design whose floor is above the level a claim needs cannot decide that claim, whatever the data."""
    return 1.0 if n_clusters <= 1 else float(2.0 / 2.0 ** n_clusters)


def cluster_sign_flip_p(values, clusters, *, exact_max: int = 20, n_perm: int = 200_000, seed: int = 0) -> float:
    """Two-sided p of "the mean of ``values`` [n] (per-fact differences) is 0", with relations (``clusters`` [n]) as
    the exchangeable units: under the null every cluster's sum of differences is symmetric about 0, so the test flips
    the sign of whole clusters, never of single facts (a fact's probes and a relation's facts are not independent
    outcomes). Statistic |sum over facts|; exact over all 2^K sign patterns for K <= exact_max clusters, else
    n_perm random patterns with the (count + 1) / (n_perm + 1) correction. Its floor is min_sign_flip_p(K): one
    cluster gives 1, so a claim needs at least two. nan values are left out; all zero gives 1."""
    sums = _cluster_sums(values, clusters)
    if sums.size == 0 or np.all(sums == 0):
        return 1.0
    observed = abs(float(sums.sum()))
    tolerance = 1e-9 * max(1.0, float(np.abs(sums).sum()))
    k = sums.size
    if k <= exact_max:
        hits = 0
        chunk = 1 << min(k, 16)
        bits = np.arange(chunk, dtype=np.int64)[:, None] >> np.arange(min(k, 16), dtype=np.int64)[None, :] & 1
        low = (1 - 2 * bits) @ sums[: min(k, 16)]  # every sign pattern of the first (up to) 16 clusters
        high_k = k - min(k, 16)
        for pattern in range(1 << high_k):
            rest = sum(-x if pattern >> j & 1 else x for j, x in enumerate(sums[16:].tolist())) if high_k else 0.0
            hits += int((np.abs(low + rest) >= observed - tolerance).sum())
        return float(hits / 2.0 ** k)
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_perm, 10_000):
        m = min(10_000, n_perm - start)
        totals = rng.choice([-1.0, 1.0], size=(m, k)) @ sums
        hits += int((np.abs(totals) >= observed - tolerance).sum())
    return float((hits + 1) / (n_perm + 1))


def design_effect(values, clusters) -> tuple[float, float]:
    """(design effect, intraclass correlation) of per-fact values in relation clusters: 1 + (m - 1) ICC, m the mean
    cluster size, ICC the one-way ANOVA estimate (clipped to [0, 1]). Where it cannot be estimated (one cluster, or
    one fact per cluster) the ICC is taken as 1, so the effect is m: the cautious choice."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    c = np.asarray(clusters).reshape(-1)
    keep = ~np.isnan(v)
    v, c = v[keep], c[keep]
    groups = [v[c == label] for label in dict.fromkeys(c.tolist())]
    n, k = v.size, len(groups)
    if k == 0:
        return float("nan"), float("nan")
    m_bar = n / k
    if k < 2 or n - k < 1:
        return float(m_bar), 1.0
    sizes = np.array([g.size for g in groups], dtype=np.float64)
    m0 = (n - (sizes ** 2).sum() / n) / (k - 1)
    grand = v.mean()
    msb = float(sum(g.size * (g.mean() - grand) ** 2 for g in groups) / (k - 1))
    msw = float(sum(((g - g.mean()) ** 2).sum() for g in groups) / (n - k))
    denominator = msb + (m0 - 1) * msw
    icc = 1.0 if denominator <= 0 else float(np.clip((msb - msw) / denominator, 0.0, 1.0))
    return float(1 + (m_bar - 1) * icc), icc


def facts_needed(effect: float, sd: float, *, alpha: float, power: float = 0.8, design_effect: float = 1.0) -> float:
    """Facts needed to detect a mean per-fact difference ``effect`` (per-fact SD ``sd``) at ``power``, two-sided at
    ``alpha`` (a claim's Holm level: 0.05 / family size at its first step): the paired t test's n times the design
    effect of relation clusters (a large-sample stand-in for the cluster sign-flip test); inf for no effect."""
    return power_mean_n(effect, sd, alpha=alpha, power=power) * max(1.0, float(design_effect))


def min_detectable_effect(sd: float, n: int, n_clusters: int, *, alpha: float, power: float = 0.8,
                          design_effect: float = 1.0) -> float:
    """The smallest mean per-fact difference this design detects at ``power`` (two-sided ``alpha``): (t quantiles
    with K - 1 degrees of freedom) x sd x sqrt(design effect / n); inf where the sign-flip test's floor
    (min_sign_flip_p) is above ``alpha``: no difference, however large, could be declared."""
    if n < 2 or n_clusters < 2 or min_sign_flip_p(n_clusters) > alpha or not sd > 0:
        return float("inf")
    df = max(n_clusters - 1, 1)
    factor = t_dist.ppf(1 - alpha / 2, df) + t_dist.ppf(power, df)
    return float(factor * sd * math.sqrt(max(1.0, float(design_effect)) / n))
