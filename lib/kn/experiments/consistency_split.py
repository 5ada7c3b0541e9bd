"""kn.experiments.consistency_split: chapter 4's consistent / inconsistent facts (our reading of Chen et al., ICLR
2025), split so that the class and the overlap it is read against never come from the same prompts.

Classing a fact on its coarse sets' agreement and then reading a detector's gain over those same coarse sets is
circular: the coarse term is selected low in the inconsistent class, so a detector that ignores its input already
"gains more where paraphrases disagree" (kn.methods.consistency.class_gain, the former design of
kn.experiments.land_robustness.seed_study, kept only so that a test shows the defect). Here each relation's templates are cut into two seeded halves (kn.methods.consistency.template_halves):
facts are scored and classed on half A's coarse sets only, and every method's overlap is measured on half B's prompts
only. Consistency is a property of the fact, so half A's class still predicts half B's coarse agreement (the Welch
line checks it) and the gain over the coarse sets still differs by class for an input-blind detector; the contrast
that is not circular is therefore the difference between classes of (a method's gain minus a null's gain): the
difference-in-differences, in which the coarse term cancels (against the constant set, whose fact-specific overlap is
0, it is the class difference of the method's own overlap). An input-blind detector has the same overlap in both
classes, and so a contrast of 0.

The rule is our reading of Chen et al. (their text was not checked here); they combine three localisation methods and
we read one (the coarse sets), so no share here is comparable with theirs.

API
    FIXED_THRESHOLDS     (0.1, 0.2, 0.3, 0.4, 0.5): the fixed thresholds swept beside Otsu's
    NULL_METHODS         ("constant", "relation_prior"): the input-blind references of the difference-in-differences
    OWN_OVERLAP          "own_overlap": the reference that subtracts nothing (the class difference of the method's
                         own overlap)
    consistency_split_study(prompts, coarse, sets_by_method, fact_cluster, *, score="intersection_over_union",
                            threshold=None, seed, n_boot, fixed_thresholds=FIXED_THRESHOLDS, nulls=NULL_METHODS,
                            column="fact_specific", alpha=0.05) -> ConsistencySplit
        prompts: one row per prompt with columns prompt_id, fact_id, relation, template_position, split (train/test),
            (cluster where chapter 1 made it); coarse: {prompt_id: frozenset} for every prompt (train facts fit Otsu);
        sets_by_method: {method: {prompt_id: frozenset}} on (at least) the test prompts, e.g. LandStudy.sets; the coarse
            method is always measured from ``coarse``; fact_cluster: {fact_id: cluster} (LandStudy.fact_cluster);
        score: the main score (kn.methods.consistency.CONSISTENCY_SCORES); threshold: the main threshold, None for
            Otsu's on the train facts' half-A scores of ``score``; seed: the halves, the overlap pairs and every
            resample; n_boot: resamples (and the permutation test's permutations)
    ConsistencySplit     what the study measured (frames below; facts are the test facts unless said)
        .halves      DataFrame [relation x template]: relation, template_position, half
        .scores      DataFrame [fact] (train and test facts with a half-A score): relation, split, cluster, one column
                     per score of CONSISTENCY_SCORES (half A), consistency (main score and threshold), coarse_within_b
                     (half B coarse within-fact Jaccard; test facts)
        .thresholds  DataFrame [score x rule]: score, rule ("otsu" fitted on train facts, or "fixed"), threshold
        .shares      DataFrame [score x rule x threshold]: score, rule, threshold, n_facts, n_inconsistent, share
                     (Interval, never zero-width), share_lo, share_hi
        .overlap     {method: DataFrame [test fact] x kn.methods.detectors.OVERLAP_COLUMNS} on half B
        .by_class    DataFrame [method x class]: method, consistency, n_facts, n_clusters, within, fact_specific,
                     gain (Interval of the method's ``column`` minus the coarse sets', paired over facts; nan for
                     coarse)
        .contrasts   DataFrame [method x reference]: method, reference, n_facts, n_consistent, n_inconsistent,
                     n_clusters, contrast (Interval: inconsistent minus consistent of method minus reference),
                     contrast_lo, contrast_hi, p_value (labels permuted within clusters), holds (True: gains more
                     where paraphrases disagree, False: less, None: not distinguishable here), verdict (a sentence)
        .welch       dict: Welch's t test of half B's coarse within-fact Jaccard between the classes (a sanity line:
                     does the half-A class predict half-B agreement?), kn.methods.consistency.welch_between_classes
        .score, .threshold, .threshold_rule ("otsu" / "fixed"), .column, .alpha, .seed, .names {method: display name}
        .name(method) -> str   the display name of a method (kn.experiments.land_operating.DETECTORS)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kn.base.stats import Interval, cluster_bootstrap_mean, cluster_paired_difference
from kn.experiments.land_operating import DETECTORS
from kn.methods import consistency, detectors

FIXED_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
NULL_METHODS = ("constant", "relation_prior")
OWN_OVERLAP = "own_overlap"


@dataclass
class ConsistencySplit:
    """Chapter 4's consistency split (see the module docstring for each frame's rows and columns)."""

    halves: pd.DataFrame
    scores: pd.DataFrame
    thresholds: pd.DataFrame
    shares: pd.DataFrame
    overlap: dict
    by_class: pd.DataFrame
    contrasts: pd.DataFrame
    welch: dict
    score: str
    threshold: float
    threshold_rule: str
    column: str = "fact_specific"
    alpha: float = 0.05
    seed: int = 0
    names: dict = field(default_factory=dict)  # method -> display name

    def name(self, method: str) -> str:
        """The display name of ``method`` (the key itself where none is known)."""
        return self.names.get(method, method)


def _require(prompts: pd.DataFrame) -> None:
    missing = {"prompt_id", "fact_id", "relation", "template_position", "split"} - set(prompts.columns)
    if missing:
        raise ValueError(f"consistency_split_study: prompts lack column(s) {sorted(missing)}")


def _thresholds(scores: dict, train_facts: set, fixed: Sequence[float]) -> pd.DataFrame:
    """Per score: Otsu's threshold of the train facts' half-A scores (none where no train fact has one; the test
    facts never enter it), then the fixed ones."""
    rows = []
    for name, values in scores.items():
        train = values[values.index.isin(train_facts)].dropna()
        if not train.empty:
            rows.append({"score": name, "rule": "otsu", "threshold": consistency.otsu_threshold(train)})
        rows += [{"score": name, "rule": "fixed", "threshold": float(t)} for t in fixed]
    return pd.DataFrame(rows, columns=["score", "rule", "threshold"])


def _shares(scores: dict, thresholds: pd.DataFrame, test_facts: set, fact_cluster: Mapping, *, n_boot: int,
            seed: int) -> pd.DataFrame:
    parts = []
    for name, values in scores.items():
        test = values[values.index.isin(test_facts)]
        mine = thresholds[thresholds["score"] == name].reset_index(drop=True)
        labels = {i: t for i, t in zip(mine.index, mine["threshold"])}
        table = consistency.inconsistent_shares(test, labels, fact_cluster, n_boot=n_boot, seed=seed)
        parts.append(pd.concat([mine[["score", "rule"]], table.reset_index(drop=True)], axis=1))
    return pd.concat(parts, ignore_index=True)


def _by_class(overlap: dict, classes: pd.Series, cluster_of: Mapping, column: str, *, n_boot: int,
              seed: int) -> pd.DataFrame:
    """Per method and class: mean within-fact and ``column`` overlap on half B, and the gain over the coarse sets."""
    coarse = overlap["coarse"]
    rows = []
    for method, frame in overlap.items():
        for name in consistency.CLASSES:
            facts = frame.index.intersection(classes.index[classes == name])
            clusters = [cluster_of.get(f, f) for f in facts]
            gain = (Interval(float("nan"), float("nan"), float("nan"), 0) if method == "coarse" or not len(facts) else
                    cluster_paired_difference(frame.loc[facts, column], coarse.reindex(facts)[column], clusters,
                                              n_boot=n_boot, seed=seed, bounds=(-2.0, 2.0)))
            rows.append({"method": method, "consistency": name, "n_facts": int(len(facts)),
                         "n_clusters": len(set(clusters)),
                         "within": cluster_bootstrap_mean(frame.loc[facts, "within"], clusters, n_boot=n_boot,
                                                          seed=seed, bounds=(0.0, 1.0)),
                         column: cluster_bootstrap_mean(frame.loc[facts, column], clusters, n_boot=n_boot, seed=seed,
                                                        bounds=(-1.0, 1.0)),
                         "gain": gain})
    return pd.DataFrame(rows)


def _verdict(method: str, reference: str, contrast: Interval, p_value: float, alpha: float, column: str,
             names: Mapping) -> tuple[bool | None, str]:
    """(holds, sentence): "gains more / less where paraphrases disagree" only where the interval excludes 0 from two
    clusters or more and the permutation test agrees (p < alpha); otherwise "not distinguishable here"."""
    name = names.get(method, method)
    what = (f"its {column.replace('_', '-')} overlap" if reference == OWN_OVERLAP else
            f"its {column.replace('_', '-')} overlap minus the {names.get(reference, reference).lower()}'s")
    if math.isnan(contrast.mean):
        return None, f"{name}: {what} cannot be compared between the classes here (a class has no test fact)."
    if contrast.mean == 0 and math.isnan(contrast.lo):
        return None, (f"{name}: where paraphrases disagree and where they agree are not distinguishable here: {what} "
                      f"is the same for every test fact (class difference exactly 0, n = {contrast.n}).")
    if math.isnan(contrast.lo):
        return None, (f"{name}: where paraphrases disagree and where they agree are not distinguishable here: {what} "
                      f"takes one value per class (class difference {contrast.mean:.1%}, no spread within either "
                      f"class: no interval, n = {contrast.n}).")
    text = f"{contrast.format('{:.1%}')}, n = {contrast.n} facts in {contrast.n_clusters} clusters, p = {p_value:.3g}"
    decided = contrast.excludes_zero and contrast.decidable and p_value < alpha
    if decided:
        more = contrast.mean > 0
        return more, (f"{name} gains {'more' if more else 'less'} where paraphrases disagree: {what} is "
                      f"{'higher' if more else 'lower'} on inconsistent than on consistent facts ({text}).")
    return None, (f"{name}: where paraphrases disagree and where they agree are not distinguishable here ({what}, "
                  f"inconsistent minus consistent: {text}).")


def _contrasts(overlap: dict, classes: pd.Series, cluster_of: Mapping, column: str, nulls: Sequence[str], *,
               n_boot: int, seed: int, alpha: float, names: Mapping) -> pd.DataFrame:
    references = [r for r in nulls if r in overlap] + [OWN_OVERLAP]
    rows = []
    for method, frame in overlap.items():
        if method == "coarse":
            continue  # the coarse sets are what the class was read on (half A): the Welch line, not a contrast
        for reference in references:
            if reference == method:
                continue
            values = frame[column] if reference == OWN_OVERLAP else frame[column] - overlap[reference][column].reindex(
                frame.index)
            values = values.reindex(classes.index).dropna()
            labels = classes.loc[values.index]
            clusters = [cluster_of.get(f, f) for f in values.index]
            contrast = consistency.class_contrast(values, labels, clusters, n_boot=n_boot, seed=seed)
            p_value = consistency.class_contrast_p(values, labels, clusters, n_perm=n_boot, seed=seed)
            holds, sentence = _verdict(method, reference, contrast, p_value, alpha, column, names)
            rows.append({"method": method, "reference": reference, "n_facts": int(len(values)),
                         "n_consistent": int((labels == consistency.CLASSES[0]).sum()),
                         "n_inconsistent": int((labels == consistency.CLASSES[1]).sum()),
                         "n_clusters": contrast.n_clusters, "contrast": contrast, "contrast_lo": contrast.lo,
                         "contrast_hi": contrast.hi, "p_value": p_value, "holds": holds, "verdict": sentence})
    return pd.DataFrame(rows, columns=["method", "reference", "n_facts", "n_consistent", "n_inconsistent",
                                       "n_clusters", "contrast", "contrast_lo", "contrast_hi", "p_value", "holds",
                                       "verdict"])


def consistency_split_study(prompts: pd.DataFrame, coarse: Mapping, sets_by_method: Mapping, fact_cluster: Mapping, *,
                            score: str = "intersection_over_union", threshold: float | None = None, seed: int,
                            n_boot: int, fixed_thresholds: Sequence[float] = FIXED_THRESHOLDS,
                            nulls: Sequence[str] = NULL_METHODS, column: str = "fact_specific",
                            alpha: float = 0.05) -> ConsistencySplit:
    """Facts classed on half A of their relation's templates, every method measured on half B (see the module
    docstring for the arguments and the frames returned). Otsu's thresholds are fitted on the train facts' half-A
    scores only; shares, overlaps and contrasts are over the test facts with a half-A score. Intervals resample
    clusters of ``fact_cluster`` (a fact missing from it is a cluster of its own), then facts."""
    _require(prompts)
    if score not in consistency.CONSISTENCY_SCORES:
        raise ValueError(f"consistency_split_study: score={score!r} must be one of "
                         f"{', '.join(consistency.CONSISTENCY_SCORES)}")
    if column not in detectors.OVERLAP_COLUMNS:
        raise ValueError(f"consistency_split_study: column={column!r} must be one of {detectors.OVERLAP_COLUMNS}")
    halves = consistency.template_halves(prompts, seed=seed)
    half_a = consistency.prompts_in_half(prompts, halves, "A")
    half_b_test = consistency.prompts_in_half(prompts[prompts["split"] == "test"], halves, "B")
    split_of = dict(zip(prompts["fact_id"], prompts["split"]))
    train_facts = {f for f, s in split_of.items() if s == "train"}
    test_facts = {f for f, s in split_of.items() if s == "test"}
    scores = {name: consistency.consistency_scores(half_a, coarse, score=name)
              for name in consistency.CONSISTENCY_SCORES}
    thresholds = _thresholds(scores, train_facts, fixed_thresholds)
    shares = _shares(scores, thresholds, test_facts, fact_cluster, n_boot=n_boot, seed=seed)

    if threshold is None:
        fitted = thresholds[(thresholds["score"] == score) & (thresholds["rule"] == "otsu")]["threshold"]
        if fitted.empty:
            raise ValueError("consistency_split_study: no train fact has a half-A score to fit Otsu's threshold on")
        threshold, rule = float(fitted.iloc[0]), "otsu"
    else:
        threshold, rule = float(threshold), "fixed"
    classes_all = consistency.classify_facts(scores[score], threshold)
    classes = classes_all[classes_all.index.isin(test_facts)]

    methods = {"coarse": coarse, **{m: s for m, s in sets_by_method.items() if m != "coarse"}}
    half_b_ids = half_b_test["prompt_id"].tolist()
    overlap = {m: detectors.overlap_by_fact(half_b_test, {p: s[p] for p in half_b_ids if p in s}, seed=seed)
               for m, s in methods.items()}
    overlap = {m: frame[frame.index.isin(classes.index)] for m, frame in overlap.items()}
    names = {m: DETECTORS.get(m, m) for m in methods}
    by_class = _by_class(overlap, classes, fact_cluster, column, n_boot=n_boot, seed=seed)
    contrasts = _contrasts(overlap, classes, fact_cluster, column, nulls, n_boot=n_boot, seed=seed, alpha=alpha,
                           names=names)
    coarse_within = overlap["coarse"]["within"].reindex(classes.index)
    welch = consistency.welch_between_classes(coarse_within.to_numpy(np.float64), classes.to_numpy())

    facts = scores[score].index
    relation_of = dict(zip(prompts["fact_id"], prompts["relation"]))
    table = pd.DataFrame({"relation": [relation_of[f] for f in facts], "split": [split_of[f] for f in facts],
                          "cluster": [fact_cluster.get(f, f) for f in facts]}, index=facts)
    for name, values in scores.items():
        table[name] = values.reindex(facts)
    table["consistency"] = classes_all.reindex(facts)
    table["coarse_within_b"] = coarse_within.reindex(facts)
    return ConsistencySplit(halves=halves, scores=table, thresholds=thresholds, shares=shares, overlap=overlap,
                            by_class=by_class, contrasts=contrasts, welch=welch, score=score, threshold=threshold,
                            threshold_rule=rule, column=column, alpha=alpha, seed=int(seed), names=names)
