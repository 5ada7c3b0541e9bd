"""kn.experiments.land_robustness: chapter 4's seeded studies over the operating points of kn.experiments.land_operating:
every seed of the detector pipeline, the counter-example ablation, the learning curve, held-out wordings.

API
    seed_study(prompts, coarse, config, n_layers, n_neurons, *, device, seeds) -> SeedStudy   everything seeded in
                                   the detector pipeline, per seed, with verdicts that must hold at every seed
    seed_summary(frame, by, columns) -> DataFrame  mean, sd, min, max and n_seeds over the seeds
    counterexample_ablation(prompts, coarse, config, n_layers, n_neurons, *, device, ks, seeds) -> DataFrame per
                                   (seed, variant): removed share, target size, P and N_L per rule (validation facts)
    learning_curve_seeds(prompts, coarse, config, n_layers, n_neurons, *, device, seeds, fractions, schedules)
                                   -> DataFrame per (setting, fraction, seed, rule), P re-chosen per size
    learning_curve_summary(curve) -> DataFrame per (setting, fraction, rule): means and spread over seeds
    usable_fractions(fractions, n_facts) -> [fraction]   those whose nested sample of n_facts facts holds a fact
    skipped_sizes_note(curve) -> str | None        the learning curve's caption when a size was skipped
    learning_curve_study(study, prompts, coarse, config, *, device) -> DataFrame per (setting, fraction): the main
                                   rule's means over seeds (columns of the former single-seed curve, plus *_sd)
    wording_study(study, prompts, coarse, config, *, device) -> DataFrame per (condition, method, fact)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kn.base import paper
from kn.base.errors import ParameterError
from kn.base.neurons import jaccard
from kn.base.clustered import cluster_column
from kn.base.stats import bootstrap_mean, cluster_bootstrap_mean, cluster_paired_difference, paired_difference
from kn.experiments.near_constant import near_constant_test
from kn.experiments.land_operating import (
    OPERATING_RULES,
    OPPOSITES,
    THRESHOLD_RULES,
    VERDICTS,
    LandConfig,
    LandStudy,
    StudySettings,
    _fit,
    _means,
    _nanmean,
    operating_points,
    point_read_out,
)
from kn.methods import counterexamples, detectors, land, wordings
from kn.methods.counterexamples import (
    _by_prompt,
    _key_fact,
    removed_share,
    training_data,
    validation_split,
)
from kn.methods.detectors import OVERLAP_COLUMNS

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
    holds: pd.DataFrame  # [rule, verdict]: n_seeds, n_measured, n_true, holds_at_every_seed, holds_at_no_seed,
    # n_opposite, opposite_at_every_seed (its opposite, OPPOSITES: only then does the verdict "not hold")
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
              seed: int, cluster_of: Mapping | None = None) -> dict:
    """One seed's intervals over test facts, resampled by cluster (``cluster_of`` {fact_id: cluster}), then fact, and
    the verdicts each supports: a verdict is True only where its interval excludes the null from two clusters or
    more."""
    clusters = [cluster_of.get(f, f) for f in land_frame.index] if cluster_of is not None else None

    def diff(a, b):
        if clusters is None:
            return paired_difference(a, b, n_boot=n_boot, seed=seed)
        return cluster_paired_difference(a, b, clusters, n_boot=n_boot, seed=seed)

    gain = diff(land_frame["fact_specific"], coarse_frame["fact_specific"])
    over_constant = diff(land_frame["fact_specific"], constant_frame["fact_specific"])
    within = (bootstrap_mean(land_frame["within"], n_boot=n_boot, seed=seed) if clusters is None else
              cluster_bootstrap_mean(land_frame["within"], clusters, n_boot=n_boot, seed=seed))
    return {"gain_over_coarse": gain.mean, "gain_lo": gain.lo, "gain_hi": gain.hi,
            "within": within.mean, "within_lo": within.lo, "within_hi": within.hi,
            "gain_over_constant": over_constant.mean, "gain_over_constant_lo": over_constant.lo,
            "land_gains_over_coarse": bool(gain.decidable and gain.lo > 0),
            "land_loses_to_coarse": bool(gain.decidable and gain.hi < 0),
            "within_below_paper_claim": bool(within.decidable and within.hi < paper.LAND_OVERLAP_CLAIM),
            "within_above_paper_claim": bool(within.decidable and within.lo > paper.LAND_OVERLAP_CLAIM),
            "land_gains_over_constant": bool(over_constant.decidable and over_constant.lo > 0),
            "land_loses_to_constant": bool(over_constant.decidable and over_constant.hi < 0)}


def _evaluate_seed(detectors_by_rule: Mapping, points: pd.DataFrame, prompts: pd.DataFrame, coarse: dict,
                   fact_targets: Mapping, st: StudySettings):
    """Per rule: test-fact overlap of LAND (read from detectors_by_rule[rule], the detector the rule was fixed on),
    the coarse sets and the constant set of LAND's mean size on the same test prompts (from fact_targets[rule], that
    detector's train targets), and the near-constant test where it is defined (not for a fixed k: an input holding no
    neuron still gets k of them, ranked among equal scores). Returns (overlap frames, near-constant frames, constant
    sizes, realised N_L / N_s on the test prompts) keyed by rule."""
    test = prompts[prompts["split"] == "test"]
    train = prompts[prompts["split"] == "train"]
    test_inputs = {p: coarse[p] for p in test["prompt_id"]}
    coarse_overlap = detectors.overlap_by_fact(test, test_inputs, seed=st.seed)
    n_s = float(np.mean([len(s) for s in test_inputs.values()])) if test_inputs else float("nan")
    overlap, near, sizes, realised = {}, {}, {}, {}
    for rule, point in points.iterrows():
        read = point_read_out(detectors_by_rule[rule], point)
        if read is None:
            continue
        land_test = read(test_inputs)
        n_l = float(np.mean([len(s) for s in land_test.values()])) if land_test else float("nan")
        k = max(1, int(round(n_l))) if land_test else 1
        constant = counterexamples.top_k_constant_set(fact_targets[rule], k)
        sizes[rule], realised[rule] = k, n_l / n_s if n_s else float("nan")
        overlap[rule] = {"land": detectors.overlap_by_fact(test, land_test, seed=st.seed), "coarse": coarse_overlap,
                         "constant": detectors.overlap_by_fact(test, {p: constant for p in test_inputs}, seed=st.seed)}
        if pd.isna(point["k"]):
            near[rule] = near_constant_test(read, test, coarse, train=train, constant=constant, seed=st.seed)
    return overlap, near, sizes, realised


def seed_study(prompts: pd.DataFrame, coarse: dict, config: LandConfig, n_layers: int, n_neurons: int, *,
               device="cpu", seeds: Sequence[int] | None = None) -> SeedStudy:
    """At each seed s of ``seeds`` (default land_seeds): the validation split, counter-example draw and detector
    initialisation of seed s; LAND fitted without the validation facts and the four read-outs chosen on them
    (:func:`operating_points`); each read-out reported on the detector it was fixed on (the ratio read-out, which
    chooses nothing, on LAND trained on every train fact; the others on the fitted detector); on the test facts, per
    read-out: LAND, the coarse sets and the constant set of LAND's mean size there, the realised N_L / N_s; the
    near-constant test where it is defined (Chen et al.'s consistency classes: kn.experiments.consistency_split, on
    the main study). A verdict of :data:`VERDICTS` may be stated only where ``holds`` says it holds at every seed."""
    st, hp0 = config.settings, config.hp
    seeds = list(st.seeds if seeds is None else seeds)
    cluster_of = dict(zip(prompts["fact_id"], cluster_column(prompts)))
    points_rows, overlap_rows, near_rows, per_seed, verdicts, removed = [], [], [], [], [], []
    for seed in seeds:
        hp = dataclasses.replace(hp0, seed=int(seed))
        labelled = validation_split(prompts, st.validation_fraction, int(seed))
        fit_detector, _, _, fit_training_targets = _fit(labelled, coarse, hp, n_layers, n_neurons, device)
        validation = labelled[labelled["split"] == "validation"]
        points, _ = operating_points(fit_detector, validation, coarse, st.threshold_grid, seed=st.seed,
                                     ratio=st.operating_ratio, min_size=st.min_set_size)
        detector, _, _, training_targets = _fit(prompts, coarse, hp, n_layers, n_neurons, device)
        train = prompts[prompts["split"] == "train"]
        prompt_targets = _by_prompt(train, training_targets, hp)
        fact_targets = counterexamples.fact_mean_targets(prompt_targets, dict(zip(train["prompt_id"], train["fact_id"])))
        fit = labelled[labelled["split"] == "train"]
        fit_targets = counterexamples.fact_mean_targets(_by_prompt(fit, fit_training_targets, hp),
                                                        dict(zip(fit["prompt_id"], fit["fact_id"])))
        on_all = {rule: rule == "paper_ratio" for rule in points.index}  # only the ratio read-out chooses nothing
        overlap, near, sizes, realised = _evaluate_seed(
            {rule: detector if on_all[rule] else fit_detector for rule in points.index}, points, prompts, coarse,
            {rule: fact_targets if on_all[rule] else fit_targets for rule in points.index}, st)
        points_rows.append(points.reset_index().assign(
            seed=seed, realised_ratio=[realised.get(r, float("nan")) for r in points.index],
            detector=["every train fact" if on_all[r] else "fit facts (validation held out)" for r in points.index]))
        removed.append({"seed": seed, "removed_share": removed_share(train, coarse, prompt_targets),
                        **{f"constant_k_{rule}": k for rule, k in sizes.items()}})
        for rule, frames in overlap.items():
            for method, frame in frames.items():
                overlap_rows.append(frame.reset_index().assign(seed=seed, rule=rule, method=method))
                per_seed.append({"seed": seed, "rule": rule, "method": method, **_means(frame)})
            if rule in near:
                near_rows.append(near[rule].reset_index().assign(seed=seed, rule=rule))
            verdicts.append({"seed": seed, "rule": rule, **_verdicts(frames["land"], frames["coarse"],
                                                                     frames["constant"], n_boot=st.bootstrap_samples,
                                                                     seed=st.seed, cluster_of=cluster_of)})
    verdict_frame = pd.DataFrame(verdicts)
    holds = {}
    for rule, part in verdict_frame.groupby("rule", sort=False):
        for name in VERDICTS:
            n_true = int(part[name].sum())  # a seed where the rule found no P counts against "every seed"
            n_opposite = int(part[OPPOSITES[name]].sum())
            holds[(rule, name)] = {"n_seeds": len(seeds), "n_measured": len(part), "n_true": n_true,
                                   "holds_at_every_seed": n_true == len(seeds), "holds_at_no_seed": n_true == 0,
                                   "n_opposite": n_opposite, "opposite_at_every_seed": n_opposite == len(seeds)}
    holds_frame = pd.DataFrame.from_dict(holds, orient="index")
    holds_frame.index = holds_frame.index.set_names(["rule", "verdict"])
    _lead = ["seed", "rule"]
    return SeedStudy(
        seeds=seeds, points=_first(pd.concat(points_rows, ignore_index=True), _lead),
        overlap=_first(pd.concat(overlap_rows, ignore_index=True), _lead + ["method"]),
        near_constant=_first(pd.concat(near_rows, ignore_index=True), _lead),
        per_seed=pd.DataFrame(per_seed), verdicts=verdict_frame, holds=holds_frame,
        removed=pd.DataFrame(removed))


def _first(frame: pd.DataFrame, columns: list) -> pd.DataFrame:
    """``frame`` with ``columns`` moved to the front."""
    return frame[columns + [c for c in frame.columns if c not in columns]]


# --------------------------------------------------------------------------- counter-example ablation


def counterexample_ablation(prompts: pd.DataFrame, coarse: dict, config: LandConfig, n_layers: int,
                            n_neurons: int, *, device="cpu", ks: Sequence[int] | None = None,
                            seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """The counter-example rule, ablated on the VALIDATION facts only (the test facts are not touched).

    Variants: rule same_template with each k of ``ks`` (default land_counterexample_ablation: 0, 1, 2, 5) and rule
    whole_union with params.land_counterexamples other facts (every template of each). Per seed of ``seeds``
    (default land_seeds) and variant: the fit facts' targets (counter-examples drawn among them), LAND fitted on them,
    and the read-outs of :func:`operating_points` on the validation facts.
    Returns one row per (seed, variant): seed, variant, rule, k, removed_share (:func:`removed_share` on the fit
    facts), target_size (mean neurons per target), then per threshold rule r: P_r and N_L_r (mean validation set
    size at P_r), N_L_paper_ratio (ratio x N_s by construction, up to rounding), and within, fact_specific,
    across_other_relation at paper_ratio."""
    st, hp0 = config.settings, config.hp
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
            row["N_L_paper_ratio"] = float(points.loc["paper_ratio", "size"])
            row.update({c: float(points.loc["paper_ratio", c])
                        for c in ("within", "fact_specific", "across_other_relation")})
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- learning curve


_CURVE_METRICS = ("size", "within", "across_same_relation", "across_other_relation", "fact_specific",
                  "same_template_other_fact")


def learning_curve_seeds(prompts: pd.DataFrame, coarse: dict, config: LandConfig, n_layers: int, n_neurons: int, *,
                         device="cpu", seeds: Sequence[int] | None = None, fractions: Sequence[float] | None = None,
                         schedules: Mapping[str, land.LandHyperParams] | None = None) -> pd.DataFrame:
    """LAND trained on nested seeded shares of the fit facts (train facts less the validation facts), the read-out
    re-chosen at every size on the validation facts (all four rules of :func:`operating_points`), each evaluated on
    the test facts.

    seeds: default StudySettings.learning_curve_seeds (land_curve_seeds of them); a seed fixes the validation split,
    the counter-example draw, the nested samples (kn.methods.detectors.nested_fact_samples) and the initialisation.
    fractions: default learning_curve_fractions. schedules: {setting: LandHyperParams}, default the paper's optimiser
    (kn.base.paper.LAND_OPTIMISER: 3 epochs, lr 1e-4, batch 8) and this run's; their seed is replaced by each seed.
    Targets are built once per seed over all fit facts, so a fact's target is the same at every size: only the
    number of training facts changes.
    Returns one row per (setting, fraction, seed, rule): setting, fraction, seed, rule, n_train_facts,
    n_train_prompts, P, k, validation_size, and the test means of size, within, across_same_relation,
    across_other_relation, fact_specific, same_template_other_fact (nan where the rule found no P).
    A fraction that leaves no fit fact (fewer known facts than the parameters declared; kn.book.preflight refuses
    the fractions the declared counts cannot fill) is skipped: attrs["skipped"] = {fraction: n fit facts}."""
    st, hp = config.settings, config.hp
    seeds = list(st.learning_curve_seeds if seeds is None else seeds)
    fractions = list(st.learning_curve_fractions if fractions is None else fractions)
    if schedules is None:
        schedules = {"paper's optimiser": dataclasses.replace(hp, **paper.LAND_OPTIMISER), "this run's": hp}
    test = prompts[prompts["split"] == "test"]
    test_inputs = {p: coarse[p] for p in test["prompt_id"]}
    rows, skipped = [], {}
    for seed in seeds:
        labelled = validation_split(prompts, st.validation_fraction, int(seed))
        fit = labelled[labelled["split"] == "train"]
        validation = labelled[labelled["split"] == "validation"]
        seeded = dataclasses.replace(hp, seed=int(seed))
        pairs, targets, _ = training_data(labelled, coarse, seeded)
        fact_of = _key_fact(fit, seeded)
        n_fit = len({fact_of[key] for _, key in pairs})
        usable = usable_fractions(fractions, n_fit)
        skipped.update({float(f): n_fit for f in fractions if f not in usable})
        if not usable:
            raise ParameterError(f"parameter learning_curve_fractions={list(fractions)!r}: no share leaves a fact "
                                 f"of the {n_fit} LAND is fitted on (the known facts are fewer than declared)")
        samples = detectors.nested_fact_samples([fact_of[key] for _, key in pairs], usable, seed=int(seed))
        for name, schedule in schedules.items():
            schedule = dataclasses.replace(schedule, seed=int(seed))
            for fraction, chosen in zip(usable, samples):
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
    frame = pd.DataFrame(rows)
    frame.attrs["skipped"] = skipped
    return frame


def usable_fractions(fractions: Sequence[float], n_facts: int) -> list:
    """The fractions whose nested sample of ``n_facts`` facts (kn.methods.detectors.nested_fact_samples) holds a fact."""
    def leaves_a_fact(fraction) -> bool:
        try:
            detectors.nested_fact_samples(range(n_facts), [fraction], seed=0)
        except ValueError:
            return False
        return True

    return [f for f in fractions if leaves_a_fact(f)]


def skipped_sizes_note(curve: pd.DataFrame) -> str | None:
    """The caption of the learning curve when it skipped a size (learning_curve_seeds' attrs["skipped"]), else None."""
    skipped = curve.attrs.get("skipped") or {}
    if not skipped:
        return None
    shown = ", ".join(f"{f:g} of {n} fit facts" for f, n in sorted(skipped.items()))
    return (f"Sizes skipped, as they leave no fact: {shown} (the known facts are fewer than the parameters "
            "declared)")


def learning_curve_summary(curve: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, fraction, rule) of :func:`learning_curve_seeds`' frame: n_train_facts and n_train_prompts
    (means over seeds), and mean, sd, min, max over seeds of P and the test metrics (:func:`seed_summary`)."""
    by = ["setting", "fraction", "rule"]
    out = seed_summary(curve, by, ["P", *_CURVE_METRICS])
    sizes = curve.groupby(by, sort=False)[["n_train_facts", "n_train_prompts"]].mean()
    sizes.columns = pd.MultiIndex.from_tuples([(c, "mean") for c in sizes.columns])
    return pd.concat([sizes, out], axis=1)


def learning_curve_study(study: LandStudy, prompts: pd.DataFrame, coarse: dict, config: LandConfig, *,
                         device="cpu") -> pd.DataFrame:
    """The learning curve of the main read-out (study.operating_rule; land_operating_point where P was fixed), means
    over the curve's seeds, one row per (setting, fraction) in the former layout: setting, fraction, n_train_facts,
    n_train_prompts, size, within, across_same_relation, across_other_relation, fact_specific,
    same_template_other_fact, plus <metric>_sd and n_seeds. The full frame is :func:`learning_curve_seeds`'."""
    st = config.settings
    rule = study.operating_rule if study.operating_rule in OPERATING_RULES else st.operating_point
    curve = learning_curve_seeds(prompts, coarse, config, study.detector.n_layers, study.detector.n_neurons,
                                 device=device)
    part = curve[curve["rule"] == rule]
    grouped = part.groupby(["setting", "fraction"], sort=False)
    out = grouped[["n_train_facts", "n_train_prompts", *_CURVE_METRICS]].mean()
    sd = grouped[list(_CURVE_METRICS)].std()
    sd.columns = [f"{c}_sd" for c in sd.columns]
    out = pd.concat([out, sd], axis=1)
    out["n_seeds"] = grouped.size()
    out[["n_train_facts", "n_train_prompts"]] = out[["n_train_facts", "n_train_prompts"]].round().astype(int)
    out = out.reset_index()
    out.attrs["skipped"] = dict(curve.attrs.get("skipped") or {})
    return out


# --------------------------------------------------------------------------- new facts, new wordings


def wording_study(study: LandStudy, prompts: pd.DataFrame, coarse: dict, config: LandConfig, *,
                  device="cpu") -> pd.DataFrame:
    """New facts against new wordings. One template per relation is held out of every train fact (kn.methods.detectors.
    wording_holdout); LAND is trained on the other nine, targets from the nine (the held-out wording is neither an
    input nor part of a target, nor a counter-example). Then, per fact, the overlap of LAND's sets and of the coarse
    sets:
      "new facts": the test facts (kn.methods.detectors.overlap_by_fact);
      "new wordings": each held-out prompt against its fact's seen prompts (kn.methods.detectors.heldout_overlap_by_fact).
    Returns a long DataFrame: condition, method ("coarse" / "land"), fact_id, OVERLAP_COLUMNS and cluster."""
    hp = study.hp
    seed = config.settings.seed
    heldout = wordings.wording_holdout(prompts, seed=seed)
    seen, _ = wordings.split_for_wordings(prompts, heldout)
    if hp.counterexample_rule == "whole_union":
        train = prompts[prompts["split"] == "train"]
        counter = counterexamples.draw_counterexamples(train, hp.counterexamples, hp.seed)
        targets = wordings.wording_targets(prompts, coarse, heldout, counter)
        pairs = [(coarse[p], f) for p, f in zip(seen["prompt_id"], seen["fact_id"])]
    else:  # counter prompts drawn among the seen prompts: same template, so never the held-out one
        targets = counterexamples.build_prompt_targets(seen, coarse, counterexamples.counter_prompts_for(seen, hp.counterexamples, hp.seed))
        pairs = [(coarse[p], p) for p in seen["prompt_id"]]
    detector, _ = land.train_land(pairs, targets, study.detector.n_layers, study.detector.n_neurons, hp, device=device)
    ids = prompts["prompt_id"].tolist()
    land_sets = study.read(detector)({p: coarse[p] for p in ids})  # the main read-out, on this detector
    test = prompts[prompts["split"] == "test"]
    train = prompts[prompts["split"] == "train"]
    frames = []
    for method, sets in (("coarse", coarse), ("land", land_sets)):
        for condition, frame in (("new facts", detectors.overlap_by_fact(test, sets, seed=seed)),
                                 ("new wordings", detectors.heldout_overlap_by_fact(train, sets, heldout,
                                                                                    seed=seed))):
            frames.append(frame.reset_index().assign(condition=condition, method=method))
    out = pd.concat(frames, ignore_index=True)
    return out.assign(cluster=out["fact_id"].map(dict(zip(prompts["fact_id"], cluster_column(prompts)))))
