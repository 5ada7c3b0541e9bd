"""kn.book.findings.consistency: chapter 4's consistent / inconsistent facts, split so that the class is read on half A
of each relation's templates and every overlap on half B (kn.experiments.consistency_split.ConsistencySplit). The rule
is our reading of Chen et al. (ICLR 2025), not checked against their text; they combine three localisation methods and
we read one, so no share here is comparable with theirs.

API
    SCORE_NAMES                              score key -> words ("intersection over union", "mean pairwise Jaccard")
    consistency_shares_table(split) -> DataFrame [score x threshold]: threshold, test facts, classed inconsistent,
        share inconsistent (Interval)                    Otsu's (fitted on the train facts) beside the fixed sweep
    consistency_class_table(split) -> DataFrame [method x class]: test facts, within fact, fact-specific, gain over the
        coarse sets (Intervals; half B)
    consistency_contrast_table(split) -> DataFrame [method x reference]: inconsistent minus consistent (Interval),
        p (labels permuted within clusters), clusters, reading
    consistency_sanity_line(split) -> str    Welch's test between the classes' half-B coarse agreement: a sanity line
    consistency_claims(split, methods=("land",)) -> [Claim]   one per (method, reference): "gains more / less where
        paraphrases disagree" only where the interval excludes 0 and the test agrees, else "not distinguishable here"
    consistency_captions(split) -> {"shares", "by_class", "contrasts": str}   the tables' captions, from the data
"""

from __future__ import annotations

import math

import pandas as pd

from kn.book.summaries import Claim
from kn.experiments.consistency_split import NULL_METHODS, OWN_OVERLAP

SCORE_NAMES = {"intersection_over_union": "intersection over union", "mean_pairwise_jaccard": "mean pairwise Jaccard"}
_RULE_NAMES = {"otsu": "Otsu (train facts)", "fixed": "fixed"}
_CLASS_NAMES = {"consistent": "consistent", "inconsistent": "inconsistent (paraphrases disagree)"}
_RULE_OF_READING = "our reading of Chen et al."
_BLIND = {"constant": "which ignores its input", "relation_prior": "which reads only the prompt's relation"}


def _reference_name(split, reference: str) -> str:
    return "nothing (its own overlap)" if reference == OWN_OVERLAP else split.name(reference)


def _reading(holds) -> str:
    return {True: "gains more where paraphrases disagree", False: "gains less where paraphrases disagree"}.get(
        holds, "not distinguishable here")


def consistency_shares_table(split) -> pd.DataFrame:
    """The share of test facts classed inconsistent on half A, per score (the main one marked) and threshold: Otsu's,
    fitted on the train facts' half-A scores, then the fixed sweep."""
    rows = {}
    for r in split.shares.itertuples():
        score = SCORE_NAMES.get(r.score, r.score) + (" (main)" if r.score == split.score else "")
        rows[(score, _RULE_NAMES.get(r.rule, r.rule) + ("" if r.rule == "otsu" else f" {r.threshold:g}"))] = {
            "threshold": r.threshold, "test facts": r.n_facts, "classed inconsistent": r.n_inconsistent,
            "share inconsistent": r.share}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["score (half A)", "threshold rule"])
    return frame


def consistency_class_table(split) -> pd.DataFrame:
    """Per method and class at the main score and threshold, on half B: the mean within-fact and fact-specific overlap
    and the gain over the coarse sets (paired over facts). The nulls' rows show what the class alone does to a gain
    over the coarse sets."""
    rows = {}
    for r in split.by_class.to_dict("records"):
        rows[(split.name(r["method"]), _CLASS_NAMES[r["consistency"]])] = {
            "test facts": r["n_facts"], "within": r["within"], split.column: r[split.column],
            "gain over the coarse sets": r["gain"]}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["method", "class"])
    return frame


def consistency_contrast_table(split) -> pd.DataFrame:
    """Per method and reference: inconsistent minus consistent facts of (the method's overlap minus the reference's),
    the difference-in-differences, with its p and what it reads."""
    rows = {}
    for r in split.contrasts.itertuples():
        rows[(split.name(r.method), _reference_name(split, r.reference))] = {
            "inconsistent minus consistent": r.contrast, "p (permutation)": r.p_value, "clusters": r.n_clusters,
            "reading": _reading(r.holds)}
    frame = pd.DataFrame.from_dict(rows, orient="index",
                                   columns=["inconsistent minus consistent", "p (permutation)", "clusters", "reading"])
    if len(frame):
        frame.index = pd.MultiIndex.from_tuples(frame.index, names=["method", "minus"])
    return frame


def consistency_sanity_line(split) -> str:
    """The Welch line: does the class read on half A predict the coarse sets' agreement on half B? (A sanity check of
    the split, not a result about any detector.)"""
    w = split.welch
    if math.isnan(w["p_value"]):
        return (f"Sanity check (Welch's t test, not a result): too few facts in a class to test (consistent "
                f"{w['n_consistent']}, inconsistent {w['n_inconsistent']}).")
    predicts = w["p_value"] < split.alpha and w["mean_consistent"] > w["mean_inconsistent"]
    return (f"Sanity check (Welch's t test, not a result): on half B, the coarse sets' within-fact Jaccard is "
            f"{w['mean_consistent']:.1%} for the {w['n_consistent']} consistent and {w['mean_inconsistent']:.1%} for "
            f"the {w['n_inconsistent']} inconsistent test facts (t = {w['statistic']:.2f}, df = {w['df']:.1f}, "
            f"p = {w['p_value']:.3g}): the class read on half A "
            + ("predicts the agreement of the other half." if predicts else
               "does not predict the agreement of the other half here, so the classes may be chance."))


def consistency_claims(split, methods=("land",)) -> list[Claim]:
    """One Claim per (method of ``methods``, reference): its sentence is the study's verdict; holds True where the
    method gains more where paraphrases disagree (interval above 0 from two clusters or more, and p < alpha), False
    where less, None where not distinguishable here."""
    claims = []
    for r in split.contrasts.itertuples():
        if r.method not in methods:
            continue
        against = ("" if r.reference == OWN_OVERLAP else
                   f" against the {_reference_name(split, r.reference).lower()}")
        claims.append(Claim(f"{split.name(r.method)} on inconsistent against consistent facts{against} "
                            f"({_RULE_OF_READING})", r.verdict, r.contrast, r.holds, p_value=float(r.p_value)))
    return claims


def consistency_captions(split) -> dict:
    """Captions of the three tables, from what the split holds."""
    scores = split.scores
    n_test, n_train = int((scores["split"] == "test").sum()), int((scores["split"] == "train").sum())
    n_relations = split.halves["relation"].nunique()
    main = SCORE_NAMES.get(split.score, split.score)
    rule = "Otsu's threshold fitted on the train facts" if split.threshold_rule == "otsu" else "a fixed threshold"
    shares = (f"Test facts classed inconsistent ({n_test} with a half-A score), per score and threshold: each of the "
              f"{n_relations} relations' templates is cut into two seeded halves; a fact is scored on half A's coarse "
              f"sets only. Otsu's threshold is fitted on the {n_train} train facts' half-A scores. Intervals resample "
              f"relation clusters then facts, widened to the exact interval. This is {_RULE_OF_READING} (not checked "
              f"against their text); they combine three localisation methods, so no share here is comparable with "
              f"theirs.")
    by_class = f"Per class ({main}, {rule}: {split.threshold:.3g}), every overlap measured on half B's prompts only."
    gains = split.by_class.set_index(["method", "consistency"])["gain"]
    for null in [m for m in NULL_METHODS if (m, "consistent") in gains.index]:
        agree, disagree = gains[(null, "consistent")], gains[(null, "inconsistent")]
        if math.isnan(agree.mean) or math.isnan(disagree.mean):
            continue
        by_class += (f" The {split.name(null).lower()}, {_BLIND.get(null, 'a null')}, gains "
                     f"{disagree.format('{:.1%}')} over the coarse sets where paraphrases disagree and "
                     f"{agree.format('{:.1%}')} where they agree"
                     + (": the class alone moves a gain over the coarse sets, which is why the contrast below is "
                        "taken against the nulls." if disagree.lo > agree.hi or disagree.hi < agree.lo else "."))
        break
    contrasts = (f"The class contrast that is not circular: inconsistent minus consistent test facts of (the "
                 f"method's {split.column.replace('_', '-')} overlap minus the reference's), on half B; the coarse "
                 f"term cancels. Intervals resample relation clusters then facts; p permutes the classes within each "
                 f"cluster. A row reads \"gains more where paraphrases disagree\" only where the interval excludes 0 "
                 f"from two clusters or more and p < {split.alpha:g}.")
    return {"shares": shares, "by_class": by_class, "contrasts": contrasts}
