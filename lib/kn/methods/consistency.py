"""kn.methods.consistency: consistent and inconsistent facts (Chen et al., ICLR 2025, arXiv 2405.14117), from coarse sets.

Chen et al. test the premise LAND rests on: that one fact is held by one set of neurons, whatever the query's
wording. They call a fact consistent knowledge (K_C) when the knowledge neurons of its paraphrased queries agree and
inconsistent knowledge (K_I) when they do not, and report K_I to be common. Here a fact's queries are its prompts (the
templates of its relation) and each query's neurons its coarse set. LAND's gain over the coarse sets can then be read
on each class apart: a detector that maps a wording to its fact's neurons should gain most where the wordings
disagree.

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

prompts: one row per prompt with columns prompt_id, fact_id; sets: {prompt_id: frozenset of flat neuron ids}.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from kn.base.overlap import pair_jaccards
from kn.base.stats import cluster_paired_difference, paired_difference

CONSISTENCY_SCORES = {
    "intersection_over_union": "neurons in every prompt's set over neurons in any prompt's set",
    "mean_pairwise_jaccard": "mean Jaccard of two prompts' sets (the paper's R_so, per fact)",
}
CLASSES = ("consistent", "inconsistent")


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
