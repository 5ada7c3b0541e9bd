"""kn.land_study: chapter 4's experiment. LAND trained on the train facts, its read-out (threshold P, or k) chosen on
validation facts by four rules, set against rules that see what it sees, over several seeds, with a learning curve, a
counter-example ablation, a near-constant test, the peer's consistent / inconsistent split, and new facts against new
wordings.

Prompts are rows with prompt_id, fact_id, relation, subject, object, template_position, split; ``coarse`` maps every
prompt_id to its coarse set (kn.store.AttributionStore.coarse_sets_by_prompt). Per-fact overlap frames are those of
kn.detectors.overlap_by_fact (columns OVERLAP_COLUMNS).

API
    DETECTORS                      method key -> display name, in table order (coarse, land, relation_prior,
                                   nearest_neighbour, constant, oracle)
    OPERATING_RULES                rule -> how the read-out is chosen on the validation facts: paper_ratio (a),
                                   max_within (b), fact_specific (c, the former rule), topk (d)
    THRESHOLD_RULES                the rules that give a threshold P (all but topk)
    PAPER_SIZE_RATIOS              {"GPT-2": 27.93 / 23.79, "Llama-3.2-1B": 20.43 / 16.50}: LAND's N_L / N_s
    StudySettings.from_params(params)   the slice of StudyParams read here (keys added for issue 21 default when absent)
    validation_split(prompts, fraction, seed) -> prompts, a seeded share of each relation's train facts relabelled
                                   split "validation" (read-outs are chosen there, never on test facts)
    training_data(prompts, coarse, hp, *, split) -> (pairs [(coarse set, key)], targets {key: (ids, counts)},
                                   counterexamples); key is the fact (rule whole_union) or the prompt (same_template)
    prompt_targets_for(prompts, coarse, hp) -> {prompt_id: (ids, counts)}   each prompt's target under hp's rule
    removed_share(prompts, coarse, prompt_targets) -> float   mean share of a fact's union removed by counter-examples
    threshold_sweep(detector, prompts, coarse, grid, *, seed) -> DataFrame [P] x overlap means on those prompts
    choose_threshold(sweep, min_size) -> (P, reason)   rule (c): the largest mean fact-specific overlap among P whose
                                   sets hold min_size neurons on average (ties: smaller P)
    choose_max_within(sweep) -> (P, reason)            rule (b): the largest mean within-fact overlap (ties: smaller P)
    operating_points(detector, validation, coarse, grid, *, seed, ratio, min_size) -> (DataFrame [rule], sweep)
                                   per rule: P, k, n_s, target_size, the validation overlap means, empty, reason
    read_out(detector, *, threshold=None, k=None) -> callable {prompt_id: coarse set} -> {prompt_id: LAND set}
    point_read_out(detector, point) -> the read_out of one row of operating_points
    generic_neurons(sets) -> frozenset             neurons in more than half of the given coarse sets
    near_constant_test(read, prompts, coarse, *, train, constant, seed) -> DataFrame [test fact]: generic_jaccard,
                                   constant_jaccard, across_other_relation, size
    run_land_study(prompts, coarse, params, n_layers, n_neurons, *, device) -> LandStudy   (the main read-out:
                                   land_operating_point)
    seed_study(prompts, coarse, params, n_layers, n_neurons, *, device, seeds) -> SeedStudy   everything seeded in
                                   the detector pipeline, per seed, with verdicts that must hold at every seed
    seed_summary(frame, by, columns) -> DataFrame  mean, sd, min, max and n_seeds over the seeds
    counterexample_ablation(prompts, coarse, params, n_layers, n_neurons, *, device, ks, seeds) -> DataFrame per
                                   (seed, variant): removed share, target size, P and N_L per rule (validation facts)
    learning_curve_seeds(prompts, coarse, params, n_layers, n_neurons, *, device, seeds, fractions, schedules)
                                   -> DataFrame per (setting, fraction, seed, rule), P re-chosen per size
    learning_curve_summary(curve) -> DataFrame per (setting, fraction, rule): means and spread over seeds
    learning_curve_study(study, prompts, coarse, params, *, device) -> DataFrame per (setting, fraction): the main
                                   rule's means over seeds (columns of the former single-seed curve, plus *_sd)
    wording_study(study, prompts, coarse, params, *, device) -> DataFrame per (condition, method, fact)
    LandStudy, SeedStudy

Seeds: a seed s fixes the validation split, the counter-example draw and the detector's initialisation and shuffle
(run_land_study uses params.seed). The overlap tables' pair sampling stays at params.seed at every s, so the spread
over seeds is the detector pipeline's, not the measurement's. No choice reads a test fact's outcome.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import consistency, detectors, land, paper
from .detectors import OVERLAP_COLUMNS, jaccard
from .params import StudyParams
from .stats import bootstrap_mean, paired_difference

__all__ = ["DETECTORS", "OPERATING_RULES", "THRESHOLD_RULES", "PAPER_SIZE_RATIOS", "StudySettings",
           "validation_split", "training_data", "prompt_targets_for", "removed_share", "threshold_sweep",
           "choose_threshold", "choose_max_within", "operating_points", "read_out", "point_read_out",
           "generic_neurons", "near_constant_test", "run_land_study", "seed_study", "seed_summary",
           "counterexample_ablation", "learning_curve_seeds", "learning_curve_summary", "learning_curve_study",
           "wording_study", "LandStudy", "SeedStudy", "VERDICTS"]

DETECTORS = {
    "coarse": "Coarse set (the prompt's own)",
    "land": "LAND",
    "relation_prior": "Relation prior",
    "nearest_neighbour": "Nearest neighbour",
    "constant": "Constant set",
    "oracle": "Oracle (the fact's own target)",
}

OPERATING_RULES = {
    "paper_ratio": "the P at which the validation sets hold land_operating_ratio x the validation prompts' N_s "
                   "(the paper's N_L / N_s)",
    "max_within": "the P of the grid with the largest within-fact overlap on the validation facts (the paper's metric)",
    "fact_specific": "the P of the grid with the largest fact-specific overlap on the validation facts among those "
                     "whose sets hold land_min_set_size neurons (the former rule)",
    "topk": "each prompt's k highest scores, k = round(the validation prompts' N_s)",
}
THRESHOLD_RULES = ("paper_ratio", "max_within", "fact_specific")

_T4, _T7 = paper.LAND_TABLE4, paper.LAND_TABLE7
PAPER_SIZE_RATIOS = {model: float(_T7.loc[f"LAND, {model}", "N_L"] / _T4.loc[f"LAND, {model}", "N_s"])
                     for model in ("GPT-2", "Llama-3.2-1B")}  # 1.174 and 1.238

# per (seed, rule): the sentences a verdict of chapter 4 may rest on; each must hold at every seed to be stated
VERDICTS = {
    "land_gains_over_coarse": "LAND's fact-specific overlap exceeds the coarse sets' (paired interval above 0)",
    "land_loses_to_coarse": "LAND's fact-specific overlap falls below the coarse sets' (paired interval below 0)",
    "within_below_paper_claim": f"LAND's within-fact overlap lies below the paper's {paper.LAND_OVERLAP_CLAIM:.2%} "
                                "(interval below it)",
    "land_gains_over_constant": "LAND's fact-specific overlap exceeds the constant set's of the same size",
}


@dataclass(frozen=True)
class StudySettings:
    """What this module reads from kn.params.StudyParams (the detector's own keys are in kn.land.LandHyperParams)."""

    seed: int = 0
    validation_fraction: float = 0.2
    threshold_grid: tuple = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)
    min_set_size: float = 2.0
    threshold: float | None = None  # fixes P of the main read-out
    operating_point: str = "paper_ratio"  # the main read-out (a threshold rule: chapters 5 and 6 use its sets)
    operating_ratio: float = 1.17  # the paper's GPT-2 N_L / N_s (Llama-3.2-1B: 1.24)
    seeds: tuple = (0, 1, 2, 3, 4)
    curve_seeds: int = 3  # seeds per size of the learning curve: the first of seeds, then max(seeds) + 1, ...
    learning_curve_fractions: tuple = (0.125, 0.25, 0.5, 1.0)
    ablation_counterexamples: tuple = (0, 1, 2, 5)
    consistency_score: str = "intersection_over_union"
    consistency_threshold: float | None = None  # None: Otsu's threshold on the train facts
    bootstrap_samples: int = 1000

    def __post_init__(self):
        if self.operating_point not in THRESHOLD_RULES:
            raise ValueError(f"land_operating_point={self.operating_point!r}: must be one of "
                             f"{', '.join(THRESHOLD_RULES)} (the main sets need a threshold P)")
        if not self.operating_ratio > 0:
            raise ValueError(f"land_operating_ratio={self.operating_ratio!r}: must be positive")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"land_seeds={list(self.seeds)!r}: needs distinct seeds >= 0")
        if self.curve_seeds < 1:
            raise ValueError(f"land_curve_seeds={self.curve_seeds!r}: must be at least 1")
        if not self.ablation_counterexamples or min(self.ablation_counterexamples) < 0:
            raise ValueError(f"land_counterexample_ablation={list(self.ablation_counterexamples)!r}: needs k >= 0")
        if self.consistency_score not in consistency.CONSISTENCY_SCORES:
            raise ValueError(f"land_consistency_score={self.consistency_score!r}: must be one of "
                             f"{', '.join(consistency.CONSISTENCY_SCORES)}")

    @property
    def learning_curve_seeds(self) -> tuple:
        """The first curve_seeds of seeds, continued by max(seeds) + 1, + 2, ... where seeds are fewer (a smoke run
        with 2 seeds still gets 3 per size)."""
        extra = tuple(max(self.seeds) + 1 + i for i in range(max(0, self.curve_seeds - len(self.seeds))))
        return (tuple(self.seeds) + extra)[:self.curve_seeds]

    @classmethod
    def from_params(cls, p) -> "StudySettings":
        """From a kn.params.StudyParams; the keys of issue 21 (land_operating_point, land_operating_ratio,
        land_seeds, land_curve_seeds, land_counterexample_ablation, land_consistency_score,
        land_consistency_threshold) take this class's defaults where the params predate them."""
        d = cls()
        threshold = getattr(p, "land_consistency_threshold", d.consistency_threshold)
        return cls(seed=int(p.seed), validation_fraction=float(p.land_validation_fraction),
                   threshold_grid=tuple(float(v) for v in p.land_threshold_grid),
                   min_set_size=float(p.land_min_set_size),
                   threshold=None if p.land_threshold is None else float(p.land_threshold),
                   operating_point=str(getattr(p, "land_operating_point", d.operating_point)),
                   operating_ratio=float(getattr(p, "land_operating_ratio", d.operating_ratio)),
                   seeds=tuple(int(s) for s in getattr(p, "land_seeds", d.seeds)),
                   curve_seeds=int(getattr(p, "land_curve_seeds", d.curve_seeds)),
                   learning_curve_fractions=tuple(float(f) for f in p.learning_curve_fractions),
                   ablation_counterexamples=tuple(int(k) for k in getattr(p, "land_counterexample_ablation",
                                                                          d.ablation_counterexamples)),
                   consistency_score=str(getattr(p, "land_consistency_score", d.consistency_score)),
                   consistency_threshold=None if threshold is None else float(threshold),
                   bootstrap_samples=int(getattr(p, "bootstrap_samples", d.bootstrap_samples)))


# --------------------------------------------------------------------------- splits and targets


def validation_split(prompts: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """A copy of ``prompts`` whose split is "validation" for round(fraction * n) of each relation's n train facts
    (at least 2 when it has 4 or more, at least 1 when it has 2 or 3), drawn per relation from (seed,
    crc32(relation))."""
    out = prompts.copy()
    train = out[out["split"] == "train"]
    chosen = set()
    for relation, group in train.groupby("relation", sort=True):
        facts = sorted(group["fact_id"].unique())
        # two per relation at least where there are four or more: fact-specific overlap compares a validation
        # fact with another validation fact of its relation
        n = max(2 if len(facts) >= 4 else 1, int(round(fraction * len(facts)))) if len(facts) > 1 else 0
        rng = np.random.default_rng([seed, zlib.crc32(str(relation).encode()), zlib.crc32(b"validation")])
        chosen.update(facts[i] for i in rng.permutation(len(facts))[:n])
    out.loc[out["fact_id"].isin(chosen), "split"] = "validation"
    return out


def training_data(prompts: pd.DataFrame, coarse: dict, hp: land.LandHyperParams, *, split: str = "train"):
    """(pairs, targets, counterexamples) of the prompts of ``split``, counter-examples drawn in that split only.

    hp.counterexample_rule "whole_union": pairs [(coarse set, fact_id)] in row order, targets {fact: (ids, counts)}
    (kn.land.build_targets: the fact's counts less every template of hp.counterexamples other facts),
    counterexamples {fact: [fact]}. "same_template": pairs [(coarse set, prompt_id)], targets {prompt_id: (ids,
    counts)} (kn.land.build_prompt_targets: the fact's counts less hp.counterexamples prompts of the same template
    and other facts), counterexamples {prompt_id: [prompt_id]}."""
    part = prompts[prompts["split"] == split]
    if hp.counterexample_rule == "whole_union":
        counter = land.draw_counterexamples(part, hp.counterexamples, hp.seed)
        targets = land.build_targets(land.fact_sets_for(part, coarse), land.counter_sets_for(part, counter, coarse))
        pairs = [(coarse[p], f) for p, f in zip(part["prompt_id"], part["fact_id"])]
    else:
        counter = land.counter_prompts_for(part, hp.counterexamples, hp.seed)
        targets = land.build_prompt_targets(part, coarse, counter)
        pairs = [(coarse[p], p) for p in part["prompt_id"]]
    return pairs, targets, counter


def _key_fact(prompts: pd.DataFrame, hp: land.LandHyperParams) -> dict:
    """{training key: fact_id}: the key of :func:`training_data`'s pairs and targets."""
    if hp.counterexample_rule == "whole_union":
        return {f: f for f in prompts["fact_id"]}
    return dict(zip(prompts["prompt_id"], prompts["fact_id"]))


def _by_prompt(prompts: pd.DataFrame, targets: Mapping, hp: land.LandHyperParams) -> dict:
    """{prompt_id: target} from :func:`training_data`'s targets (a fact's target serves each of its prompts)."""
    if hp.counterexample_rule == "whole_union":
        return {p: targets[f] for p, f in zip(prompts["prompt_id"], prompts["fact_id"]) if f in targets}
    return {p: targets[p] for p in prompts["prompt_id"] if p in targets}


def prompt_targets_for(prompts: pd.DataFrame, coarse: dict, hp: land.LandHyperParams) -> dict:
    """Each prompt's target under hp's counter-example rule, counter-examples drawn among ``prompts`` (pass one
    split): {prompt_id: (ids int64 [k], counts float32 [k])}; with whole_union every prompt of a fact gets the
    fact's target."""
    if hp.counterexample_rule == "whole_union":
        counter = land.draw_counterexamples(prompts, hp.counterexamples, hp.seed)
        targets = land.build_targets(land.fact_sets_for(prompts, coarse),
                                     land.counter_sets_for(prompts, counter, coarse))
        return _by_prompt(prompts, targets, hp)
    return land.build_prompt_targets(prompts, coarse, land.counter_prompts_for(prompts, hp.counterexamples, hp.seed))


def removed_share(prompts: pd.DataFrame, coarse: dict, prompt_targets: Mapping) -> float:
    """Mean over facts of the mean over their prompts of 1 - |target| / |union of the fact's coarse sets|: the share
    of the union the counter-examples remove (0 where the union is empty)."""
    fact_of = dict(zip(prompts["prompt_id"], prompts["fact_id"]))
    unions: dict = {}
    for prompt, fact in fact_of.items():
        unions[fact] = unions.get(fact, frozenset()) | coarse.get(prompt, frozenset())
    per_fact: dict = {}
    for prompt, (ids, _) in prompt_targets.items():
        union = len(unions.get(fact_of[prompt], ()))
        per_fact.setdefault(fact_of[prompt], []).append(1 - len(ids) / union if union else 0.0)
    return float(np.mean([np.mean(v) for v in per_fact.values()])) if per_fact else float("nan")


# --------------------------------------------------------------------------- read-outs chosen on validation facts


def _means(frame: pd.DataFrame) -> dict:
    return {column: float(frame[column].mean()) for column in OVERLAP_COLUMNS}


def read_out(detector: land.LandDetector, *, threshold: float | None = None, k: int | None = None) -> Callable:
    """A function {prompt_id: coarse set} -> {prompt_id: LAND set}: scores > threshold, or the top k
    (kn.land.topk_sets); exactly one of the two must be given."""
    if (threshold is None) == (k is None):
        raise ValueError("read_out: give exactly one of threshold and k")
    if k is not None:
        return lambda sets: land.topk_sets(detector, sets, int(k))

    def by_threshold(sets: Mapping) -> dict:
        keys = list(sets)
        return dict(zip(keys, land.land_sets(detector, [sets[p] for p in keys], float(threshold))))

    return by_threshold


def point_read_out(detector: land.LandDetector, point) -> Callable | None:
    """The read_out of one row of :func:`operating_points` (k where it is set, else P); None when the rule found
    no P (its P is nan)."""
    if not pd.isna(point["k"]):
        return read_out(detector, k=int(point["k"]))
    if pd.isna(point["P"]):
        return None
    return read_out(detector, threshold=float(point["P"]))


def threshold_sweep(detector, prompts: pd.DataFrame, coarse: dict, grid, *, seed: int) -> pd.DataFrame:
    """Mean overlap (kn.detectors.overlap_by_fact over ``prompts``' facts) of the detector's sets at each P of
    ``grid``: DataFrame indexed by P with OVERLAP_COLUMNS and `empty` (share of prompts with an empty set)."""
    ids = prompts["prompt_id"].tolist()
    inputs = [coarse[p] for p in ids]
    rows = {}
    for threshold in grid:
        sets = dict(zip(ids, land.land_sets(detector, inputs, float(threshold))))
        frame = detectors.overlap_by_fact(prompts, sets, seed=seed)
        rows[float(threshold)] = _means(frame) | {"empty": float(np.mean([not s for s in sets.values()]))}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("P")


def choose_threshold(sweep: pd.DataFrame, min_size: float = 0.0) -> tuple[float, str]:
    """The P of ``sweep`` with the largest mean fact-specific overlap (within-fact minus same-relation across-fact
    Jaccard) among those whose sets hold at least ``min_size`` neurons on average; ties go to the smaller P. Without a
    floor the choice drifts to P where most sets are empty or hold one neuron, which agree by chance and can neither be
    amplified nor edited. A P whose fact-specific overlap is undefined (all sets empty) is skipped; when no P reaches
    ``min_size``, the one with the largest sets is taken and the reason says so."""
    usable = sweep["fact_specific"].dropna()
    if usable.empty:
        raise ValueError("fact-specific overlap is undefined on the validation facts at every P of the grid: it needs "
                         "two validation facts of one relation with non-empty LAND sets (raise land_validation_fraction "
                         "or train_facts_per_relation, or widen land_threshold_grid)")
    grid = ", ".join(f"{p:g}" for p in sweep.index)
    large = usable[sweep.loc[usable.index, "size"] >= min_size]
    if large.empty:
        best = float(sweep.loc[usable.index, "size"].idxmax())
        return best, (f"no P of the grid {grid} gives LAND sets of {min_size:g} neurons on average on the validation "
                      f"facts; the P with the largest sets ({sweep.loc[best, 'size']:.2f})")
    best = float(large[large == large.max()].index.min())
    return best, (f"largest mean fact-specific overlap on the validation facts ({large.max():.3f}) among the P of the "
                  f"grid {grid} whose sets hold at least {min_size:g} neurons on average")


def choose_max_within(sweep: pd.DataFrame) -> tuple[float, str]:
    """The P of ``sweep`` with the largest mean within-fact overlap (the paper's own metric, R_Lo); ties go to the
    smaller P (the larger sets). P whose within-fact overlap is undefined (every set empty) are skipped."""
    usable = sweep["within"].dropna()
    if usable.empty:
        raise ValueError("within-fact overlap is undefined on the validation facts at every P of the grid")
    best = float(usable[usable == usable.max()].index.min())
    grid = ", ".join(f"{p:g}" for p in sweep.index)
    return best, (f"largest mean within-fact overlap on the validation facts ({usable.max():.3f}) among the P of the "
                  f"grid {grid}; sets of {sweep.loc[best, 'size']:.2f} neurons, {sweep.loc[best, 'empty']:.0%} empty")


def operating_points(detector: land.LandDetector, validation: pd.DataFrame, coarse: dict, grid, *, seed: int,
                     ratio: float, min_size: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The four read-outs of :data:`OPERATING_RULES`, each chosen on ``validation`` (the validation facts' prompts,
    which ``detector`` was not trained on; nothing else is read):
        paper_ratio: P solved (kn.land.size_threshold, not a grid) so that the sets hold ratio x N_s on average,
            N_s the validation prompts' mean coarse-set size;
        max_within: :func:`choose_max_within` on the sweep over ``grid``;
        fact_specific: :func:`choose_threshold` with ``min_size`` on that sweep;
        topk: k = max(1, round(N_s)).
    Returns (DataFrame indexed by rule in OPERATING_RULES order with columns P (nan for topk), k (nan for the
    threshold rules), n_s, target_size, the validation overlap means OVERLAP_COLUMNS, empty and reason; the sweep).
    A rule whose criterion is undefined at every P of the grid gets P = nan and says why."""
    if "split" in validation.columns and (validation["split"] == "test").any():
        raise ValueError("operating_points: the prompts include test prompts; read-outs are chosen on validation "
                         "facts only")
    ids = validation["prompt_id"].tolist()
    if not ids:
        raise ValueError("operating_points: no validation prompts")
    inputs = {p: coarse[p] for p in ids}
    n_s = float(np.mean([len(s) for s in inputs.values()]))
    sweep = threshold_sweep(detector, validation, coarse, grid, seed=seed)
    target = float(ratio) * n_s
    chosen = {"paper_ratio": (land.size_threshold(detector, list(inputs.values()), target), None,
                              f"P at which the validation facts' sets hold {ratio:g} x N_s = {target:.2f} neurons on "
                              f"average (N_s = {n_s:.2f})")}
    for rule, choose in (("max_within", choose_max_within),
                         ("fact_specific", lambda s: choose_threshold(s, min_size))):
        try:
            threshold, reason = choose(sweep)
        except ValueError as error:  # e.g. a detector trained on very few facts: every set empty at every P
            threshold, reason = float("nan"), str(error)
        chosen[rule] = (threshold, None, reason)
    k = max(1, int(round(n_s)))
    chosen["topk"] = (float("nan"), k, f"each prompt's {k} highest scores, k = round(N_s = {n_s:.2f}) of the "
                                       "validation facts")
    rows = {}
    for rule, (threshold, top, reason) in chosen.items():
        row = {"P": threshold, "k": float("nan") if top is None else float(top), "n_s": n_s,
               "target_size": target if rule == "paper_ratio" else float("nan")}
        read = point_read_out(detector, row)
        if read is None:
            rows[rule] = row | {c: float("nan") for c in OVERLAP_COLUMNS} | {"empty": float("nan"), "reason": reason}
            continue
        sets = read(inputs)
        rows[rule] = (row | _means(detectors.overlap_by_fact(validation, sets, seed=seed))
                      | {"empty": float(np.mean([not s for s in sets.values()])), "reason": reason})
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("rule"), sweep


# --------------------------------------------------------------------------- near-constant test


def generic_neurons(sets) -> frozenset:
    """The neurons in more than half of ``sets`` (an iterable of coarse sets, e.g. the train prompts'): what every
    input tends to carry, whatever its fact."""
    sets = list(sets)
    counts: dict = {}
    for s in sets:
        for i in s:
            counts[i] = counts.get(i, 0) + 1
    return frozenset(i for i, c in counts.items() if c > len(sets) / 2)


_GENERIC = "__generic_input__"


def near_constant_test(read: Callable, prompts: pd.DataFrame, coarse: dict, *, train: pd.DataFrame,
                       constant: frozenset, seed: int) -> pd.DataFrame:
    """How much of a detector's output is the same for every input.

    read: {prompt_id: coarse set} -> {prompt_id: set} (:func:`read_out`); prompts: the test prompts (columns
    prompt_id, fact_id, relation); train: the train prompts, whose coarse sets give the generic input (the neurons of
    :func:`generic_neurons`); constant: the constant set of the same size (kn.land.top_k_constant_set).
    Per test fact, means over its prompts p (pairs of two empty sets skipped):
        generic_jaccard: Jaccard of read(p) and read(generic input), the output for an input that holds no fact;
        constant_jaccard: Jaccard of read(p) and ``constant``;
        across_other_relation: kn.detectors.overlap_by_fact's, of the read sets;
        size: mean |read(p)|.
    A constant detector gives 1 in the first two columns (with the matching constant) and across_other_relation 1.
    Returns a DataFrame indexed by fact_id; attrs generic_input_size, generic_output_size, constant_size."""
    generic = generic_neurons(coarse[p] for p in train["prompt_id"])
    ids = prompts["prompt_id"].tolist()
    out = read({**{p: coarse[p] for p in ids}, _GENERIC: generic})
    generic_out = out.pop(_GENERIC)
    overlap = detectors.overlap_by_fact(prompts, out, seed=seed)
    per_fact: dict = {}
    for p, f in zip(prompts["prompt_id"], prompts["fact_id"]):
        per_fact.setdefault(f, []).append((jaccard(out[p], generic_out), jaccard(out[p], constant), len(out[p])))
    rows = {f: {"generic_jaccard": _nanmean([v[0] for v in values]),
                "constant_jaccard": _nanmean([v[1] for v in values]),
                "across_other_relation": float(overlap.loc[f, "across_other_relation"]),
                "size": float(np.mean([v[2] for v in values]))} for f, values in per_fact.items()}
    frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis("fact_id").sort_index(key=lambda i: i.astype(str))
    frame.attrs.update(generic_input_size=len(generic), generic_output_size=len(generic_out),
                       constant_size=len(constant))
    return frame


def _nanmean(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


# --------------------------------------------------------------------------- the main study


@dataclass
class LandStudy:
    hp: land.LandHyperParams  # threshold = the P used
    threshold_reason: str
    validation_sweep: pd.DataFrame  # [P] x overlap means on the validation facts (detector trained without them)
    detector: land.LandDetector  # trained on every train fact
    losses: list
    train_pairs: int
    targets: dict  # one target per train fact (the mean of its prompts' targets: kn.land.fact_mean_targets)
    counterexample_removed: float  # mean share of a train fact's union removed by its counter-examples
    sets: dict[str, dict]  # method -> {prompt_id: frozenset}; land for every prompt, the others for test prompts
    overlap: dict[str, pd.DataFrame] = field(default_factory=dict)  # method -> per-fact overlap on the test facts
    constant_k: int = 0
    operating_points: pd.DataFrame | None = None  # [rule] the four read-outs on the validation facts
    operating_rule: str = ""  # the rule of the main read-out ("fixed" where land_threshold set P)
    training_targets: dict = field(default_factory=dict)  # what the detector was trained on, by training key
    prompt_targets: dict = field(default_factory=dict)  # {train prompt_id: its target}

    @property
    def constant(self) -> frozenset:
        """The constant set (the same for every prompt)."""
        return next(iter(self.sets["constant"].values()), frozenset())


def _fit(labelled: pd.DataFrame, coarse: dict, hp: land.LandHyperParams, n_layers: int, n_neurons: int, device):
    pairs, targets, _ = training_data(labelled, coarse, hp)
    model, losses = land.train_land(pairs, targets, n_layers, n_neurons, hp, device=device)
    return model, losses, pairs, targets


def run_land_study(prompts: pd.DataFrame, coarse: dict, params: StudyParams, n_layers: int, n_neurons: int, *,
                   device="cpu", progress=None) -> LandStudy:
    """Chapter 4: choose the read-out on validation facts, train on all train facts, and build every detector's sets.

    1. A seeded share (land_validation_fraction) of each relation's train facts is held out; LAND is trained on the
       rest and the four read-outs of :func:`operating_points` are chosen on the held-out facts. The main sets use
       land_operating_point's P, unless params.land_threshold fixes it.
    2. LAND is trained again on every train fact and applied to every prompt.
    3. On the test prompts: the prompt's coarse set, the relation prior and the nearest neighbour (sized and
       thresholded like LAND), the constant set (K = the mean LAND set size on the train prompts), and the oracle
       (each test prompt's own target under the same counter-example rule, drawn among test facts).
    progress: None or a callable(desc) -> context manager with update(), e.g. kn.progress.progress."""
    st = StudySettings.from_params(params)
    hp = land.LandHyperParams.from_params(params)
    labelled = validation_split(prompts, st.validation_fraction, st.seed)
    fit_detector, *_ = _fit(labelled, coarse, hp, n_layers, n_neurons, device)
    validation = labelled[labelled["split"] == "validation"]
    points, sweep = operating_points(fit_detector, validation, coarse, st.threshold_grid, seed=st.seed,
                                     ratio=st.operating_ratio, min_size=st.min_set_size)
    if st.threshold is None:
        rule = st.operating_point
        threshold, reason = float(points.loc[rule, "P"]), str(points.loc[rule, "reason"])
        if math.isnan(threshold):
            raise ValueError(f"land_operating_point={rule!r} found no P: {reason}")
    else:
        rule, threshold, reason = "fixed", float(st.threshold), "fixed by the parameter land_threshold"
    hp = dataclasses.replace(hp, threshold=threshold)

    detector, losses, pairs, training_targets = _fit(prompts, coarse, hp, n_layers, n_neurons, device)
    train = prompts[prompts["split"] == "train"]
    prompt_targets = _by_prompt(train, training_targets, hp)
    targets = land.fact_mean_targets(prompt_targets, dict(zip(train["prompt_id"], train["fact_id"])))
    removed = removed_share(train, coarse, prompt_targets)

    ids = prompts["prompt_id"].tolist()
    land_all = dict(zip(ids, land.land_sets(detector, [coarse[p] for p in ids], threshold)))
    test = prompts[prompts["split"] == "test"]
    test_ids = test["prompt_id"].tolist()
    sets = {"coarse": {p: coarse[p] for p in test_ids}, "land": land_all}
    fact_relation = dict(zip(prompts["fact_id"], prompts["relation"]))
    sets["relation_prior"] = detectors.relation_prior_sets(targets, fact_relation, test[["prompt_id", "relation"]],
                                                           {p: len(land_all[p]) for p in test_ids})
    # the nearest neighbour answers with its match's own training target (its fact's, or its prompt's)
    train_key = {p: (f if hp.counterexample_rule == "whole_union" else p)
                 for p, f in zip(train["prompt_id"], train["fact_id"])}
    sets["nearest_neighbour"], _ = detectors.nearest_neighbour_sets(
        {p: coarse[p] for p in train["prompt_id"]}, train_key, training_targets, {p: coarse[p] for p in test_ids},
        threshold)
    k = max(1, int(round(np.mean([len(land_all[p]) for p in train["prompt_id"]]))))
    constant = land.top_k_constant_set(targets, k)
    sets["constant"] = {p: constant for p in test_ids}
    oracle = detectors.target_sets(prompt_targets_for(test, coarse, hp), threshold)
    sets["oracle"] = {p: oracle[p] for p in test_ids}
    overlap = {m: detectors.overlap_by_fact(test, s, seed=st.seed) for m, s in sets.items()}
    return LandStudy(hp, reason, sweep, detector, losses, len(pairs), targets, removed, sets, overlap, k,
                     operating_points=points, operating_rule=rule, training_targets=training_targets,
                     prompt_targets=prompt_targets)


# --------------------------------------------------------------------------- seeds


@dataclass
class SeedStudy:
    """Everything seeded in the detector pipeline, at each seed of ``seeds`` (the test facts are the same at every
    seed). Long frames carry a ``seed`` column."""

    seeds: list
    points: pd.DataFrame  # seed, rule, P, k, n_s, target_size, validation overlap means, empty, reason
    overlap: pd.DataFrame  # seed, rule, method (land / coarse / constant), fact_id, OVERLAP_COLUMNS: test facts
    near_constant: pd.DataFrame  # seed, rule, fact_id, generic_jaccard, constant_jaccard, across_other_relation, size
    per_seed: pd.DataFrame  # seed, rule, method: means over test facts of OVERLAP_COLUMNS
    verdicts: pd.DataFrame  # seed, rule: the intervals behind VERDICTS and one boolean column per verdict
    holds: pd.DataFrame  # [rule, verdict]: n_seeds, n_measured, n_true, holds_at_every_seed, holds_at_no_seed
    consistency: pd.DataFrame  # seed, rule, consistency class: kn.consistency.class_gain's columns (no Interval)
    classes: pd.DataFrame  # [fact] score, consistency (kn.consistency.consistency_classes)
    consistency_threshold: float
    removed: pd.DataFrame  # seed, removed_share, constant_k per rule

    def summary(self, columns: Sequence[str] = OVERLAP_COLUMNS) -> pd.DataFrame:
        """Mean over test facts per (rule, method), then mean, sd, min, max over seeds (:func:`seed_summary`)."""
        return seed_summary(self.per_seed, ["rule", "method"], list(columns))


def seed_summary(frame: pd.DataFrame, by: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Per group of ``by``, the mean, sd (ddof 1; nan for one seed), min and max over the rows (one per seed) of each
    of ``columns``, and n_seeds. Returns a DataFrame indexed by ``by`` with columns (column, statistic)."""
    grouped = frame.groupby(list(by), sort=False)[list(columns)]
    out = grouped.agg(["mean", "std", "min", "max"]).rename(columns={"std": "sd"}, level=1)
    out[("n_seeds", "")] = grouped.size()
    return out


def _verdicts(land_frame: pd.DataFrame, coarse_frame: pd.DataFrame, constant_frame: pd.DataFrame, *, n_boot: int,
              seed: int) -> dict:
    gain = paired_difference(land_frame["fact_specific"], coarse_frame["fact_specific"], n_boot=n_boot, seed=seed)
    over_constant = paired_difference(land_frame["fact_specific"], constant_frame["fact_specific"], n_boot=n_boot,
                                      seed=seed)
    within = bootstrap_mean(land_frame["within"], n_boot=n_boot, seed=seed)
    return {"gain_over_coarse": gain.mean, "gain_lo": gain.lo, "gain_hi": gain.hi,
            "within": within.mean, "within_lo": within.lo, "within_hi": within.hi,
            "gain_over_constant": over_constant.mean, "gain_over_constant_lo": over_constant.lo,
            "land_gains_over_coarse": bool(gain.lo > 0), "land_loses_to_coarse": bool(gain.hi < 0),
            "within_below_paper_claim": bool(within.hi < paper.LAND_OVERLAP_CLAIM),
            "land_gains_over_constant": bool(over_constant.lo > 0)}


def _evaluate_seed(detector, points: pd.DataFrame, prompts: pd.DataFrame, coarse: dict, fact_targets: dict,
                   st: StudySettings):
    """Per rule: test-fact overlap of LAND, the coarse sets and the constant set of LAND's size on the train prompts,
    and the near-constant test. Returns (overlap rows, near-constant frames, constant sizes) keyed by rule."""
    test = prompts[prompts["split"] == "test"]
    train = prompts[prompts["split"] == "train"]
    test_inputs = {p: coarse[p] for p in test["prompt_id"]}
    train_inputs = {p: coarse[p] for p in train["prompt_id"]}
    coarse_overlap = detectors.overlap_by_fact(test, test_inputs, seed=st.seed)
    overlap, near, sizes = {}, {}, {}
    for rule, point in points.iterrows():
        read = point_read_out(detector, point)
        if read is None:
            continue
        land_test = read(test_inputs)
        k = max(1, int(round(np.mean([len(s) for s in read(train_inputs).values()]))))
        constant = land.top_k_constant_set(fact_targets, k)
        sizes[rule] = k
        overlap[rule] = {"land": detectors.overlap_by_fact(test, land_test, seed=st.seed), "coarse": coarse_overlap,
                         "constant": detectors.overlap_by_fact(test, {p: constant for p in test_inputs}, seed=st.seed)}
        near[rule] = near_constant_test(read, test, coarse, train=train, constant=constant, seed=st.seed)
    return overlap, near, sizes


def seed_study(prompts: pd.DataFrame, coarse: dict, params: StudyParams, n_layers: int, n_neurons: int, *,
               device="cpu", seeds: Sequence[int] | None = None) -> SeedStudy:
    """At each seed s of ``seeds`` (default land_seeds): the validation split, counter-example draw and detector
    initialisation of seed s; LAND fitted without the validation facts, the four read-outs chosen on them
    (:func:`operating_points`), LAND trained on every train fact, and on the test facts, per read-out: LAND, the
    coarse sets and the constant set of LAND's size; the near-constant test; LAND's gain over the coarse sets on
    Chen et al.'s consistent and inconsistent facts (classes from the coarse sets, the threshold fitted on the train
    facts). A verdict of :data:`VERDICTS` may be stated only where ``holds`` says it holds at every seed."""
    st = StudySettings.from_params(params)
    hp0 = land.LandHyperParams.from_params(params)
    seeds = list(st.seeds if seeds is None else seeds)
    train_facts = prompts.loc[prompts["split"] == "train", "fact_id"].unique()
    classes, cut = consistency.consistency_classes(prompts, coarse, reference_facts=train_facts,
                                                   score=st.consistency_score,
                                                   threshold="otsu" if st.consistency_threshold is None
                                                   else st.consistency_threshold)
    points_rows, overlap_rows, near_rows, per_seed, verdicts, gains, removed = [], [], [], [], [], [], []
    for seed in seeds:
        hp = dataclasses.replace(hp0, seed=int(seed))
        labelled = validation_split(prompts, st.validation_fraction, int(seed))
        fit_detector, *_ = _fit(labelled, coarse, hp, n_layers, n_neurons, device)
        validation = labelled[labelled["split"] == "validation"]
        points, _ = operating_points(fit_detector, validation, coarse, st.threshold_grid, seed=st.seed,
                                     ratio=st.operating_ratio, min_size=st.min_set_size)
        points_rows.append(points.reset_index().assign(seed=seed))
        detector, _, _, training_targets = _fit(prompts, coarse, hp, n_layers, n_neurons, device)
        train = prompts[prompts["split"] == "train"]
        prompt_targets = _by_prompt(train, training_targets, hp)
        fact_targets = land.fact_mean_targets(prompt_targets, dict(zip(train["prompt_id"], train["fact_id"])))
        overlap, near, sizes = _evaluate_seed(detector, points, prompts, coarse, fact_targets, st)
        removed.append({"seed": seed, "removed_share": removed_share(train, coarse, prompt_targets),
                        **{f"constant_k_{rule}": k for rule, k in sizes.items()}})
        for rule, frames in overlap.items():
            for method, frame in frames.items():
                overlap_rows.append(frame.reset_index().assign(seed=seed, rule=rule, method=method))
                per_seed.append({"seed": seed, "rule": rule, "method": method, **_means(frame)})
            near_rows.append(near[rule].reset_index().assign(seed=seed, rule=rule))
            verdicts.append({"seed": seed, "rule": rule, **_verdicts(frames["land"], frames["coarse"],
                                                                     frames["constant"], n_boot=st.bootstrap_samples,
                                                                     seed=st.seed)})
            table = consistency.class_gain(frames["land"], frames["coarse"], classes["consistency"],
                                           n_boot=st.bootstrap_samples, seed=st.seed)
            gains.append(table.drop(columns="gain").reset_index().assign(seed=seed, rule=rule))
    verdict_frame = pd.DataFrame(verdicts)
    holds = {}
    for rule, part in verdict_frame.groupby("rule", sort=False):
        for name in VERDICTS:
            n_true = int(part[name].sum())  # a seed where the rule found no P counts against "every seed"
            holds[(rule, name)] = {"n_seeds": len(seeds), "n_measured": len(part), "n_true": n_true,
                                   "holds_at_every_seed": n_true == len(seeds), "holds_at_no_seed": n_true == 0}
    holds_frame = pd.DataFrame.from_dict(holds, orient="index")
    holds_frame.index = holds_frame.index.set_names(["rule", "verdict"])
    _lead = ["seed", "rule"]
    return SeedStudy(
        seeds=seeds, points=_first(pd.concat(points_rows, ignore_index=True), _lead),
        overlap=_first(pd.concat(overlap_rows, ignore_index=True), _lead + ["method"]),
        near_constant=_first(pd.concat(near_rows, ignore_index=True), _lead),
        per_seed=pd.DataFrame(per_seed), verdicts=verdict_frame, holds=holds_frame,
        consistency=_first(pd.concat(gains, ignore_index=True), _lead), classes=classes, consistency_threshold=cut,
        removed=pd.DataFrame(removed))


def _first(frame: pd.DataFrame, columns: list) -> pd.DataFrame:
    """``frame`` with ``columns`` moved to the front."""
    return frame[columns + [c for c in frame.columns if c not in columns]]


# --------------------------------------------------------------------------- counter-example ablation


def counterexample_ablation(prompts: pd.DataFrame, coarse: dict, params: StudyParams, n_layers: int,
                            n_neurons: int, *, device="cpu", ks: Sequence[int] | None = None,
                            seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """The counter-example rule, ablated on the VALIDATION facts only (the test facts are not touched).

    Variants: rule same_template with each k of ``ks`` (default land_counterexample_ablation: 0, 1, 2, 5) and rule
    whole_union with params.land_counterexamples other facts (every template of each). Per seed of ``seeds``
    (default land_seeds) and variant: the fit facts' targets (counter-examples drawn among them), LAND fitted on them,
    and the read-outs of :func:`operating_points` on the validation facts.
    Returns one row per (seed, variant): seed, variant, rule, k, removed_share (:func:`removed_share` on the fit
    facts), target_size (mean neurons per target), then per threshold rule r: P_r and N_L_r (mean validation set
    size at P_r; for paper_ratio it is ratio x N_s by construction, so P_paper_ratio carries the information), and
    within, fact_specific, across_other_relation at paper_ratio."""
    st = StudySettings.from_params(params)
    hp0 = land.LandHyperParams.from_params(params)
    ks = list(st.ablation_counterexamples if ks is None else ks)
    variants = [(f"same_template, k={k}", "same_template", int(k)) for k in ks]
    variants.append((f"whole_union, {hp0.counterexamples} facts x every template", "whole_union",
                     hp0.counterexamples))
    rows = []
    for seed in list(st.seeds if seeds is None else seeds):
        labelled = validation_split(prompts, st.validation_fraction, int(seed))
        fit = labelled[labelled["split"] == "train"]
        validation = labelled[labelled["split"] == "validation"]
        for name, rule, k in variants:
            hp = dataclasses.replace(hp0, counterexample_rule=rule, counterexamples=k, seed=int(seed))
            model, _, _, targets = _fit(labelled, coarse, hp, n_layers, n_neurons, device)
            prompt_targets = _by_prompt(fit, targets, hp)
            points, _ = operating_points(model, validation, coarse, st.threshold_grid, seed=st.seed,
                                         ratio=st.operating_ratio, min_size=st.min_set_size)
            row = {"seed": seed, "variant": name, "rule": rule, "k": k,
                   "removed_share": removed_share(fit, coarse, prompt_targets),
                   "target_size": float(np.mean([len(ids) for ids, _ in prompt_targets.values()]))}
            for r in THRESHOLD_RULES:
                row[f"P_{r}"], row[f"N_L_{r}"] = float(points.loc[r, "P"]), float(points.loc[r, "size"])
            row.update({c: float(points.loc["paper_ratio", c])
                        for c in ("within", "fact_specific", "across_other_relation")})
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- learning curve


_CURVE_METRICS = ("size", "within", "across_same_relation", "across_other_relation", "fact_specific",
                  "same_template_other_fact")


def learning_curve_seeds(prompts: pd.DataFrame, coarse: dict, params: StudyParams, n_layers: int, n_neurons: int, *,
                         device="cpu", seeds: Sequence[int] | None = None, fractions: Sequence[float] | None = None,
                         schedules: Mapping[str, land.LandHyperParams] | None = None) -> pd.DataFrame:
    """LAND trained on nested seeded shares of the fit facts (train facts less the validation facts), the read-out
    re-chosen at every size on the validation facts (all four rules of :func:`operating_points`), each evaluated on
    the test facts.

    seeds: default StudySettings.learning_curve_seeds (land_curve_seeds of them); a seed fixes the validation split,
    the counter-example draw, the nested samples (kn.detectors.nested_fact_samples) and the initialisation.
    fractions: default learning_curve_fractions. schedules: {setting: LandHyperParams}, default the paper's optimiser
    (kn.paper.LAND_OPTIMISER: 3 epochs, lr 1e-4, batch 8) and this run's; their seed is replaced by each seed.
    Targets are built once per seed over all fit facts, so a fact's target is the same at every size: only the
    number of training facts changes.
    Returns one row per (setting, fraction, seed, rule): setting, fraction, seed, rule, n_train_facts,
    n_train_prompts, P, k, validation_size, and the test means of size, within, across_same_relation,
    across_other_relation, fact_specific, same_template_other_fact (nan where the rule found no P)."""
    st = StudySettings.from_params(params)
    hp = land.LandHyperParams.from_params(params)
    seeds = list(st.learning_curve_seeds if seeds is None else seeds)
    fractions = list(st.learning_curve_fractions if fractions is None else fractions)
    if schedules is None:
        schedules = {"paper's optimiser": dataclasses.replace(hp, **paper.LAND_OPTIMISER), "this run's": hp}
    test = prompts[prompts["split"] == "test"]
    test_inputs = {p: coarse[p] for p in test["prompt_id"]}
    rows = []
    for seed in seeds:
        labelled = validation_split(prompts, st.validation_fraction, int(seed))
        fit = labelled[labelled["split"] == "train"]
        validation = labelled[labelled["split"] == "validation"]
        seeded = dataclasses.replace(hp, seed=int(seed))
        pairs, targets, _ = training_data(labelled, coarse, seeded)
        fact_of = _key_fact(fit, seeded)
        samples = detectors.nested_fact_samples([fact_of[key] for _, key in pairs], fractions, seed=int(seed))
        for name, schedule in schedules.items():
            schedule = dataclasses.replace(schedule, seed=int(seed))
            for fraction, chosen in zip(fractions, samples):
                chosen = set(chosen)
                sub = [(s, key) for s, key in pairs if fact_of[key] in chosen]
                model, _ = land.train_land(sub, targets, n_layers, n_neurons, schedule, device=device)
                points, _ = operating_points(model, validation, coarse, st.threshold_grid, seed=st.seed,
                                             ratio=st.operating_ratio, min_size=st.min_set_size)
                for rule, point in points.iterrows():
                    read = point_read_out(model, point)
                    means = (_means(detectors.overlap_by_fact(test, read(test_inputs), seed=st.seed))
                             if read is not None else {})
                    rows.append({"setting": name, "fraction": float(fraction), "seed": seed, "rule": rule,
                                 "n_train_facts": len(chosen), "n_train_prompts": len(sub), "P": float(point["P"]),
                                 "k": float(point["k"]), "validation_size": float(point["size"]),
                                 **{m: means.get(m, float("nan")) for m in _CURVE_METRICS}})
    return pd.DataFrame(rows)


def learning_curve_summary(curve: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, fraction, rule) of :func:`learning_curve_seeds`' frame: n_train_facts and n_train_prompts
    (means over seeds), and mean, sd, min, max over seeds of P and the test metrics (:func:`seed_summary`)."""
    by = ["setting", "fraction", "rule"]
    out = seed_summary(curve, by, ["P", *_CURVE_METRICS])
    sizes = curve.groupby(by, sort=False)[["n_train_facts", "n_train_prompts"]].mean()
    sizes.columns = pd.MultiIndex.from_tuples([(c, "mean") for c in sizes.columns])
    return pd.concat([sizes, out], axis=1)


def learning_curve_study(study: LandStudy, prompts: pd.DataFrame, coarse: dict, params: StudyParams, *,
                         device="cpu") -> pd.DataFrame:
    """The learning curve of the main read-out (study.operating_rule; land_operating_point where P was fixed), means
    over the curve's seeds, one row per (setting, fraction) in the former layout: setting, fraction, n_train_facts,
    n_train_prompts, size, within, across_same_relation, across_other_relation, fact_specific,
    same_template_other_fact, plus <metric>_sd and n_seeds. The full frame is :func:`learning_curve_seeds`'."""
    st = StudySettings.from_params(params)
    rule = study.operating_rule if study.operating_rule in OPERATING_RULES else st.operating_point
    curve = learning_curve_seeds(prompts, coarse, params, study.detector.n_layers, study.detector.n_neurons,
                                 device=device)
    part = curve[curve["rule"] == rule]
    grouped = part.groupby(["setting", "fraction"], sort=False)
    out = grouped[["n_train_facts", "n_train_prompts", *_CURVE_METRICS]].mean()
    sd = grouped[list(_CURVE_METRICS)].std()
    sd.columns = [f"{c}_sd" for c in sd.columns]
    out = pd.concat([out, sd], axis=1)
    out["n_seeds"] = grouped.size()
    out[["n_train_facts", "n_train_prompts"]] = out[["n_train_facts", "n_train_prompts"]].round().astype(int)
    return out.reset_index()


# --------------------------------------------------------------------------- new facts, new wordings


def wording_study(study: LandStudy, prompts: pd.DataFrame, coarse: dict, params: StudyParams, *,
                  device="cpu") -> pd.DataFrame:
    """New facts against new wordings. One template per relation is held out of every train fact (kn.detectors.
    wording_holdout); LAND is trained on the other nine, targets from the nine (the held-out wording is neither an
    input nor part of a target, nor a counter-example). Then, per fact, the overlap of LAND's sets and of the coarse
    sets:
      "new facts": the test facts (kn.detectors.overlap_by_fact);
      "new wordings": each held-out prompt against its fact's seen prompts (kn.detectors.heldout_overlap_by_fact).
    Returns a long DataFrame: condition, method ("coarse" / "land"), fact_id and OVERLAP_COLUMNS."""
    hp = study.hp
    seed = StudySettings.from_params(params).seed
    heldout = detectors.wording_holdout(prompts, seed=seed)
    seen, _ = detectors.split_for_wordings(prompts, heldout)
    if hp.counterexample_rule == "whole_union":
        train = prompts[prompts["split"] == "train"]
        counter = land.draw_counterexamples(train, hp.counterexamples, hp.seed)
        targets = detectors.wording_targets(prompts, coarse, heldout, counter)
        pairs = [(coarse[p], f) for p, f in zip(seen["prompt_id"], seen["fact_id"])]
    else:  # counter prompts drawn among the seen prompts: same template, so never the held-out one
        targets = land.build_prompt_targets(seen, coarse, land.counter_prompts_for(seen, hp.counterexamples, hp.seed))
        pairs = [(coarse[p], p) for p in seen["prompt_id"]]
    detector, _ = land.train_land(pairs, targets, study.detector.n_layers, study.detector.n_neurons, hp, device=device)
    ids = prompts["prompt_id"].tolist()
    land_sets = dict(zip(ids, land.land_sets(detector, [coarse[p] for p in ids], hp.threshold)))
    test = prompts[prompts["split"] == "test"]
    train = prompts[prompts["split"] == "train"]
    frames = []
    for method, sets in (("coarse", coarse), ("land", land_sets)):
        for condition, frame in (("new facts", detectors.overlap_by_fact(test, sets, seed=seed)),
                                 ("new wordings", detectors.heldout_overlap_by_fact(train, sets, heldout,
                                                                                    seed=seed))):
            frames.append(frame.reset_index().assign(condition=condition, method=method))
    return pd.concat(frames, ignore_index=True)
