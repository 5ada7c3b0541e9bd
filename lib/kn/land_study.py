"""kn.land_study: chapter 4's experiment. LAND trained on the train facts, its threshold P chosen on validation facts,
set against rules that see what it sees, a learning curve, and new facts against new wordings.

Prompts are rows with prompt_id, fact_id, relation, subject, object, template_position, split; ``coarse`` maps every
prompt_id to its coarse set (kn.store.AttributionStore.coarse_sets_by_prompt).

API
    DETECTORS                      method key -> display name, in table order (coarse, land, relation_prior,
                                   nearest_neighbour, constant, oracle)
    validation_split(prompts, fraction, seed) -> prompts, a seeded share of each relation's train facts relabelled
                                   split "validation" (P is chosen there, never on test facts)
    training_data(prompts, coarse, hp) -> (pairs [(coarse set, fact)], targets, counterexamples)  for split "train"
    threshold_sweep(detector, prompts, coarse, grid, *, seed) -> DataFrame [P] x overlap means on those prompts
    choose_threshold(sweep, min_size) -> (P, reason)   the largest mean fact-specific overlap among P whose sets hold
                                   min_size neurons on average (ties: smaller P)
    run_land_study(prompts, coarse, params, n_layers, n_neurons, *, device) -> LandStudy
    learning_curve_study(study, prompts, coarse, params, *, device) -> DataFrame  (paper's and our optimiser)
    wording_study(study, prompts, coarse, params, *, device) -> DataFrame per (condition, method, fact)
    LandStudy(hp, threshold_reason, validation_sweep, detector, losses, train_pairs, sets, overlap, ...)

Everything here is seeded by params.seed; no choice reads a test fact's outcome.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import detectors, land, paper
from .params import StudyParams

__all__ = ["DETECTORS", "validation_split", "training_data", "threshold_sweep", "choose_threshold", "run_land_study",
           "learning_curve_study", "wording_study", "LandStudy"]

DETECTORS = {
    "coarse": "Coarse set (the prompt's own)",
    "land": "LAND",
    "relation_prior": "Relation prior",
    "nearest_neighbour": "Nearest neighbour",
    "constant": "Constant set",
    "oracle": "Oracle (the fact's own target)",
}


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
    """(pairs, targets, counterexamples) of the prompts of ``split``: pairs [(coarse set, fact_id)] in row order,
    targets {fact: (ids, counts)} (kn.land.build_targets, counter-examples from the same split and relation)."""
    part = prompts[prompts["split"] == split]
    counter = land.draw_counterexamples(part, hp.counterexamples, hp.seed)
    targets = land.build_targets(land.fact_sets_for(part, coarse), land.counter_sets_for(part, counter, coarse))
    pairs = [(coarse[p], f) for p, f in zip(part["prompt_id"], part["fact_id"])]
    return pairs, targets, counter


def _means(frame: pd.DataFrame) -> dict:
    return {column: float(frame[column].mean()) for column in detectors.OVERLAP_COLUMNS}


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


@dataclass
class LandStudy:
    hp: land.LandHyperParams  # threshold = the P used
    threshold_reason: str
    validation_sweep: pd.DataFrame  # [P] x overlap means on the validation facts (detector trained without them)
    detector: land.LandDetector  # trained on every train fact
    losses: list
    train_pairs: int
    targets: dict  # train targets
    counterexample_removed: float  # mean share of a train fact's union removed by its counter-examples
    sets: dict[str, dict]  # method -> {prompt_id: frozenset}; land for every prompt, the others for test prompts
    overlap: dict[str, pd.DataFrame] = field(default_factory=dict)  # method -> per-fact overlap on the test facts
    constant_k: int = 0

    @property
    def constant(self) -> frozenset:
        """The constant set (the same for every prompt)."""
        return next(iter(self.sets["constant"].values()), frozenset())


def run_land_study(prompts: pd.DataFrame, coarse: dict, params: StudyParams, n_layers: int, n_neurons: int, *,
                   device="cpu", progress=None) -> LandStudy:
    """Chapter 4: choose P on validation facts, train on all train facts, and build every detector's sets.

    1. A seeded share (land_validation_fraction) of each relation's train facts is held out; LAND is trained on the
       rest and P is chosen on the held-out facts (:func:`choose_threshold`), unless params.land_threshold fixes it.
    2. LAND is trained again on every train fact and applied to every prompt.
    3. On the test prompts: the prompt's coarse set, the relation prior and the nearest neighbour (sized and
       thresholded like LAND), the constant set (K = the mean LAND set size on the train prompts), and the oracle.
    progress: None or a callable(desc) -> context manager with update(), e.g. kn.progress.progress."""
    hp = land.LandHyperParams.from_params(params)
    labelled = validation_split(prompts, params.land_validation_fraction, params.seed)
    fit_pairs, fit_targets, _ = training_data(labelled, coarse, hp)
    fit_detector, _ = land.train_land(fit_pairs, fit_targets, n_layers, n_neurons, hp, device=device)
    validation = labelled[labelled["split"] == "validation"]
    sweep = threshold_sweep(fit_detector, validation, coarse, params.land_threshold_grid, seed=params.seed)
    if params.land_threshold is None:
        threshold, reason = choose_threshold(sweep, params.land_min_set_size)
    else:
        threshold, reason = float(params.land_threshold), "fixed by the parameter land_threshold"
    hp = dataclasses.replace(hp, threshold=threshold)

    pairs, targets, _ = training_data(prompts, coarse, hp)
    detector, losses = land.train_land(pairs, targets, n_layers, n_neurons, hp, device=device)
    train = prompts[prompts["split"] == "train"]
    unions = {f: frozenset().union(*sets) for f, sets in land.fact_sets_for(train, coarse).items()}
    removed = float(np.mean([1 - len(targets[f][0]) / max(len(unions[f]), 1) for f in targets]))

    ids = prompts["prompt_id"].tolist()
    land_all = dict(zip(ids, land.land_sets(detector, [coarse[p] for p in ids], threshold)))
    test = prompts[prompts["split"] == "test"]
    test_ids = test["prompt_id"].tolist()
    sets = {"coarse": {p: coarse[p] for p in test_ids}, "land": land_all}
    fact_relation = dict(zip(prompts["fact_id"], prompts["relation"]))
    sets["relation_prior"] = detectors.relation_prior_sets(targets, fact_relation, test[["prompt_id", "relation"]],
                                                           {p: len(land_all[p]) for p in test_ids})
    sets["nearest_neighbour"], _ = detectors.nearest_neighbour_sets(
        {p: coarse[p] for p in train["prompt_id"]}, dict(zip(train["prompt_id"], train["fact_id"])), targets,
        {p: coarse[p] for p in test_ids}, threshold)
    k = max(1, int(round(np.mean([len(land_all[p]) for p in train["prompt_id"]]))))
    constant = land.top_k_constant_set(targets, k)
    sets["constant"] = {p: constant for p in test_ids}
    test_counter = land.draw_counterexamples(test, hp.counterexamples, hp.seed)
    oracle = detectors.oracle_sets(land.fact_sets_for(test, coarse), land.counter_sets_for(test, test_counter, coarse),
                                   threshold)
    sets["oracle"] = {p: oracle[f] for p, f in zip(test["prompt_id"], test["fact_id"])}
    overlap = {m: detectors.overlap_by_fact(test, s, seed=params.seed) for m, s in sets.items()}
    return LandStudy(hp, reason, sweep, detector, losses, len(pairs), targets, removed, sets, overlap, k)


def _test_overlap_means(test: pd.DataFrame, coarse: dict, seed: int):
    ids = test["prompt_id"].tolist()

    def evaluate(model, hp):
        sets = dict(zip(ids, land.land_sets(model, [coarse[p] for p in ids], hp.threshold)))
        return _means(detectors.overlap_by_fact(test, sets, seed=seed))

    return evaluate


def learning_curve_study(study: LandStudy, prompts: pd.DataFrame, coarse: dict, params: StudyParams, *,
                         device="cpu") -> pd.DataFrame:
    """LAND trained on nested seeded shares (learning_curve_fractions) of the train facts with the paper's optimiser
    (kn.paper.LAND_OPTIMISER) and with this run's, both at the run's P; each evaluated on the test facts.
    Returns kn.detectors.learning_curve's frame (setting, fraction, n_train_facts, n_train_prompts, size, within,
    across_same_relation, across_other_relation, fact_specific)."""
    pairs, targets, _ = training_data(prompts, coarse, study.hp)
    settings = {"paper's optimiser": dataclasses.replace(study.hp, **paper.LAND_OPTIMISER), "this run's": study.hp}
    test = prompts[prompts["split"] == "test"]
    return detectors.learning_curve(pairs, targets, study.detector.n_layers, study.detector.n_neurons, settings,
                                    params.learning_curve_fractions, _test_overlap_means(test, coarse, params.seed),
                                    seed=params.seed, device=device)


def wording_study(study: LandStudy, prompts: pd.DataFrame, coarse: dict, params: StudyParams, *,
                  device="cpu") -> pd.DataFrame:
    """New facts against new wordings. One template per relation is held out of every train fact (kn.detectors.
    wording_holdout); LAND is trained on the other nine, targets from the nine (the held-out wording is neither an
    input nor part of a target). Then, per fact, the overlap of LAND's sets and of the coarse sets:
      "new facts": the test facts (kn.detectors.overlap_by_fact);
      "new wordings": each held-out prompt against its fact's seen prompts (kn.detectors.heldout_overlap_by_fact).
    Returns a long DataFrame: condition, method ("coarse" / "land"), fact_id and OVERLAP_COLUMNS."""
    hp = study.hp
    heldout = detectors.wording_holdout(prompts, seed=params.seed)
    seen, _ = detectors.split_for_wordings(prompts, heldout)
    train = prompts[prompts["split"] == "train"]
    counter = land.draw_counterexamples(train, hp.counterexamples, hp.seed)
    targets = detectors.wording_targets(prompts, coarse, heldout, counter)
    pairs = [(coarse[p], f) for p, f in zip(seen["prompt_id"], seen["fact_id"])]
    detector, _ = land.train_land(pairs, targets, study.detector.n_layers, study.detector.n_neurons, hp, device=device)
    ids = prompts["prompt_id"].tolist()
    land_sets = dict(zip(ids, land.land_sets(detector, [coarse[p] for p in ids], hp.threshold)))
    test = prompts[prompts["split"] == "test"]
    frames = []
    for method, sets in (("coarse", coarse), ("land", land_sets)):
        for condition, frame in (("new facts", detectors.overlap_by_fact(test, sets, seed=params.seed)),
                                 ("new wordings", detectors.heldout_overlap_by_fact(train, sets, heldout,
                                                                                    seed=params.seed))):
            frames.append(frame.reset_index().assign(condition=condition, method=method))
    return pd.concat(frames, ignore_index=True)
