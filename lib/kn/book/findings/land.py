"""kn.book.findings.land: chapter 4's tables (Tables 6 and 7, the detectors, operating points, seeds, the near-constant
test) and its summary (with the consistency split's contrasts and claims: kn.book.findings.consistency)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kn.base import paper
from kn.base.clustered import cluster_sign_flip_p, min_sign_flip_p
from kn.base.stats import Interval, cluster_paired_difference, compare, holm, paired_difference, reaches
from kn.book.findings.common import _holds, clusters_for, interval_table
from kn.book.findings.consistency import consistency_claims, consistency_contrast_table
from kn.book.findings.overlap import _OVERLAP, overlap_rows
from kn.book.summaries import Claim, LandSummary
from kn.experiments.land_operating import DETECTORS, VERDICTS


def _clusters(study, frame: pd.DataFrame):
    """The cluster of each fact (row) of a per-fact frame of ``study``, or None for a study that records none."""
    cluster_of = getattr(study, "fact_cluster", None) or {}
    return clusters_for(frame, cluster_of) if cluster_of else None


def _paired(study, a: pd.Series, b: pd.Series, *, n_boot: int, seed: int) -> Interval:
    """a - b over the facts of a per-fact frame, resampled by cluster then fact (by fact where none is recorded)."""
    clusters = _clusters(study, a.to_frame())
    if clusters is None:
        return paired_difference(a, b, n_boot=n_boot, seed=seed)
    return cluster_paired_difference(a, b, clusters, n_boot=n_boot, seed=seed)


def detector_sets_table(study) -> pd.DataFrame:
    """The per-prompt sets chapters 5 and 6 use: LAND (every prompt), the relation prior and the nearest neighbour (test
    prompts), as rows (prompt_id, method, neuron_ids)."""
    rows = []
    for method in ("land", "relation_prior", "nearest_neighbour"):
        for prompt_id, s in study.sets[method].items():
            rows.append({"prompt_id": prompt_id, "method": method, "neuron_ids": np.array(sorted(s), dtype=np.int64)})
    return pd.DataFrame(rows)


def table6(study) -> pd.DataFrame:
    """LAND's Table 6 beside this run's detector: L, H, R, parameters (= L x 2 x H x R)."""
    d = study.detector
    ours = pd.DataFrame([{"L": d.n_layers, "H": d.n_neurons, "R": d.rank, "parameters": d.n_parameters}], index=["ours"])
    return pd.concat([paper.LAND_TABLE6, ours])


def table7(prompts: pd.DataFrame, coarse: dict, land_sets: dict, *, n_boot: int, seed: int) -> pd.DataFrame:
    """LAND's Table 7 rows beside ours on the test facts: coarse sets (N_s, N_so, R_so) and LAND sets (N_L, N_Lo,
    R_Lo), means over facts with bootstrap intervals."""
    test = prompts[prompts["split"] == "test"]
    before = interval_table(overlap_rows(test, coarse), ["N_s", "N_so", "R_so"], n_boot=n_boot, seed=seed)
    after = interval_table(overlap_rows(test, land_sets), ["N_s", "N_so", "R_so"], n_boot=n_boot, seed=seed)
    rows = {source: {"N_s": t4["N_s"], "N_so": t4["N_so"], "R_so": t4["R_so"], **paper.LAND_TABLE7.loc[source]}
            for (source, t4) in paper.LAND_TABLE4.iterrows()}
    rows["ours, test facts"] = {**before, "N_L": after["N_s"], "N_Lo": after["N_so"], "R_Lo": after["R_so"]}
    return pd.DataFrame.from_dict(rows, orient="index")


def land_case_table(prompts: pd.DataFrame, coarse: dict, land_sets: dict, n_neurons: int, fact: str = "",
                    n_prompts: int = 3, n_shown: int = 12) -> pd.DataFrame:
    """Table 8: three prompts of one test fact (``fact``, else the one answered best), coarse and LAND set sizes and
    the LAND neurons (layer, index), * where all three share one."""
    test = prompts[prompts["split"] == "test"]
    fact = fact or test.groupby("fact_id")["correct"].mean().idxmax()
    case = prompts[prompts["fact_id"] == fact].head(n_prompts)
    shared = frozenset.intersection(*[land_sets[p] for p in case["prompt_id"]])
    rows = []
    for prompt_id, prompt in zip(case["prompt_id"], case["prompt"]):
        ids = sorted(land_sets[prompt_id])
        text = ", ".join(f"({i // n_neurons}, {i % n_neurons}){'*' if i in shared else ''}" for i in ids[:n_shown])
        rows.append({"prompt": prompt, "coarse size": len(coarse[prompt_id]), "LAND size": len(ids),
                     "LAND neurons (layer, index)": text + (" ..." if len(ids) > n_shown else "")})
    return pd.DataFrame(rows).set_index("prompt")


def detector_table(study, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Every detector on the test facts: size and overlaps with bootstrap intervals over facts."""
    return pd.DataFrame.from_dict({DETECTORS[m]: interval_table(study.overlap[m], _OVERLAP,
                                                                clusters=_clusters(study, study.overlap[m]),
                                                                n_boot=n_boot, seed=seed)
                                   for m in DETECTORS if m in study.overlap}, orient="index")


_LAND_PAIRS = (("land", "relation_prior"), ("land", "nearest_neighbour"), ("land", "coarse"), ("land", "constant"),
               ("oracle", "land"))


def detector_comparisons(study, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Paired differences (over test facts) of fact-specific overlap: LAND against each rule, and the oracle's
    headroom over LAND. Columns: difference (cluster Interval), p (exact cluster sign-flip, unadjusted: chapter 4's
    tested claims carry Holm's), verdict (a sentence; a difference only where p < 0.05 and the interval agree)."""
    rows = {}
    for a, b in _LAND_PAIRS:
        left, right = study.overlap[a]["fact_specific"], study.overlap[b]["fact_specific"]
        diff = _paired(study, left, right, n_boot=n_boot, seed=seed)
        p, _ = _sign_flip(study, left - right)
        words = (compare(DETECTORS[a], DETECTORS[b], diff, fmt="{:.1%}") if p < 0.05 else
                 f"{DETECTORS[a]} and {DETECTORS[b]} are not distinguishable here (difference "
                 f"{diff.format('{:.1%}')}, n = {diff.n}, sign-flip p = {p:.3g}).")
        rows[f"{DETECTORS[a]} - {DETECTORS[b]}"] = {"difference": diff, "p": p, "verdict": words}
    return pd.DataFrame.from_dict(rows, orient="index")


def wording_table(wordings: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """New facts against new wordings: per (condition, method) the overlap means with intervals over facts."""
    rows = {}
    for (condition, method), part in wordings.groupby(["condition", "method"], sort=True):
        rows[(condition, "LAND" if method == "land" else "coarse set")] = interval_table(
            part, ["size", "within", "across_same_relation", "fact_specific"], n_boot=n_boot, seed=seed)
    return pd.DataFrame.from_dict(rows, orient="index")


def seed_range(mean: float, lo: float, hi: float, fmt: str) -> str:
    """A metric over seeds as "mean [min, max]": "–" where no seed measured it (nan: no fact of another cluster, say),
    and the value alone where every seed gives it (a range of seeds, never printed as an interval of zero width; the
    tables' captions say so)."""
    if any(math.isnan(float(v)) for v in (mean, lo, hi)):
        return "–"
    if fmt.format(lo) == fmt.format(hi):
        return fmt.format(mean)
    return f"{fmt.format(mean)} [{fmt.format(lo)}, {fmt.format(hi)}]"


_OPERATING_NAMES = {"paper_ratio": "(a) the paper's size, each prompt's top ratio x |coarse set|",
                    "max_within": "(b) max within-fact overlap",
                    "fact_specific": "(c) max fact-specific (the former rule)", "topk": "(d) top-k, k = N_s"}


# How chapter 4 shows operating_point_table's columns that are not "mean [min, max]" text: the seed count is a count.
OPERATING_POINT_FORMATS = {"seeds": "{:d}"}


def operating_point_table(seeds, columns=("size", "within", "across_same_relation", "across_other_relation",
                                          "fact_specific")) -> pd.DataFrame:
    """Per (read-out, method): each metric over test facts as "mean over seeds [min, max]" (n seeds); for LAND, the
    detector the read-out was fixed on and reported on, and the realised N_L / N_s on the test facts beside the
    target (the paper's ratio for read-out (a); the other read-outs have none)."""
    summary = seeds.summary(list(columns))
    points = seeds.points
    rows = {}
    for (rule, method), row in summary.iterrows():
        cells = {}
        for c in columns:
            fmt = "{:.1f}" if c == "size" else "{:.1%}"
            cells[c] = seed_range(row[(c, 'mean')], row[(c, 'min')], row[(c, 'max')], fmt)
        mine = points[points["rule"] == rule]
        if method == "land" and "realised_ratio" in mine:
            ratio = mine["realised_ratio"]
            target = mine["ratio"].dropna() if "ratio" in mine else pd.Series(dtype=float)
            cells["N_L / N_s, test facts"] = seed_range(ratio.mean(), ratio.min(), ratio.max(), "{:.2f}")
            cells["N_L / N_s, target"] = f"{target.iloc[0]:.2f}" if len(target) else "–"
            cells["detector"] = ", ".join(sorted(set(mine["detector"])))
        else:
            cells["N_L / N_s, test facts"] = cells["N_L / N_s, target"] = cells["detector"] = "–"
        cells["seeds"] = int(row[("n_seeds", "")])
        rows[(_OPERATING_NAMES.get(rule, rule), method)] = cells
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["read-out", "sets"])
    return frame


def _verdict_words(key: str) -> str:

    return VERDICTS.get(key, key).replace("LAND's", "that LAND's", 1)


def _seed_reading(r) -> str:
    """A verdict over seeds: it holds at every seed; it does not hold where its opposite holds at every seed;
    otherwise it is not distinguishable here, at k of n seeds (never significant is not refuted)."""
    if r.holds_at_every_seed:
        return "holds (at every seed)"
    if getattr(r, "opposite_at_every_seed", False):
        return "does not hold (its opposite holds at every seed)"
    return f"not distinguishable here (holds at {int(r.n_true)} of {int(r.n_seeds)} seeds)"


def seed_holds_table(seeds) -> pd.DataFrame:
    """Per (read-out, verdict): at how many seeds it holds, and "every seed" / "no seed" / "some seeds"."""
    table = seeds.holds.reset_index()
    out = pd.DataFrame({"read-out": table["rule"].map(lambda r: _OPERATING_NAMES.get(r, r)),
                        "verdict": table["verdict"].map(lambda v: VERDICTS.get(v, v)),
                        "holds at": [f"{int(t)} of {int(m)} seeds" for t, m in zip(table["n_true"], table["n_measured"])],
                        "reading": [_seed_reading(r) for r in table.itertuples()]})
    return out.set_index(["read-out", "verdict"])


def near_constant_table(seeds) -> pd.DataFrame:
    """Per read-out, "mean over seeds [min, max]" of the means over test facts: Jaccard with the set LAND gives a generic
    input, Jaccard with the constant set of the same size, the overlap with other relations' prompts, and the size."""
    part = seeds.near_constant.groupby(["seed", "rule"])[["generic_jaccard", "constant_jaccard",
                                                          "across_other_relation", "size"]].mean()
    names = {"generic_jaccard": "Jaccard with the generic input's set", "constant_jaccard": "Jaccard with the constant set",
             "across_other_relation": "overlap with other relations", "size": "set size (neurons)"}
    rows = {}
    for rule, g in part.groupby("rule", sort=False):
        rows[_OPERATING_NAMES.get(rule, rule)] = {
            names[c]: seed_range(g[c].mean(), g[c].min(), g[c].max(), "{:.2f}") for c in names}
    return pd.DataFrame.from_dict(rows, orient="index")


def land_summary(params, study, table7_frame: pd.DataFrame, curve: pd.DataFrame, wordings: pd.DataFrame,
                 seconds: float, seeds=None, consistency_split=None) -> LandSummary:
    """Chapter 4's record: Tables 6-7, the detectors, the learning curve, the wordings, the seeds' read-outs, the
    consistency split's contrasts (kn.experiments.consistency_split, when given), and the claims."""

    n_boot, seed = params.bootstrap_samples, params.seed
    ours = table7_frame.loc["ours, test facts"]
    detectors = {m: interval_table(study.overlap[m], _OVERLAP, clusters=_clusters(study, study.overlap[m]),
                                   n_boot=n_boot, seed=seed) for m in study.overlap}
    r_lo = ours["R_Lo"]
    land_fs = detectors["land"]["fact_specific"]
    rule = _OPERATING_NAMES.get(str(getattr(study, "operating_rule", "")), "the run's read-out")
    scale = (f"at read-out {rule}, on {int(table7_frame.loc['ours, test facts', 'N_L'].n)} test facts and "
             f"{study.train_pairs} training prompts (the paper: about 250,000)")
    claims = [reaches_claim(f"LAND's overlap, {scale}", r_lo, paper.LAND_OVERLAP_CLAIM,
                            what="R_Lo (the overlap of the LAND sets of a test fact's paraphrases) =",
                            source="LAND (GPT-2)")]
    if seeds is not None:
        holds = seeds.holds.reset_index()
        for r in holds[holds["rule"] == getattr(study, "operating_rule", "")].itertuples():
            opposite = bool(getattr(r, "opposite_at_every_seed", False))
            claims.append(Claim(f"over seeds: {r.verdict}", f"Over {r.n_seeds} seeds of the detector pipeline, "
                                f"{_verdict_words(r.verdict)}: {_seed_reading(r)}.", None,
                                True if r.holds_at_every_seed else (False if opposite else None)))
    claims += tested_overlap_claims(study, land_fs, n_boot=n_boot, seed=seed)
    trend = curve[curve["setting"] == "this run's"].sort_values("n_train_prompts")
    if len(trend) >= 2:
        first, last = trend.iloc[0], trend.iloc[-1]
        claims.append(Claim("LAND with more training data",
                            f"From {int(first['n_train_prompts'])} to {int(last['n_train_prompts'])} training prompts, "
                            f"LAND's within-fact overlap on test facts moves from {first['within']:.1%} to "
                            f"{last['within']:.1%} and its fact-specific overlap from {first['fact_specific']:.1%} to "
                            f"{last['fact_specific']:.1%} (means over {int(last.get('n_seeds', 1))} seed(s) per size, at the "
                            "main read-out: " + ("nothing re-chosen" if getattr(study, "ratio", None) is not None else
                                                 "P re-chosen on validation facts at each size")
                            + "); the paper had about 250,000 training prompts.", None, None))
    table = wording_table(wordings, n_boot=n_boot, seed=seed)
    if ("new facts", "LAND") in table.index and ("new wordings", "LAND") in table.index:
        facts_fs, words_fs = table.loc[("new facts", "LAND"), "fact_specific"], table.loc[("new wordings", "LAND"),
                                                                                          "fact_specific"]
        claims.append(Claim("new wordings against new facts",
                            f"LAND's fact-specific overlap is {words_fs.format('{:.1%}')} on new wordings of train facts "
                            f"and {facts_fs.format('{:.1%}')} on new facts.", None, None))
    if consistency_split is not None:
        claims += consistency_claims(consistency_split)
    return LandSummary(
        n_layers=study.detector.n_layers, n_neurons=study.detector.n_neurons, rank=study.detector.rank,
        n_parameters=study.detector.n_parameters, train_pairs=study.train_pairs,
        threshold=None if study.hp.threshold is None else float(study.hp.threshold),
        threshold_reason=study.threshold_reason, validation_sweep=study.validation_sweep.reset_index().to_dict("records"),
        final_loss=float(np.mean(study.losses[-20:])),
        table7={k: ours[k] for k in ["N_s", "N_so", "R_so", "N_L", "N_Lo", "R_Lo"]}, detectors=detectors,
        constant_k=study.constant_k, learning_curve=curve.to_dict("records"),
        wordings={f"{c} / {m}": v for (c, m), v in table.to_dict("index").items()}, claims=claims, seconds=seconds,
        operating_rule=str(getattr(study, "operating_rule", "")),
        seed_points=[] if seeds is None else operating_point_table(seeds).reset_index().to_dict("records"),
        seed_holds=[] if seeds is None else seed_holds_table(seeds).reset_index().to_dict("records"),
        consistency=[] if consistency_split is None else
        consistency_contrast_table(consistency_split).reset_index().to_dict("records"))


# Chapter 4's claims on LAND's fact-specific overlap that are tested: each holds only where its exact cluster sign-flip
# p, Holm-corrected over these three, is below 0.05 and its cluster interval excludes 0 on the claimed side.
TESTED_OVERLAP_CLAIMS = ("LAND is specific to the fact", "LAND beats the relation prior",
                         "LAND beats the nearest neighbour")


def _sign_flip(study, values: pd.Series) -> tuple[float, int]:
    """(exact cluster sign-flip p, clusters) of per-fact values: each fact's cluster (relations sharing facts merged),
    or each fact its own where the study records none."""
    clusters = _clusters(study, values.to_frame())
    clusters = np.arange(len(values)) if clusters is None else np.asarray(clusters)
    return cluster_sign_flip_p(values.to_numpy(float), clusters), len(set(clusters[values.notna().to_numpy()].tolist()))


def tested_overlap_claims(study, land_fs: Interval, *, n_boot: int, seed: int) -> list[Claim]:
    """The three TESTED_OVERLAP_CLAIMS over test facts (higher is better in each): LAND's fact-specific overlap
    against 0, and LAND minus the relation prior and minus the nearest neighbour (both at LAND's size for the prompt).
    Each: the cluster interval, the exact cluster sign-flip p (kn.base.clustered), Holm's p over the three; holds
    True / False only where Holm's p < 0.05 and the interval agree, else None (not distinguishable here)."""
    land = study.overlap["land"]["fact_specific"]
    values = [land] + [land - study.overlap[b]["fact_specific"] for _, b in _LAND_PAIRS[:2]]
    intervals = [land_fs] + [_paired(study, land, study.overlap[b]["fact_specific"], n_boot=n_boot, seed=seed)
                             for _, b in _LAND_PAIRS[:2]]
    tests = [_sign_flip(study, v) for v in values]
    p_holm = holm(np.array([p for p, _ in tests]))
    claims = []
    for name, interval, (p, k), ph in zip(TESTED_OVERLAP_CLAIMS, intervals, tests, p_holm):
        decided = bool(ph < 0.05) and interval.excludes_zero and interval.decidable
        holds = _holds(interval) if decided else None
        test = (f"cluster sign-flip p = {p:.3g}, Holm over chapter 4's three tested claims {ph:.3g}; {k} clusters, "
                f"so no p below {min_sign_flip_p(k):.3g} is possible here")
        if name == TESTED_OVERLAP_CLAIMS[0]:
            text = (f"LAND's fact-specific overlap (within-fact minus same-relation across-fact) is "
                    f"{interval.format('{:.1%}')} ({test}): " + (
                        "its sets depend on the fact beyond its relation." if holds else
                        "below 0: its sets are less specific than a set fixed per relation." if holds is False else
                        "not distinguishable here from a set fixed per relation."))
        else:
            b = DETECTORS[_LAND_PAIRS[TESTED_OVERLAP_CLAIMS.index(name) - 1][1]]
            text = ("On fact-specific overlap, " + (
                compare(DETECTORS["land"], b, interval, fmt="{:.1%}") if holds is not None else
                f"{DETECTORS['land']} and {b} are not distinguishable here (difference "
                f"{interval.format('{:.1%}')}, n = {interval.n})").rstrip(".").removesuffix(")") + f"; {test}).")
        claims.append(Claim(name, text, interval, holds, p_value=float(p), p_holm=float(ph), direction="higher"))
    return claims


def reaches_claim(name: str, interval: Interval, threshold: float, *, what: str, source: str) -> Claim:
    """A Claim that ``interval`` reaches a paper's figure (kn.base.stats.reaches): holds True above, False below, None when
    not distinguishable."""
    sentence = reaches(name, interval, threshold, what=what, source=source)
    holds = (None if interval.covers(threshold) or math.isnan(interval.mean) or not interval.decidable
             else bool(interval.lo > threshold))
    return Claim(name, sentence, interval, holds)
