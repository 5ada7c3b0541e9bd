"""kn.experiments.land_operating: chapter 4's experiment. LAND trained on the train facts, its read-out (threshold P, or k) chosen on
validation facts by four rules, set against rules that see what it sees, over several seeds, with a learning curve, a
counter-example ablation, a near-constant test, the peer's consistent / inconsistent split, and new facts against new
wordings.

Prompts are rows with prompt_id, fact_id, relation, subject, object, template_position, split; ``coarse`` maps every
prompt_id to its coarse set (kn.attribution.store.AttributionStore.coarse_sets_by_prompt). Per-fact overlap frames are those of
kn.methods.detectors.overlap_by_fact (columns OVERLAP_COLUMNS).

API
    DETECTORS                      method key -> display name, in table order (coarse, land, relation_prior,
                                   nearest_neighbour, constant, oracle)
    OPERATING_RULES                rule -> how the read-out is chosen on the validation facts: paper_ratio (a),
                                   max_within (b), fact_specific (c, the former rule), topk (d)
    THRESHOLD_RULES                the rules that choose a threshold P on validation facts (max_within, fact_specific)
    MAIN_RULES                     the rules land_operating_point may name (paper_ratio and THRESHOLD_RULES)
    PAPER_SIZE_RATIOS              {"GPT-2": 27.93 / 23.79, "Llama-3.2-1B": 20.43 / 16.50}: LAND's N_L / N_s
    StudySettings.from_params(params)   the slice of StudyParams read here (keys added for issue 21 default when absent)
    threshold_sweep(detector, prompts, coarse, grid, *, seed) -> DataFrame [P] x overlap means on those prompts
    choose_threshold(sweep, min_size) -> (P, reason)   rule (c): the largest mean fact-specific overlap among P whose
                                   sets hold min_size neurons on average (ties: smaller P)
    choose_max_within(sweep) -> (P, reason)            rule (b): the largest mean within-fact overlap (ties: smaller P)
    operating_points(detector, validation, coarse, grid, *, seed, ratio, min_size) -> (DataFrame [rule], sweep)
                                   per rule: P, k, ratio, n_s, target_size, the validation overlap means, empty, reason
    read_out(detector, *, threshold=None, k=None, ratio=None) -> callable {prompt_id: coarse set} -> {prompt_id: set}
    point_read_out(detector, point) -> the read_out of one row of operating_points
    LandConfig(settings, hp); LandConfig.from_params(params)   chapter 4's slice of StudyParams (at the edge)
    run_land_study(prompts, coarse, config, n_layers, n_neurons, *, device) -> LandStudy   (the main read-out:
                                   land_operating_point, on the detector it was fixed on; baselines at LAND's size)
    top_of_target(target, n) -> frozenset          a target's n largest counts (a baseline at LAND's size)
    LandStudy, SeedStudy

Seeds: a seed s fixes the validation split, the counter-example draw and the detector's initialisation and shuffle
(run_land_study uses params.seed). The overlap tables' pair sampling stays at params.seed at every s, so the spread
over seeds is the detector pipeline's, not the measurement's. No choice reads a test fact's outcome.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kn.base import paper
from kn.base.clustered import cluster_column
from kn.methods import consistency, counterexamples, detectors, land
from kn.methods.counterexamples import (
    _by_prompt,
    prompt_targets_for,
    removed_share,
    training_data,
    validation_split,
)
from kn.methods.detectors import OVERLAP_COLUMNS

DETECTORS = {
    "coarse": "Coarse set (the prompt's own)",
    "land": "LAND",
    "relation_prior": "Relation prior",
    "nearest_neighbour": "Nearest neighbour",
    "constant": "Constant set",
    "oracle": "Oracle (the fact's own target)",
}

OPERATING_RULES = {
    "paper_ratio": "each prompt's round(land_operating_ratio x |its coarse set|) highest scores: the paper's N_L / N_s "
                   "on any prompts, whatever the detector's scale (nothing chosen on facts)",
    "max_within": "the P of the grid with the largest within-fact overlap on the validation facts (the paper's metric)",
    "fact_specific": "the P of the grid with the largest fact-specific overlap on the validation facts among those "
                     "whose sets hold land_min_set_size neurons (the former rule)",
    "topk": "each prompt's k highest scores, k = round(the validation prompts' N_s)",
}
THRESHOLD_RULES = ("max_within", "fact_specific")  # the rules that choose a threshold P on validation facts
MAIN_RULES = ("paper_ratio", *THRESHOLD_RULES)  # the rules land_operating_point may name for the main sets

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
# each verdict's opposite (a column of the same seed's verdicts): "does not hold" is said only where it holds at every seed
OPPOSITES = {"land_gains_over_coarse": "land_loses_to_coarse", "land_loses_to_coarse": "land_gains_over_coarse",
             "within_below_paper_claim": "within_above_paper_claim",
             "land_gains_over_constant": "land_loses_to_constant"}


@dataclass(frozen=True)
class StudySettings:
    """What this module reads from kn.base.params.StudyParams (the detector's own keys are in kn.methods.land.LandHyperParams)."""

    seed: int = 0
    validation_fraction: float = 0.2
    threshold_grid: tuple = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)
    min_set_size: float = 2.0
    threshold: float | None = None  # fixes P of the main read-out
    operating_point: str = "paper_ratio"  # the main read-out (chapters 5 and 6 use its sets)
    operating_ratio: float = 1.17  # the paper's GPT-2 N_L / N_s (Llama-3.2-1B: 1.24)
    seeds: tuple = (0, 1, 2, 3, 4)
    curve_seeds: int = 3  # seeds per size of the learning curve: the first of seeds, then max(seeds) + 1, ...
    learning_curve_fractions: tuple = (0.125, 0.25, 0.5, 1.0)
    ablation_counterexamples: tuple = (0, 1, 2, 5)
    consistency_score: str = "intersection_over_union"
    consistency_threshold: float | None = None  # None: Otsu's threshold on the train facts
    bootstrap_samples: int = 1000

    def __post_init__(self):
        if self.operating_point not in MAIN_RULES:
            raise ValueError(f"land_operating_point={self.operating_point!r}: must be one of {', '.join(MAIN_RULES)}")
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
        """From a kn.base.params.StudyParams; the keys of issue 21 (land_operating_point, land_operating_ratio,
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


# --------------------------------------------------------------------------- read-outs chosen on validation facts


def _means(frame: pd.DataFrame) -> dict:
    return {column: float(frame[column].mean()) for column in OVERLAP_COLUMNS}


def read_out(detector: land.LandDetector, *, threshold: float | None = None, k: int | None = None,
             ratio: float | None = None) -> Callable:
    """A function {prompt_id: coarse set} -> {prompt_id: LAND set}: scores > threshold, the top k
    (kn.methods.land.topk_sets), or each prompt's top round(ratio x |coarse set|) (kn.methods.land.ratio_sets);
    exactly one of the three must be given."""
    if sum(v is not None for v in (threshold, k, ratio)) != 1:
        raise ValueError("read_out: give exactly one of threshold, k and ratio")
    if k is not None:
        return lambda sets: land.topk_sets(detector, sets, int(k))
    if ratio is not None:
        return lambda sets: land.ratio_sets(detector, sets, float(ratio))

    def by_threshold(sets: Mapping) -> dict:
        keys = list(sets)
        return dict(zip(keys, land.land_sets(detector, [sets[p] for p in keys], float(threshold))))

    return by_threshold


def point_read_out(detector: land.LandDetector, point) -> Callable | None:
    """The read_out of one row of :func:`operating_points` (the ratio where it is set, else k, else P); None when
    the rule found no P (its P is nan)."""
    if not pd.isna(point.get("ratio", float("nan"))):
        return read_out(detector, ratio=float(point["ratio"]))
    if not pd.isna(point["k"]):
        return read_out(detector, k=int(point["k"]))
    if pd.isna(point["P"]):
        return None
    return read_out(detector, threshold=float(point["P"]))


def threshold_sweep(detector, prompts: pd.DataFrame, coarse: dict, grid, *, seed: int) -> pd.DataFrame:
    """Mean overlap (kn.methods.detectors.overlap_by_fact over ``prompts``' facts) of the detector's sets at each P of
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
        paper_ratio: each prompt's round(ratio x |coarse set|) highest scores (kn.methods.land.ratio_sets): nothing is
            chosen, so it holds on any detector and any prompts (the validation row shows what it gives there);
        max_within: :func:`choose_max_within` on the sweep over ``grid``;
        fact_specific: :func:`choose_threshold` with ``min_size`` on that sweep;
        topk: k = max(1, round(N_s)).
    Returns (DataFrame indexed by rule in OPERATING_RULES order with columns P (nan but for the threshold rules), k
    (nan but for topk), ratio (nan but for paper_ratio), n_s, target_size, the validation overlap means
    OVERLAP_COLUMNS, empty and reason; the sweep).
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
    chosen = {"paper_ratio": (float("nan"), None,
                              f"each prompt's round({ratio:g} x |its coarse set|) highest scores: N_L = {ratio:g} x "
                              f"N_s on any prompts (N_s = {n_s:.2f} here, so {target:.2f} neurons); nothing chosen")}
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
        row = {"P": threshold, "k": float("nan") if top is None else float(top),
               "ratio": float(ratio) if rule == "paper_ratio" else float("nan"), "n_s": n_s,
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


def _nanmean(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


# --------------------------------------------------------------------------- the main study


@dataclass(frozen=True)
class LandConfig:
    """Chapter 4's slice of the study's parameters: the study's settings and LAND's hyper-parameters, built from a
    kn.base.params.StudyParams at the edge (the chapter's notebook): ``LandConfig.from_params(cfg)``."""
    settings: StudySettings = field(default_factory=StudySettings)
    hp: land.LandHyperParams = field(default_factory=land.LandHyperParams)

    @classmethod
    def from_params(cls, p) -> "LandConfig":
        return cls(StudySettings.from_params(p), land.LandHyperParams.from_params(p))


@dataclass
class LandStudy:
    hp: land.LandHyperParams  # threshold = the P used
    threshold_reason: str
    validation_sweep: pd.DataFrame  # [P] x overlap means on the validation facts (detector trained without them)
    detector: land.LandDetector  # trained on every train fact
    losses: list
    train_pairs: int
    targets: dict  # one target per train fact (the mean of its prompts' targets: kn.methods.counterexamples.fact_mean_targets)
    counterexample_removed: float  # mean share of a train fact's union removed by its counter-examples
    sets: dict[str, dict]  # method -> {prompt_id: frozenset}; land for every prompt, the others for test prompts
    overlap: dict[str, pd.DataFrame] = field(default_factory=dict)  # method -> per-fact overlap on the test facts
    constant_k: int = 0
    operating_points: pd.DataFrame | None = None  # [rule] the four read-outs on the validation facts
    operating_rule: str = ""  # the rule of the main read-out ("fixed" where land_threshold set P)
    training_targets: dict = field(default_factory=dict)  # what the detector was trained on, by training key
    prompt_targets: dict = field(default_factory=dict)  # {train prompt_id: its target}
    # [epoch] "train" and "validation" losses of the detector fitted without the validation facts (the one whose
    # read-out is chosen on them): whether it learned more than the trivial answers on facts it did not see
    history: pd.DataFrame | None = None
    fact_cluster: dict = field(default_factory=dict)  # {fact_id: cluster}: the unit every interval over facts resamples
    ratio: float | None = None  # the main read-out is each prompt's top round(ratio x |coarse set|); None: P
    detector_facts: str = "every train fact"  # what the reported detector was trained on

    def read(self, detector: land.LandDetector | None = None) -> Callable:
        """The main read-out (kn.experiments.land_operating.read_out) of ``detector`` (default: the reported one): the
        ratio read-out, or P."""
        detector = self.detector if detector is None else detector
        return (read_out(detector, ratio=self.ratio) if self.ratio is not None else
                read_out(detector, threshold=float(self.hp.threshold)))

    @property
    def read_out_label(self) -> str:
        """"P = 1.5" or "each prompt's top round(1.17 x |coarse set|)": the main read-out in words."""
        if self.ratio is not None:
            return f"each prompt's top round({self.ratio:g} x |coarse set|)"
        return f"P = {self.hp.threshold:g}"

    @property
    def constant(self) -> frozenset:
        """The constant set (the same for every prompt)."""
        return next(iter(self.sets["constant"].values()), frozenset())


def _fit(labelled: pd.DataFrame, coarse: dict, hp: land.LandHyperParams, n_layers: int, n_neurons: int, device):
    pairs, targets, _ = training_data(labelled, coarse, hp)
    model, losses = land.train_land(pairs, targets, n_layers, n_neurons, hp, device=device)
    return model, losses, pairs, targets


def _fit_with_history(labelled: pd.DataFrame, coarse: dict, hp: land.LandHyperParams, n_layers: int, n_neurons: int,
                      device):
    """_fit on the fit facts, with the validation facts' loss (their own targets, drawn among them) after each epoch:
    (model, history [epoch] train / validation, losses, pairs, targets)."""
    pairs, targets, _ = training_data(labelled, coarse, hp)
    held_pairs, held_targets, _ = training_data(labelled, coarse, hp, split="validation")
    validation = []
    model, losses = land.train_land(pairs, targets, n_layers, n_neurons, hp, device=device,
                                    on_epoch=lambda _, m: validation.append(land.mean_loss(m, held_pairs, held_targets)))
    steps = np.asarray(losses, float).reshape(hp.epochs, -1) if hp.epochs else np.zeros((0, 1))
    history = pd.DataFrame({"train": steps.mean(axis=1), "validation": validation},
                           index=pd.RangeIndex(1, hp.epochs + 1, name="epoch"))
    return model, history, losses, pairs, targets


def top_of_target(target, n: int) -> frozenset:
    """A target's n neurons with the largest counts (count > 0; ties to the smaller id): a baseline answered at the
    size of LAND's set for the same prompt, rather than thresholded at P on its own scale."""
    ids, counts = np.asarray(target[0], dtype=np.int64), np.asarray(target[1], dtype=np.float64)
    keep = counts > 0
    ids, counts = ids[keep], counts[keep]
    return frozenset(ids[np.lexsort((ids, -counts))][:max(0, int(n))].tolist())


def run_land_study(prompts: pd.DataFrame, coarse: dict, config: LandConfig, n_layers: int, n_neurons: int, *,
                   device="cpu", progress=None) -> LandStudy:
    """Chapter 4: LAND's main sets, every read-out fixed on the detector whose sets are reported, and every detector's
    sets at the size of LAND's set for the same prompt.

    1. A seeded share (land_validation_fraction) of each relation's train facts is held out; LAND is fitted on the
       rest and the four read-outs of :func:`operating_points` are chosen on the held-out facts.
    2. The main sets (land_operating_point): the paper's ratio read-out (each prompt's top round(land_operating_ratio x
       |coarse set|): it chooses nothing, so LAND is trained again on every train fact and read that way); a threshold
       rule (its P was chosen on the fitted detector, so that detector's sets are reported: its scale is the one P was
       chosen on); or land_threshold's fixed P on the detector trained on every train fact.
    3. On the test prompts: the prompt's coarse set, the relation prior, the nearest neighbour and the oracle (each
       prompt's own target under the same counter-example rule, drawn among test facts) at the size of LAND's set for
       that prompt, and the constant set (K = the mean LAND set size on the same test prompts).
    progress: None or a callable(desc) -> context manager with update(), e.g. kn.base.progress.progress."""
    st, hp = config.settings, config.hp
    labelled = validation_split(prompts, st.validation_fraction, st.seed)
    fit_detector, history, fit_losses, fit_pairs, fit_targets = _fit_with_history(labelled, coarse, hp, n_layers,
                                                                                   n_neurons, device)
    validation = labelled[labelled["split"] == "validation"]
    points, sweep = operating_points(fit_detector, validation, coarse, st.threshold_grid, seed=st.seed,
                                     ratio=st.operating_ratio, min_size=st.min_set_size)
    ratio = None
    if st.threshold is not None:
        rule, threshold, reason = "fixed", float(st.threshold), "fixed by the parameter land_threshold"
    elif st.operating_point == "paper_ratio":
        rule, threshold, reason, ratio = "paper_ratio", None, str(points.loc["paper_ratio", "reason"]), st.operating_ratio
    else:
        rule = st.operating_point
        threshold, reason = float(points.loc[rule, "P"]), str(points.loc[rule, "reason"])
        if math.isnan(threshold):
            raise ValueError(f"land_operating_point={rule!r} found no P: {reason}")
    hp = dataclasses.replace(hp, threshold=threshold)

    if rule in THRESHOLD_RULES:  # the detector P was chosen on is the one reported: trained without validation facts
        detector, losses, pairs, training_targets = fit_detector, fit_losses, fit_pairs, fit_targets
        train = labelled[labelled["split"] == "train"]
        detector_facts = "the train facts less the validation facts P was chosen on"
    else:
        detector, losses, pairs, training_targets = _fit(prompts, coarse, hp, n_layers, n_neurons, device)
        train = prompts[prompts["split"] == "train"]
        detector_facts = "every train fact"
    prompt_targets = _by_prompt(train, training_targets, hp)
    targets = counterexamples.fact_mean_targets(prompt_targets, dict(zip(train["prompt_id"], train["fact_id"])))
    removed = removed_share(train, coarse, prompt_targets)

    read = (read_out(detector, ratio=ratio) if ratio is not None else read_out(detector, threshold=threshold))
    ids = prompts["prompt_id"].tolist()
    land_all = read({p: coarse[p] for p in ids})
    test = prompts[prompts["split"] == "test"]
    test_ids = test["prompt_id"].tolist()
    size = {p: len(land_all[p]) for p in test_ids}
    sets = {"coarse": {p: coarse[p] for p in test_ids}, "land": land_all}
    fact_relation = dict(zip(prompts["fact_id"], prompts["relation"]))
    sets["relation_prior"] = detectors.relation_prior_sets(targets, fact_relation, test[["prompt_id", "relation"]], size)
    # the nearest neighbour answers with its match's own training target (its fact's, or its prompt's), LAND's size
    train_key = {p: (f if hp.counterexample_rule == "whole_union" else p)
                 for p, f in zip(train["prompt_id"], train["fact_id"])}
    _, matched = detectors.nearest_neighbour_sets(
        {p: coarse[p] for p in train["prompt_id"]}, train_key, training_targets, {p: coarse[p] for p in test_ids}, 0.0)
    sets["nearest_neighbour"] = {p: top_of_target(training_targets[train_key[matched[p]]], size[p]) for p in test_ids}
    k = max(1, int(round(np.mean(list(size.values()))))) if size else 1  # LAND's size on the prompts compared
    constant = counterexamples.top_k_constant_set(targets, k)
    sets["constant"] = {p: constant for p in test_ids}
    oracle = prompt_targets_for(test, coarse, hp)
    sets["oracle"] = {p: top_of_target(oracle[p], size[p]) for p in test_ids}
    overlap = {m: detectors.overlap_by_fact(test, s, seed=st.seed) for m, s in sets.items()}
    return LandStudy(hp, reason, sweep, detector, losses, len(pairs), targets, removed, sets, overlap, k,
                     operating_points=points, operating_rule=rule, training_targets=training_targets,
                     prompt_targets=prompt_targets, history=history,
                     fact_cluster=dict(zip(prompts["fact_id"], cluster_column(prompts))), ratio=ratio,
                     detector_facts=detector_facts)
