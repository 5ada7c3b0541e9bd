"""kn.methods.consistency: consistent and inconsistent facts (Chen et al., ICLR 2025, arXiv 2405.14117), from coarse sets.

Chen et al. test the premise LAND rests on: that one fact is held by one set of neurons, whatever the query's
wording. They call a fact consistent knowledge (K_C) when the knowledge neurons of its paraphrased queries agree and
inconsistent knowledge (K_I) when they do not, and report K_I to be common. Here a fact's queries are its prompts (the
templates of its relation) and each query's neurons its coarse set. A detector that maps a wording to its fact's
neurons should help most where the wordings disagree; reading that off the sets the classes came from is circular
(see class_gain), so the chapter classes facts on one half of their templates and measures on the other, against
input-blind nulls (template_halves ... class_contrast below; kn.experiments.consistency_split).

API
    CONSISTENCY_SCORES       score name -> what it measures ("intersection_over_union", "mean_pairwise_jaccard")
    consistency_scores(prompts, sets, *, score="intersection_over_union") -> Series [fact] float
        intersection_over_union: |A_1 & ... & A_n| / |A_1 | ... | A_n| over the fact's prompt sets (0 if the union is
        empty); mean_pairwise_jaccard: the mean Jaccard over pairs of them (pairs of two empty sets skipped)
    otsu_threshold(values) -> float      the cut between two sorted values that maximises the between-class variance
        (Otsu 1979), exact on the values (no histogram bins)
    classify_facts(scores, threshold) -> Series [fact] "consistent" (score > threshold) or "inconsistent"
    consistency_classes(prompts, sets, *, reference_facts, score, threshold="otsu") -> (DataFrame [fact] with
        columns score, consistency; the threshold used)   the threshold is fitted on reference_facts only
    class_gain(land_overlap, coarse_overlap, classes, *, n_boot, seed, column="fact_specific") -> DataFrame [class]
        n_facts, share, land, coarse, gain (kn.base.stats.Interval of land - coarse, paired over facts), gain_lo, gain_hi
        circular when the classes come from the sets whose overlap it subtracts (the coarse term is selected low in
        the inconsistent class, so an input-blind detector "gains more" there); no chapter uses it: it is kept so that
        a test shows that defect beside kn.experiments.consistency_split, which removes it
  The split that is not circular (kn.experiments.consistency_split builds on these)
    HALVES                   ("A", "B"): half A classes the facts, half B measures every method's overlap
    template_halves(prompts, *, seed) -> DataFrame [relation x template] with columns relation, template_position,
        half: per relation its template positions in two seeded halves, A of floor(n/2) and B of ceil(n/2)
    prompts_in_half(prompts, halves, half) -> DataFrame   the rows of ``prompts`` whose template lies in ``half``
    inconsistent_shares(scores, thresholds, clusters, *, n_boot, seed) -> DataFrame [threshold label]
        threshold, n_facts, n_inconsistent, share (Interval: cluster bootstrap widened to the exact interval)
    class_contrast(values, classes, clusters, *, n_boot, seed, level=0.95) -> Interval
        mean over inconsistent facts minus mean over consistent facts of per-fact ``values`` [n], resampled by
        cluster then fact; no spread within either class gives the contrast with no interval (nan bounds)
    class_contrast_p(values, classes, clusters, *, n_perm, seed) -> float   two-sided p of "no class difference",
        class labels permuted within each cluster
    welch_between_classes(values, classes) -> dict   Welch's t test of ``values`` between the two classes
        (statistic, p_value, df, mean_* and n_* per class)

This is our reading of Chen et al.'s rule (their text was not checked here), on one localisation method, the coarse
sets; Chen et al. combine three, so no share computed here is comparable with theirs.

prompts: one row per prompt with columns prompt_id, fact_id (template_halves: relation, template_position);
sets: {prompt_id: frozenset of flat neuron ids}; classes: values of CLASSES; clusters: the fact's cluster
(relations merged where they share facts, kn.data.pararel.relation_clusters), the unit every interval resamples.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy.stats import ttest_ind

from kn.base.overlap import pair_jaccards
from kn.base.stats import Interval, cluster_paired_difference, cluster_share, paired_difference

CONSISTENCY_SCORES = {
    "intersection_over_union": "neurons in every prompt's set over neurons in any prompt's set",
    "mean_pairwise_jaccard": "mean Jaccard of two prompts' sets (the paper's R_so, per fact)",
}
CLASSES = ("consistent", "inconsistent")
HALVES = ("A", "B")


def _fact_sets(prompts: pd.DataFrame, sets: Mapping) -> dict:
    missing = {"prompt_id", "fact_id"} - set(prompts.columns)
    if missing:
        raise ValueError(f"consistency: prompts lack column(s) {sorted(missing)}")
    out: dict = {}
    for prompt, fact in sorted(zip(prompts["prompt_id"], prompts["fact_id"]), key=lambda pf: str(pf[0])):
        if prompt in sets:
            out.setdefault(fact, []).append(frozenset(sets[prompt]))
    return out


def consistency_scores(prompts: pd.DataFrame, sets: Mapping, *, score: str = "intersection_over_union") -> pd.Series:
    """The consistency score of each fact with at least two prompt sets, from its prompts' sets. Returns a float
    Series indexed by fact_id (sorted in string order); see the module docstring for the two scores."""
    if score not in CONSISTENCY_SCORES:
        raise ValueError(f"consistency_scores: score={score!r} must be one of {', '.join(CONSISTENCY_SCORES)}")
    values = {}
    for fact, fact_sets in _fact_sets(prompts, sets).items():
        if len(fact_sets) < 2:  # one query cannot disagree with itself
            continue
        if score == "intersection_over_union":
            union = frozenset().union(*fact_sets)
            values[fact] = len(frozenset.intersection(*fact_sets)) / len(union) if union else 0.0
        else:
            pairs = pair_jaccards(fact_sets)
            values[fact] = float(pairs.mean()) if pairs.size else float("nan")
    facts = sorted(values, key=str)
    return pd.Series([values[f] for f in facts], index=pd.Index(facts, name="fact_id"), dtype=np.float64,
                     name="score")


def otsu_threshold(values: Iterable[float]) -> float:
    """Otsu's threshold of ``values`` (nan ignored): over the cuts between two consecutive distinct values, the one
    maximising w0 * w1 * (mean0 - mean1)^2 (w the shares below and above); the midpoint of that cut is returned,
    ties going to the lower cut. A single distinct value is returned as is (nothing lies above it)."""
    v = np.asarray(list(values), dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        raise ValueError("otsu_threshold: no values")
    unique, counts = np.unique(v, return_counts=True)
    if unique.size == 1:
        return float(unique[0])
    n = counts.sum()
    w0 = np.cumsum(counts)[:-1] / n  # share at or below each cut
    s0 = np.cumsum(unique * counts)[:-1]
    mean0 = s0 / (w0 * n)
    mean1 = ((unique * counts).sum() - s0) / ((1 - w0) * n)
    between = w0 * (1 - w0) * (mean0 - mean1) ** 2
    cut = int(np.argmax(between))
    return float((unique[cut] + unique[cut + 1]) / 2)


def classify_facts(scores: pd.Series, threshold: float) -> pd.Series:
    """"consistent" where score > threshold, else "inconsistent" (nan scores are inconsistent: no agreement to
    measure). Same index as ``scores``."""
    return pd.Series(np.where(scores.to_numpy(np.float64) > float(threshold), CLASSES[0], CLASSES[1]),
                     index=scores.index, name="consistency")


def consistency_classes(prompts: pd.DataFrame, sets: Mapping, *, reference_facts: Iterable,
                        score: str = "intersection_over_union", threshold="otsu") -> tuple[pd.DataFrame, float]:
    """Every fact of ``prompts`` scored and classified. threshold: a number, or "otsu" for Otsu's threshold of the
    scores of ``reference_facts`` (pass the train facts: the cut is then fitted without the test facts, though it
    reads only coarse sets, never a detector's outcome). Returns (DataFrame indexed by fact_id with columns score and
    consistency, the threshold used)."""
    scores = consistency_scores(prompts, sets, score=score)
    if isinstance(threshold, str):
        if threshold != "otsu":
            raise ValueError(f"consistency_classes: threshold={threshold!r} must be a number or 'otsu'")
        reference = scores[scores.index.isin(list(reference_facts))]
        if reference.dropna().empty:
            raise ValueError("consistency_classes: no reference fact has a score to fit the threshold on")
        threshold = otsu_threshold(reference)
    threshold = float(threshold)
    return pd.DataFrame({"score": scores, "consistency": classify_facts(scores, threshold)}), threshold


def class_gain(land_overlap: pd.DataFrame, coarse_overlap: pd.DataFrame, classes: pd.Series, *, n_boot: int,
               seed: int, column: str = "fact_specific", clusters: Mapping | None = None) -> pd.DataFrame:
    """LAND's gain over the coarse sets in ``column`` (kn.methods.detectors.overlap_by_fact frames, indexed by fact_id), on
    each consistency class apart. classes: Series fact_id -> "consistent" / "inconsistent" (e.g. the consistency
    column of :func:`consistency_classes`). Only facts in both frames and in ``classes`` count. Returns a DataFrame
    indexed by class (both classes, in CLASSES order) with n_facts, share (of the counted facts), land and coarse
    (means over the class's facts), gain (kn.base.stats.Interval: paired bootstrap over facts, resampled by cluster
    then fact where ``clusters`` {fact_id: cluster} is given), gain_lo, gain_hi."""
    facts = land_overlap.index.intersection(coarse_overlap.index).intersection(classes.index)
    rows = {}
    for name in CLASSES:
        chosen = facts[(classes.loc[facts] == name).to_numpy()]
        a = land_overlap.loc[chosen, column].to_numpy(np.float64)
        b = coarse_overlap.loc[chosen, column].to_numpy(np.float64)
        gain = (paired_difference(a, b, n_boot=n_boot, seed=seed) if clusters is None else
                cluster_paired_difference(a, b, [clusters[f] for f in chosen], n_boot=n_boot, seed=seed))
        rows[name] = {"n_facts": int(len(chosen)), "share": len(chosen) / len(facts) if len(facts) else float("nan"),
                      "land": float(np.nanmean(a)) if np.isfinite(a).any() else float("nan"),
                      "coarse": float(np.nanmean(b)) if np.isfinite(b).any() else float("nan"),
                      "gain": gain, "gain_lo": gain.lo, "gain_hi": gain.hi}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("consistency")


# --------------------------------------------------------------------------- the split that is not circular


def template_halves(prompts: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """Per relation, its template positions (sorted in string order) permuted by a stream of their own, seeded by
    (seed, crc32(relation)) as kn.methods.detectors draws per relation, and cut into half A (the first floor(n/2))
    and half B (the other ceil(n/2)). Every fact of a relation gets the same halves, so a fact's class (read on A) and
    its overlap (read on B) never share a prompt. A relation of one template has no half A: its facts get no score.
    Returns a DataFrame with one row per (relation, template_position) and columns relation, template_position, half
    ("A" / "B"), sorted by relation, half, position; independent of the row order of ``prompts``."""
    missing = {"relation", "template_position"} - set(prompts.columns)
    if missing:
        raise ValueError(f"template_halves: prompts lack column(s) {sorted(missing)}")
    rows = []
    for relation, positions in prompts.groupby("relation", sort=False)["template_position"]:
        positions = sorted(set(positions.tolist()), key=str)
        order = np.random.default_rng([int(seed), zlib.crc32(str(relation).encode())]).permutation(len(positions))
        n_a = len(positions) // 2
        for rank, i in enumerate(order.tolist()):
            rows.append((str(relation), HALVES[0] if rank < n_a else HALVES[1], str(positions[i]), relation,
                         positions[i]))
    rows.sort(key=lambda r: r[:3])
    return pd.DataFrame([{"relation": r[3], "template_position": r[4], "half": r[1]} for r in rows],
                        columns=["relation", "template_position", "half"])


def prompts_in_half(prompts: pd.DataFrame, halves: pd.DataFrame, half: str) -> pd.DataFrame:
    """The rows of ``prompts`` whose (relation, template_position) lies in ``half`` ("A" or "B") of ``halves``
    (:func:`template_halves`); rows of relations absent from ``halves`` are left out."""
    if half not in HALVES:
        raise ValueError(f"prompts_in_half: half={half!r} must be one of {HALVES}")
    chosen = halves[halves["half"] == half]
    keys = set(zip(chosen["relation"], chosen["template_position"]))
    mask = [(r, t) in keys for r, t in zip(prompts["relation"], prompts["template_position"])]
    return prompts[np.asarray(mask, dtype=bool)]


def inconsistent_shares(scores: pd.Series, thresholds: Mapping, clusters: Mapping, *, n_boot: int,
                        seed: int) -> pd.DataFrame:
    """The share of the facts of ``scores`` (Series [fact] float) classed inconsistent (:func:`classify_facts`: score at
    or below the threshold, nan included) at each threshold of ``thresholds`` {label: value}. The interval is
    kn.base.stats.cluster_share over facts in ``clusters`` {fact_id: cluster} (a fact missing from it is a cluster of
    its own): the cluster bootstrap widened to the exact (Clopper-Pearson) interval, so 0 of n or n of n is never a
    zero-width interval. Returns a DataFrame indexed by label (name "threshold_label") with columns threshold,
    n_facts, n_inconsistent, share (Interval), share_lo, share_hi; a higher threshold never gives a lower share."""
    cluster_of = [clusters.get(f, f) for f in scores.index]
    rows = {}
    for label, value in thresholds.items():
        inconsistent = (classify_facts(scores, float(value)) == CLASSES[1]).to_numpy(np.float64)
        share = cluster_share(inconsistent, cluster_of, n_boot=n_boot, seed=seed)
        rows[label] = {"threshold": float(value), "n_facts": int(inconsistent.size),
                       "n_inconsistent": int(inconsistent.sum()), "share": share, "share_lo": share.lo,
                       "share_hi": share.hi}
    frame = pd.DataFrame.from_dict(rows, orient="index",
                                   columns=["threshold", "n_facts", "n_inconsistent", "share", "share_lo", "share_hi"])
    return frame.rename_axis("threshold_label")


def _by_class(values, classes, clusters) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values float [m], is_inconsistent bool [m], clusters [m]) over the units whose value is defined."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    k = np.asarray(classes, dtype=object).reshape(-1)
    c = np.asarray(clusters, dtype=object).reshape(-1)
    if not v.shape == k.shape == c.shape:
        raise ValueError(f"values, classes and clusters differ in length: {v.shape}, {k.shape}, {c.shape}")
    unknown = set(k.tolist()) - set(CLASSES)
    if unknown:
        raise ValueError(f"classes must be {CLASSES}, got {sorted(map(str, unknown))}")
    keep = ~np.isnan(v)
    return v[keep], k[keep] == CLASSES[1], c[keep]


def class_contrast(values, classes, clusters, *, n_boot: int, seed: int, level: float = 0.95) -> Interval:
    """Mean of ``values`` [n] (per fact, nan left out) over the inconsistent facts minus the mean over the consistent
    ones, with a two-stage percentile bootstrap: clusters ``clusters`` [n] drawn with replacement, then facts within
    each drawn cluster (both classes drawn together, as they share the cluster); resamples left with one class only
    are dropped. With values = a method's overlap minus a null's, this is the difference-in-differences between the
    classes. Values with no spread within either class give the same contrast in every resample (exactly 0 where they
    are all equal): returned with no bounds (nan), which covers everything and decides nothing, never a zero-width
    interval. Either class empty: nan.
    The Interval's n counts the facts, n_clusters their clusters."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    v, inconsistent, c = _by_class(values, classes, clusters)
    n_clusters = len(set(c.tolist()))
    nan = float("nan")
    if not inconsistent.any() or inconsistent.all():
        return Interval(nan, nan, nan, int(v.size), nan, n_clusters)
    estimate = float(v[inconsistent].mean() - v[~inconsistent].mean())
    a, b = v[inconsistent], v[~inconsistent]
    if np.all(a == a[0]) and np.all(b == b[0]):  # every resample gives the estimate: no zero-width interval
        return Interval(0.0 if a[0] == b[0] else estimate, nan, nan, int(v.size), nan, n_clusters)
    groups = [(v[c == g], inconsistent[c == g]) for g in dict.fromkeys(c.tolist())]
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(groups), size=(n_boot, len(groups)))
    sums = np.zeros((n_boot, 4))  # per resample: sum and count of the inconsistent facts, then of the consistent
    for g, (gv, gi) in enumerate(groups):
        owner = np.nonzero(drawn == g)[0]  # the resample of each draw of cluster g, once per draw
        if owner.size == 0:
            continue
        pick = rng.integers(0, gv.size, size=(owner.size, gv.size))
        pv, pi = gv[pick], gi[pick]
        np.add.at(sums, owner, np.stack([(pv * pi).sum(1), pi.sum(1), (pv * ~pi).sum(1), (~pi).sum(1)], axis=1))
    ok = (sums[:, 1] > 0) & (sums[:, 3] > 0)
    if not ok.any():
        return Interval(estimate, nan, nan, int(v.size), nan, n_clusters)
    contrasts = sums[ok, 0] / sums[ok, 1] - sums[ok, 2] / sums[ok, 3]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(contrasts, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return Interval(estimate, float(lo), float(hi), int(v.size), nan, n_clusters)


def class_contrast_p(values, classes, clusters, *, n_perm: int, seed: int) -> float:
    """Two-sided p of "the classes do not differ in ``values``": the class labels permuted among the facts of each
    cluster (``clusters`` [n]; a relation's facts share its templates, so labels are exchangeable only within it),
    statistic |mean inconsistent - mean consistent|, n_perm random permutations with the (count + 1) / (n_perm + 1)
    correction. A cluster holding one class contributes nothing to permute, so with no mixed cluster p is 1; equal
    values give 1; either class empty gives nan."""
    v, inconsistent, c = _by_class(values, classes, clusters)
    n_i, n_c = int(inconsistent.sum()), int((~inconsistent).sum())
    if n_i == 0 or n_c == 0:
        return float("nan")
    if np.all(v == v[0]):
        return 1.0
    observed = abs(v[inconsistent].mean() - v[~inconsistent].mean())
    rng = np.random.default_rng(seed)
    summed = np.zeros(n_perm)  # the inconsistent facts' sum under each permutation
    for g in dict.fromkeys(c.tolist()):
        gv, gi = v[c == g], inconsistent[c == g]
        if gi.all() or not gi.any():
            summed += gv[gi].sum()
            continue
        summed += (rng.permuted(np.tile(gi, (n_perm, 1)), axis=1) * gv).sum(1)
    statistic = np.abs(summed / n_i - (v.sum() - summed) / n_c)
    tolerance = 1e-12 * max(1.0, float(np.abs(v).sum()))
    return float((int((statistic >= observed - tolerance).sum()) + 1) / (n_perm + 1))


def welch_between_classes(values, classes) -> dict:
    """Welch's t test (scipy.stats.ttest_ind, equal_var=False) of per-fact ``values`` [n] between the consistent and
    the inconsistent facts (``classes`` [n]; nan values left out): statistic (positive where the consistent facts'
    mean is higher), p_value, df, mean_consistent, mean_inconsistent, n_consistent, n_inconsistent. A class of fewer
    than two facts, or two classes without spread, give nan statistic, p_value and df."""
    v, inconsistent, _ = _by_class(values, classes, np.zeros(np.asarray(values).size))
    a, b = v[~inconsistent], v[inconsistent]
    out = {"statistic": float("nan"), "p_value": float("nan"), "df": float("nan"),
           "mean_consistent": float(a.mean()) if a.size else float("nan"),
           "mean_inconsistent": float(b.mean()) if b.size else float("nan"),
           "n_consistent": int(a.size), "n_inconsistent": int(b.size)}
    if a.size >= 2 and b.size >= 2 and (np.ptp(a) > 0 or np.ptp(b) > 0):  # two constant classes: no variance to test
        test = ttest_ind(a, b, equal_var=False)
        out.update(statistic=float(test.statistic), p_value=float(test.pvalue), df=float(test.df))
    return out
