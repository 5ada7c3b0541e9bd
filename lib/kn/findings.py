"""kn.findings: what each chapter concludes from its own numbers: its summary record (kn.summaries) with its claims.

The chapters and the results page use these functions and nothing else to word a verdict, so a chapter's closing
paragraph and the results page always agree. Every comparison quotes an interval (kn.stats) and says "not
distinguishable here" when it covers zero; every threshold is the paper's own figure (kn.paper).

API
    data_summary(params, data, population, identity, seconds) -> DataSummary
    attribution_summary(params, stats, store, table, prompts, threads, batch_prompts, seconds) -> AttributionSummary
    overlap_summary(...) -> OverlapSummary;  land_summary(...) -> LandSummary
    amplification_summary(...) -> AmplificationSummary;  editing_summary(...) -> EditingSummary
    primary_pairs() -> [(A, B)]   the declared family of chapters 5 and 6 (per condition): LAND vs KN-refined, LAND vs
        Baseline, each of Baseline, KN-refined and LAND vs its random control; Holm-corrected within each chapter
    log_ratio_contrasts(results, *, n_boot, seed) -> DataFrame   chapter 5's family on log(P_after / P_before)
    table9_readings(amplify) -> DataFrame      the paper's Table 9 read as ratios and as percents, beside ours
    edit_rates(edits, variant="paper") -> {method: {condition: Rate}}   exact rates over every probe outcome
    edit_contrasts(edits, *, n_boot, seed) -> DataFrame        chapter 6's family: McNemar exact, Holm, intervals
    specificity_table(edits, *, n_boot, seed) -> DataFrame     Same minus Unrelated success (net of Before), paired
    power_rows(contrasts, chapter) -> [dict]   test facts needed for the paper's effect at 80% power
    rates_table(rates), contrasts_table(contrasts), power_table(rows) -> DataFrame   the same, for the page
    choices_summary(...) -> ChoicesSummary
    interval_table(frame, columns, *, n_boot, seed) -> {column: Interval}   means over facts (rows)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import paper
from .population import known_facts, shared_prompts
from .experiments import (CONDITIONS, METHODS, PRIMARY, change_rate_table, method_names, paired_comparisons, per_fact,
                          random_name)
from .stats import (Interval, bootstrap_mean, cluster_bootstrap_mean, cluster_bootstrap_p, cluster_paired_difference,
                    compare, holm, mcnemar_exact, paired_difference, power_mcnemar_n, power_mean_n, rate, rate_from_counts,
                    reaches)
from .summaries import (AmplificationSummary, AttributionSummary, ChoicesSummary, Claim, DataSummary, EditingSummary,
                        LandSummary, OverlapSummary)

__all__ = ["data_summary", "attribution_summary", "choices_summary", "overlap_summary", "land_summary",
           "amplification_summary", "editing_summary", "interval_table"]


def interval_table(frame: pd.DataFrame, columns, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Interval]:
    """{column: mean over the rows (facts) with its bootstrap interval} for each of ``columns``."""
    return {c: bootstrap_mean(frame[c].to_numpy(float), n_boot=n_boot, seed=seed) for c in columns}


def _holds(interval: Interval, positive_is_claim: bool = True) -> bool | None:
    if not interval.excludes_zero:
        return None
    return (interval.mean > 0) == positive_is_claim


# --------------------------------------------------------------------------- chapter 1


def data_summary(params, data, population, identity: str, seconds: float) -> DataSummary:
    prompts = population.prompts
    shared = shared_prompts(prompts)
    mismatch = int(shared.drop_duplicates(["prompt", "answer"])["split_mismatch"].sum())
    per_fact_correct = prompts.groupby("fact_id").agg(correct=("correct", "mean"), relation=("relation", "first"))
    accuracy = cluster_bootstrap_mean(per_fact_correct["correct"].to_numpy(float), per_fact_correct["relation"].to_numpy(),
                                      n_boot=params.bootstrap_samples, seed=params.seed)
    top1 = rate(prompts["correct"].to_numpy(float))
    candidates = population.candidates["fact_id"].nunique()
    known = candidates if population.rule is None else int(known_facts(population.candidates, population.rule).sum())
    facts = prompts.drop_duplicates("fact_id")
    what = "all facts" if population.rule is None else f"facts the model knows ({population.rule.label} templates)"
    dropped = list(population.dropped_relations)
    left = (f" {', '.join(dropped)} left the run: among its candidates fewer than 2 train facts or no test fact are "
            "known." if dropped else "")
    claims = [
        Claim("split", f"{len(shared)} rows repeat another relation's prompt and answer word for word; "
                       f"{mismatch} such pairs fall on both sides of the split.", None, mismatch == 0),
        Claim("accuracy", f"Population: {what}, {len(facts)} facts ({int((facts['split'] == 'test').sum())} test) "
                          f"of {prompts['relation'].nunique()} relations.{left} The model's top-1 accuracy on them is "
                          f"{accuracy.format('{:.1%}')} (mean over facts, resampled by relation); over prompts "
                          f"{top1.format('{:.1%}')} (exact interval).", accuracy, None),
    ]
    return DataSummary(
        model=params.model, model_identity=identity, counts=data.summary() | {"source": data.source},
        population=params.population, known_rule="" if population.rule is None else population.rule.label,
        candidate_facts=int(candidates), known_candidate_facts=int(known), dropped_relations=dropped,
        sample_relations=int(prompts["relation"].nunique()),
        sample_facts_train=int((facts["split"] == "train").sum()), sample_facts_test=int((facts["split"] == "test").sum()),
        sample_prompts=len(prompts), shared_prompt_rows=len(shared), shared_prompts_split_mismatch=mismatch,
        top1_accuracy=accuracy, multi_token_answer_share=float((prompts["answer_n_tokens"] > 1).mean()),
        claims=claims, seconds=seconds, top1_rate=top1, known_rate=rate_from_counts(int(known), int(candidates)))


# --------------------------------------------------------------------------- chapter 2


def throughput_table(stats: dict, prompts: pd.DataFrame, store, table: pd.DataFrame) -> pd.DataFrame:
    """What chapter 2 scored and how fast: one column, readable rows."""
    keys = set(store.keys_for(prompts))
    values = {
        "prompt rows of the run": len(prompts),
        "distinct prompts and answers (scored once each)": len(keys),
        "stored now": int(table["key"].isin(keys).sum()),
        "computed in this execution": stats["computed"],
        "already stored before": stats["already_stored"],
    }
    last = _last_computation(stats, store)
    values |= {"seconds per prompt when computed (first call excluded)": last["seconds_per_prompt"],
               "prompts scored in that execution": last["computed"], "torch threads": last["threads"],
               "prompts per kernel call": last["batch_prompts"]}
    return pd.DataFrame({"value": {k: f"{v:,}" if isinstance(v, int) else f"{v:.2f}" for k, v in values.items()}})


def _last_computation(stats: dict, store) -> dict:
    """The stats of the last execution that scored prompts (the store's compute log), else this execution's: an
    execution that found every score stored reports how fast they were made."""
    made = store.compute_log()
    return made[-1] if made else stats


def example_prompt(prompts: pd.DataFrame, table: pd.DataFrame, store) -> pd.Series:
    """The stored row (neuron_ids, neuron_scores, max_score, prompt) of the first prompt the model answers correctly,
    or the first prompt, with its answer."""
    known = prompts[prompts["correct"]]
    row = (known if len(known) else prompts).iloc[0]
    stored = table.set_index("key").loc[store.key(row["prompt"], row["target_id"])]
    return pd.concat([stored, pd.Series({"answer": row["answer"]})])


def attribution_summary(params, stats: dict, store, table: pd.DataFrame, prompts: pd.DataFrame,
                        seconds: float) -> AttributionSummary:
    last = _last_computation(stats, store)
    stats = {**stats, **{k: last[k] for k in ("seconds_per_prompt", "threads", "batch_prompts")}}
    keys = set(store.keys_for(prompts))
    mine = table[table["key"].isin(keys)]
    sizes = np.array([len(s) for s in store.coarse_sets(params.coarse_threshold, mine).values()])
    complete = store.completeness(mine)
    gap, delta = float(complete["mean_abs_gap"].mean()), float(complete["p_full_minus_p_zero"].abs().mean())
    claims = [
        Claim("completeness", f"Per layer, the scores sum to P(w) - P(0) within {gap:.2g} on average (the mean "
                              f"|P(w) - P(0)| is {delta:.2g}) with m = {params.ig_steps}, rule {params.ig_rule}.",
              None, gap < 0.25 * delta if delta > 0 else None),
        Claim("sizes", f"A prompt's coarse set (t = {params.coarse_threshold}) holds {sizes.mean():.1f} neurons on "
                       f"average (median {np.median(sizes):.0f}); {len(mine):,} distinct prompts are stored, "
                       f"{stats['seconds_per_prompt']:.2f} s per prompt here.", None, None),
    ]
    return AttributionSummary(
        prompts=len(prompts), stored=len(mine), computed_now=stats["computed"],
        seconds_per_prompt=float(stats["seconds_per_prompt"]), threads=int(stats["threads"]),
        batch_prompts=int(stats["batch_prompts"]), rule=params.ig_rule, steps=params.ig_steps, neuron=params.ig_neuron,
        mean_coarse_size=float(sizes.mean()), median_coarse_size=float(np.median(sizes)),
        completeness_mean_abs_gap=gap, completeness_mean_delta=delta, claims=claims, seconds=seconds)


# --------------------------------------------------------------------------- chapter 3

_T4 = ["N_s", "N_u", "N_so", "R_so", "N_uo", "R_uo", "R_uo_eq5"]


def overlap_rows(prompts: pd.DataFrame, sets: dict) -> pd.DataFrame:
    """kn.neurons.overlap_table of every fact of ``prompts`` (sets: {prompt_id: set}), with its split and relation."""
    from .land import fact_sets_for
    from .neurons import overlap_table

    table = overlap_table(fact_sets_for(prompts, sets))
    facts = prompts.drop_duplicates("fact_id").set_index("fact_id")
    return table.assign(split=facts.loc[table.index, "split"].to_numpy(),
                        relation=facts.loc[table.index, "relation"].to_numpy())


def table4(overlap: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """LAND's Table 4 rows beside ours on the test facts (the paper's population) and on all the run's facts."""
    rows = {}
    for source, row in paper.LAND_TABLE4.iterrows():
        rows[source] = {**{c: row[c] for c in ["N_s", "N_u", "N_so", "R_so", "N_uo", "R_uo"]},
                        "R_uo_eq5": row["N_s"] / row["N_u"]}
    for label, part in (("ours, test facts", overlap[overlap["split"] == "test"]), ("ours, all facts", overlap)):
        rows[label] = interval_table(part, _T4, n_boot=n_boot, seed=seed)
    return pd.DataFrame.from_dict(rows, orient="index").rename(columns={"R_uo_eq5": "R_uo (Eq. 5)"})


def case_table(prompts: pd.DataFrame, table: pd.DataFrame, store, sets: dict, fact: str = "", *, n_prompts: int = 3,
               n_neurons: int = 8) -> pd.DataFrame:
    """Table 5: ``n_prompts`` prompts of one fact (``fact``, else the test fact answered best) with their set sizes and
    strongest neurons as (layer, index), those in all the shown sets marked *."""
    H = store.manifest["n_neurons"]
    if not fact:
        test = prompts[prompts["split"] == "test"]
        fact = (test if len(test) else prompts).groupby("fact_id")["correct"].mean().idxmax()
    case = prompts[prompts["fact_id"] == fact].head(n_prompts)
    if case.empty:
        from .params import ParameterError

        raise ParameterError(f"parameter example_fact={fact!r}: no such fact in this run")
    rows = table.set_index("key")
    shown = [sets[p] for p in case["prompt_id"]]
    shared = frozenset.intersection(*shown)
    out = []
    for (_, row), s in zip(case.iterrows(), shown):
        stored = rows.loc[store.key(row["prompt"], row["target_id"])]
        order = stored["neuron_ids"][np.argsort(-stored["neuron_scores"], kind="stable")]
        top = [int(i) for i in order if int(i) in s][:n_neurons]
        out.append({"prompt": row["prompt"], "answer": row["answer"], "set size": len(s),
                    "strongest neurons (layer, index)": ", ".join(f"({i // H}, {i % H}){'*' if i in shared else ''}"
                                                                  for i in top)})
    return pd.DataFrame(out).set_index("prompt")


def threshold_sweep(prompts: pd.DataFrame, store, table: pd.DataFrame, thresholds) -> pd.DataFrame:
    """Mean N_s, N_u, R_so, R_uo over the test facts at each coarse threshold t."""
    test = prompts[prompts["split"] == "test"]
    rows = {}
    for t in thresholds:
        o = overlap_rows(test, store.coarse_sets_by_prompt(test, t, table))
        rows[float(t)] = {c: float(o[c].mean()) for c in ("N_s", "N_u", "R_so", "R_uo")}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("t")


def table2(refined: dict, relation_of: dict, *, seed: int) -> pd.DataFrame:
    """Dai et al.'s Table 2 row beside ours: refined neurons per fact, mean |A & B| of fact pairs within a relation and
    across relations (kn.neurons.pair_intersections, Dai's pair means)."""
    from .neurons import pair_intersections

    inter = pair_intersections(refined, relation_of, seed=seed)
    ours = pd.DataFrame({"neurons_per_fact": [float(np.mean([len(s) for s in refined.values()]))],
                         "intra_relation": [inter["intra"]], "inter_relation": [inter["inter"]]}, index=["ours"])
    return pd.concat([paper.DAI_TABLE2, ours])


def refined_table(refined: dict, relation_of: dict) -> pd.DataFrame:
    """The refined sets as a table (fact_id, relation, neuron_ids) for the run folder."""
    return pd.DataFrame({"fact_id": list(refined), "relation": [relation_of[f] for f in refined],
                         "neuron_ids": [np.array(sorted(s), dtype=np.int64) for s in refined.values()]})


def overlap_summary(params, overlap: pd.DataFrame, refined: dict, per_relation: pd.DataFrame, relation_of: dict,
                    sweep: pd.DataFrame, seconds: float) -> OverlapSummary:
    from .neurons import fact_pair_intersections, pair_intersections

    n_boot, seed = params.bootstrap_samples, params.seed
    test = overlap[overlap["split"] == "test"]
    t4_test, t4_all = (interval_table(o, _T4, n_boot=n_boot, seed=seed) for o in (test, overlap))
    ok = test[(test["N_u"] > 0) & test["N_s"].notna()]
    pooled = float(ok["N_s"].mean() / ok["N_u"].mean()) if len(ok) else float("nan")
    sizes = bootstrap_mean([len(s) for s in refined.values()], n_boot=n_boot, seed=seed)
    pairs = pair_intersections(refined, relation_of, seed=seed)
    per_fact = fact_pair_intersections(refined, relation_of)
    intra_minus_inter = paired_difference(per_fact["intra"], per_fact["inter"], n_boot=n_boot, seed=seed)
    gap = paired_difference(test["N_s"], test["N_uo"], n_boot=n_boot, seed=seed)
    r_so = t4_test["R_so"]
    missed = sorted(per_relation.index[~per_relation["in_range"].astype(bool)])
    lo, hi = params.refine_size_range
    claims = [
        Claim("paraphrases overlap little",
              f"Two paraphrases of a test fact share R_so = {r_so.format('{:.1%}')} of their coarse neurons (Jaccard); "
              f"LAND reports {paper.LAND_TABLE4['R_so'].iloc[0]:.1%} (GPT-2) and "
              f"{paper.LAND_TABLE4['R_so'].iloc[1]:.1%} (Llama-3.2-1B). "
              + ("As in the paper, most of a prompt's neurons are not found from another wording."
                 if r_so.hi < 0.5 else "Here paraphrases share half or more: the paper's premise does not hold."),
              r_so, bool(r_so.hi < 0.5) if not math.isnan(r_so.hi) else None),
        Claim("N_uo is not N_s",
              f"One prompt's set has N_s - N_uo = {gap.format()} neurons that no other paraphrase finds "
              f"(N_uo = {t4_test['N_uo'].format()}, overlap with the others' union).", gap, _holds(gap)),
        Claim("refined sets share within relations",
              f"Refined sets hold {sizes.format()} neurons per fact (Dai et al.: 4.13). Facts of one relation share "
              f"{pairs['intra']:.2f} refined neurons on average, facts of two relations {pairs['inter']:.2f}; per fact, "
              + compare("within-relation sharing", "across-relation sharing", intra_minus_inter),
              intra_minus_inter, _holds(intra_minus_inter)),
        Claim("refining reaches its size range",
              "Refining reached a mean size in "
              f"[{lo:g}, {hi:g}] for every relation." if not missed else
              f"Refining did not reach a mean size in [{lo:g}, {hi:g}] for {', '.join(missed)} "
              "(the closest p that keeps neurons is used).", None, not missed),
    ]
    return OverlapSummary(
        table4_test=t4_test, table4_all=t4_all, r_uo_eq5_pooled_test=pooled, refined_per_fact=sizes,
        intra_relation=float(pairs["intra"]), inter_relation=float(pairs["inter"]),
        p_used={r: float(p) for r, p in per_relation["p"].items()},
        refined_size={r: float(m) for r, m in per_relation["mean_size"].items()}, size_range_missed=missed,
        sweep=sweep.reset_index().to_dict("records"), claims=claims, seconds=seconds)


# --------------------------------------------------------------------------- chapter 4

_OVERLAP = ["size", "within", "across_same_relation", "across_other_relation", "fact_specific",
            "same_template_other_fact"]


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
    from .land_study import DETECTORS

    return pd.DataFrame.from_dict({DETECTORS[m]: interval_table(study.overlap[m], _OVERLAP, n_boot=n_boot, seed=seed)
                                   for m in DETECTORS if m in study.overlap}, orient="index")


_LAND_PAIRS = (("land", "relation_prior"), ("land", "nearest_neighbour"), ("land", "coarse"), ("land", "constant"),
               ("oracle", "land"))


def detector_comparisons(study, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Paired differences (over test facts) of fact-specific overlap: LAND against each rule, and the oracle's
    headroom over LAND. Columns: difference (Interval), verdict (sentence)."""
    from .land_study import DETECTORS

    rows = {}
    for a, b in _LAND_PAIRS:
        diff = paired_difference(study.overlap[a]["fact_specific"], study.overlap[b]["fact_specific"], n_boot=n_boot,
                                 seed=seed)
        rows[f"{DETECTORS[a]} - {DETECTORS[b]}"] = {
            "difference": diff, "verdict": compare(DETECTORS[a], DETECTORS[b], diff, fmt="{:.1%}")}
    return pd.DataFrame.from_dict(rows, orient="index")


def wording_table(wordings: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """New facts against new wordings: per (condition, method) the overlap means with intervals over facts."""
    rows = {}
    for (condition, method), part in wordings.groupby(["condition", "method"], sort=True):
        rows[(condition, "LAND" if method == "land" else "coarse set")] = interval_table(
            part, ["size", "within", "across_same_relation", "fact_specific"], n_boot=n_boot, seed=seed)
    return pd.DataFrame.from_dict(rows, orient="index")


_OPERATING_NAMES = {"paper_ratio": "(a) the paper's size, N_L = ratio x N_s", "max_within": "(b) max within-fact overlap",
                    "fact_specific": "(c) max fact-specific (the former rule)", "topk": "(d) top-k, k = N_s"}


def operating_point_table(seeds, columns=("size", "within", "across_same_relation", "across_other_relation",
                                          "fact_specific")) -> pd.DataFrame:
    """Per (read-out, method): each metric over test facts as "mean over seeds [min, max]" (n seeds)."""
    summary = seeds.summary(list(columns))
    rows = {}
    for (rule, method), row in summary.iterrows():
        cells = {}
        for c in columns:
            fmt = "{:.1f}" if c == "size" else "{:.1%}"
            cells[c] = (f"{fmt.format(row[(c, 'mean')])} [{fmt.format(row[(c, 'min')])}, "
                        f"{fmt.format(row[(c, 'max')])}]")
        cells["seeds"] = int(row[("n_seeds", "")])
        rows[(_OPERATING_NAMES.get(rule, rule), method)] = cells
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["read-out", "sets"])
    return frame


def _verdict_words(key: str) -> str:
    from .land_study import VERDICTS

    return VERDICTS.get(key, key).replace("LAND's", "that LAND's", 1)


def seed_holds_table(seeds) -> pd.DataFrame:
    """Per (read-out, verdict): at how many seeds it holds, and "every seed" / "no seed" / "some seeds"."""
    from .land_study import VERDICTS

    table = seeds.holds.reset_index()
    out = pd.DataFrame({"read-out": table["rule"].map(lambda r: _OPERATING_NAMES.get(r, r)),
                        "verdict": table["verdict"].map(lambda v: VERDICTS.get(v, v)),
                        "holds at": [f"{int(t)} of {int(m)} seeds" for t, m in zip(table["n_true"], table["n_measured"])],
                        "reading": ["at every seed" if e else ("at no seed" if n else "depends on the seed")
                                    for e, n in zip(table["holds_at_every_seed"], table["holds_at_no_seed"])]})
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
            names[c]: f"{g[c].mean():.2f} [{g[c].min():.2f}, {g[c].max():.2f}]" for c in names}
    return pd.DataFrame.from_dict(rows, orient="index")


def consistency_table(seeds) -> pd.DataFrame:
    """Per consistency class of Chen et al.'s rule: share of test facts and LAND's fact-specific gain over the coarse
    sets at the main read-out, means over seeds."""
    part = seeds.consistency
    numeric = part.select_dtypes("number").columns.drop("seed", errors="ignore")
    return part.groupby(["rule", "consistency"])[list(numeric)].mean().rename(index=_OPERATING_NAMES)


def land_summary(params, study, table7_frame: pd.DataFrame, curve: pd.DataFrame, wordings: pd.DataFrame,
                 seconds: float, seeds=None) -> LandSummary:
    from .land_study import DETECTORS

    n_boot, seed = params.bootstrap_samples, params.seed
    ours = table7_frame.loc["ours, test facts"]
    detectors = {m: interval_table(study.overlap[m], _OVERLAP, n_boot=n_boot, seed=seed) for m in study.overlap}
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
            every = "holds at every seed" if r.holds_at_every_seed else (
                "holds at no seed" if r.holds_at_no_seed else f"holds at {r.n_true} of {r.n_measured} seeds")
            claims.append(Claim(f"over seeds: {r.verdict}", f"Over {r.n_seeds} seeds of the detector pipeline, "
                                f"{_verdict_words(r.verdict)} {every}.", None,
                                True if r.holds_at_every_seed else (False if r.holds_at_no_seed else None)))
    land_specific = Claim(
        "LAND is specific to the fact",
        f"LAND's fact-specific overlap (within-fact minus same-relation across-fact) is {land_fs.format('{:.1%}')}: "
        + ("its sets depend on the fact beyond its relation." if land_fs.excludes_zero and land_fs.mean > 0 else
           "not distinguishable here from a set fixed per relation."), land_fs, _holds(land_fs))
    claims.append(land_specific)
    for a, b in _LAND_PAIRS[:2]:
        diff = paired_difference(study.overlap[a]["fact_specific"], study.overlap[b]["fact_specific"], n_boot=n_boot,
                                 seed=seed)
        claims.append(Claim(f"LAND beats the {DETECTORS[b].lower()}",
                            "On fact-specific overlap, " + compare(DETECTORS[a], DETECTORS[b], diff, fmt="{:.1%}"),
                            diff, _holds(diff)))
    trend = curve[curve["setting"] == "this run's"].sort_values("n_train_prompts")
    if len(trend) >= 2:
        first, last = trend.iloc[0], trend.iloc[-1]
        claims.append(Claim("more data helps",
                            f"From {int(first['n_train_prompts'])} to {int(last['n_train_prompts'])} training prompts, "
                            f"LAND's within-fact overlap on test facts moves from {first['within']:.1%} to "
                            f"{last['within']:.1%} and its fact-specific overlap from {first['fact_specific']:.1%} to "
                            f"{last['fact_specific']:.1%} (means over {int(last.get('n_seeds', 1))} seed(s) per size, "
                            "P re-chosen on validation facts at each size); the paper had about 250,000 training "
                            "prompts.", None, None))
    table = wording_table(wordings, n_boot=n_boot, seed=seed)
    if ("new facts", "LAND") in table.index and ("new wordings", "LAND") in table.index:
        facts_fs, words_fs = table.loc[("new facts", "LAND"), "fact_specific"], table.loc[("new wordings", "LAND"),
                                                                                          "fact_specific"]
        claims.append(Claim("new wordings against new facts",
                            f"LAND's fact-specific overlap is {words_fs.format('{:.1%}')} on new wordings of train facts "
                            f"and {facts_fs.format('{:.1%}')} on new facts.", None, None))
    return LandSummary(
        n_layers=study.detector.n_layers, n_neurons=study.detector.n_neurons, rank=study.detector.rank,
        n_parameters=study.detector.n_parameters, train_pairs=study.train_pairs, threshold=float(study.hp.threshold),
        threshold_reason=study.threshold_reason, validation_sweep=study.validation_sweep.reset_index().to_dict("records"),
        final_loss=float(np.mean(study.losses[-20:])),
        table7={k: ours[k] for k in ["N_s", "N_so", "R_so", "N_L", "N_Lo", "R_Lo"]}, detectors=detectors,
        constant_k=study.constant_k, learning_curve=curve.to_dict("records"),
        wordings={f"{c} / {m}": v for (c, m), v in table.to_dict("index").items()}, claims=claims, seconds=seconds,
        operating_rule=str(getattr(study, "operating_rule", "")),
        seed_points=[] if seeds is None else operating_point_table(seeds).reset_index().to_dict("records"),
        seed_holds=[] if seeds is None else seed_holds_table(seeds).reset_index().to_dict("records"),
        consistency=[] if seeds is None else consistency_table(seeds).reset_index().to_dict("records"))


def reaches_claim(name: str, interval: Interval, threshold: float, *, what: str, source: str) -> Claim:
    """A Claim that ``interval`` reaches a paper's figure (kn.stats.reaches): holds True above, False below, None when
    not distinguishable."""
    sentence = reaches(name, interval, threshold, what=what, source=source)
    holds = None if interval.covers(threshold) or math.isnan(interval.mean) else bool(interval.lo > threshold)
    return Claim(name, sentence, interval, holds)


# --------------------------------------------------------------------------- chapters 5 and 6


def _method_pairs() -> list[tuple[str, str]]:
    land = METHODS["land"]
    return ([(land, METHODS["kn_refined"]), (land, METHODS["baseline"]), (land, METHODS["relation_prior"]),
             (land, METHODS["nearest_neighbour"])] + [(name, random_name(key)) for key, name in METHODS.items()])


def medians(table: pd.DataFrame) -> pd.DataFrame:
    """The medians riding in a table of Intervals."""
    return table.map(lambda i: i.median)


def change_rate_comparisons(results: pd.DataFrame, action: str, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Paired differences of change rate over facts, per condition: LAND against the other methods, and every method
    against its random control (kn.experiments.paired_comparisons)."""
    part = results[results["action"] == action]
    return paired_comparisons(part, "change_rate", _method_pairs(), n_boot=n_boot, seed=seed)


def per_relation_change(results: pd.DataFrame, methods) -> pd.DataFrame:
    """Mean change rate on the Same prompt per (action, relation) for ``methods`` (columns)."""
    same = results[(results["condition"] == "Same") & results["method"].isin(methods)]
    return same.groupby(["action", "relation", "method"])["change_rate"].mean().unstack()[list(methods)]


def amplification_summary(params, setup, results: pd.DataFrame, seconds: float) -> AmplificationSummary:
    n_boot, seed = params.bootstrap_samples, params.seed
    tables = {a: change_rate_table(results, a, n_boot=n_boot, seed=seed) for a in ("amplify", "suppress")}
    contrasts = log_ratio_contrasts(results, n_boot=n_boot, seed=seed)
    claims = [Claim(f"{r.condition}: {r.A} vs {r.B}", r.sentence, r.difference, r.holds, PRIMARY_FAMILY_5, r.p,
                    r.p_holm) for r in contrasts.itertuples()]
    land = METHODS["land"]
    suppress = tables["suppress"]
    claims.append(Claim("suppression", "Suppressing on the Same prompt changes P(answer) by "
                        + ", ".join(f"{m} {suppress.loc[m, 'Same'].format('{:.0%}')}" for m in
                                    (METHODS["baseline"], METHODS["kn_refined"], land, random_name("land")))
                        + f" (Dai et al., BERT: {paper.DAI_SUPPRESS_AMPLIFY['suppress']:.0%}).", None, None))
    as_dict = {a: {m: dict(row) for m, row in t.to_dict("index").items()} for a, t in tables.items()}
    log_ratio = {m: dict(row) for m, row in log_ratio_table(results, n_boot=n_boot, seed=seed).to_dict("index").items()}
    probes = results.groupby(["condition", "fact_id"])["prompt_id"].nunique().groupby("condition").max()
    return AmplificationSummary(facts=len(setup.design), set_sizes=setup.set_sizes().to_dict(),
                                amplify=as_dict["amplify"], suppress=as_dict["suppress"], claims=claims,
                                seconds=seconds, log_ratio=log_ratio, power=power_rows(contrasts, "05", results),
                                probes={c: int(probes[c]) for c in CONDITIONS})


def rate_means(edits: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """[method x condition] plain means of ``prefix``_<condition> (for a bar chart), methods in table order."""
    table = edits.groupby("method")[[f"{prefix}_{c}" for c in CONDITIONS]].mean()
    table.columns = list(CONDITIONS)
    return table.loc[_edit_order(table.index)]


def _edit_order(present) -> list[str]:
    return [m for m in ["Before"] + method_names() if m in set(present)]


def rate_table(edits: pd.DataFrame, prefix: str, *, n_boot: int, seed: int) -> pd.DataFrame:
    """[method x condition] of Intervals: the mean over facts of each fact's share of probes with ``prefix``_<condition>
    true, resampled by relation, then fact (kn.stats.cluster_bootstrap_mean)."""
    rows = {m: {c: cluster_bootstrap_mean(g[f"{prefix}_{c}"].astype(float), g["relation"], n_boot=n_boot, seed=seed)
                for c in CONDITIONS} for m, g in edits.groupby("method")}
    return pd.DataFrame.from_dict(rows, orient="index").loc[_edit_order(rows)]


def success_comparisons(edits: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Paired differences of success over facts, per condition (LAND against the others, each method against its
    random control); on Unrelated a positive difference means more leakage."""
    long = pd.concat([edits[["fact_id", "method", "relation"]].assign(condition=c,
                                                                       success=edits[f"success_{c}"].astype(float))
                      for c in CONDITIONS], ignore_index=True)
    return paired_comparisons(long, "success", _method_pairs(), n_boot=n_boot, seed=seed, fmt="{:.0%}")


def _relative_change(relative, relations, *, n_boot: int, seed: int) -> Interval:
    """The typical relative change over facts (``relative`` [fact] = after / before - 1), as a geometric mean:
    exp(mean log ratio) - 1, with the bootstrap interval of the mean log ratio carried through. An edit can multiply
    one statement group's perplexity by 10^20, and an arithmetic mean of ratios would report that one fact."""
    i = cluster_bootstrap_mean(np.log1p(np.asarray(relative, float)), np.asarray(relations), n_boot=n_boot, seed=seed)
    return Interval(float(np.expm1(i.mean)), float(np.expm1(i.lo)), float(np.expm1(i.hi)), i.n,
                    float(np.expm1(i.median)))


def update_table(edits: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Dai et al.'s update table per method, with intervals over facts: change rate and success on Same, and the
    perplexity of statements within the fact's relation and across relations, as the mean absolute change and the
    relative change (a geometric mean, see _relative_change) against the unedited model."""
    means = {"change rate": "changed_Same", "success rate": "success_Same",
             "perplexity within, change": "ppl_within_change", "perplexity across, change": "ppl_across_change"}
    relative = {"perplexity within, relative": "ppl_within_relative",
                "perplexity across, relative": "ppl_across_relative"}
    edited = edits[edits["method"] != "Before"]
    rows = {m: {name: cluster_bootstrap_mean(g[col].astype(float), g["relation"], n_boot=n_boot, seed=seed)
                for name, col in means.items()}
            | {name: _relative_change(g[col], g["relation"], n_boot=n_boot, seed=seed) for name, col in relative.items()}
            for m, g in edited.groupby("method")}
    order = ["change rate", "success rate", "perplexity within, change", "perplexity within, relative",
             "perplexity across, change", "perplexity across, relative"]
    return pd.DataFrame.from_dict(rows, orient="index").loc[_edit_order(rows), order]


def editing_summary(params, setup, edits: pd.DataFrame, erasing: pd.DataFrame, seconds: float) -> EditingSummary:
    n_boot, seed = params.bootstrap_samples, params.seed
    success = rate_table(edits, "success", n_boot=n_boot, seed=seed)
    update = update_table(edits, n_boot=n_boot, seed=seed)
    contrasts = edit_contrasts(edits, n_boot=n_boot, seed=seed)
    land = METHODS["land"]
    claims = [Claim(f"{r.condition}: {r.A} vs {r.B}", r.sentence, r.difference, r.holds, PRIMARY_FAMILY_6, r.p,
                    r.p_holm) for r in contrasts.itertuples()]
    specificity = specificity_table(edits, n_boot=n_boot, seed=seed)
    for method in (METHODS[k] for k in PRIMARY):
        if method in specificity.index:
            interval = specificity.loc[method, "Same minus Unrelated (net)"]
            claims.append(Claim(f"{method}'s edit is specific",
                                f"{method}: success on the Same prompt minus success on Unrelated prompts (net of "
                                f"Before) is {interval.format('{:+.0%}')}: {specificity.loc[method, 'verdict']}.",
                                interval, _holds(interval)))
    refined = erasing[erasing["erased"] == "refined neurons"].set_index("relation")
    control = erasing[erasing["erased"] != "refined neurons"].set_index("relation").loc[refined.index]
    specific = paired_difference(refined["change_erased_relation"] - refined["change_other_relations"],
                                 control["change_erased_relation"] - control["change_other_relations"],
                                 n_boot=n_boot, seed=seed)
    claims.append(Claim("erasing is specific",
                        f"Erasing a relation's most common refined neurons raises its own perplexity by "
                        f"{refined['change_erased_relation'].mean():+.0%} on average and the other relations' by "
                        f"{refined['change_other_relations'].mean():+.0%}; against matched random neurons, the excess on "
                        "the erased relation is " + specific.format("{:+.0%}")
                        + (" (not distinguishable here)." if not specific.excludes_zero else "."),
                        specific, _holds(specific)))
    ppl = update["perplexity within, relative"]
    claims.append(Claim("edits cost perplexity",
                        "An edit changes the perplexity of other statements of the same relation by "
                        + ", ".join(f"{m} {ppl[m].format('{:+.0%}')}" for m in (METHODS["baseline"],
                                                                               METHODS["kn_refined"], land))
                        + " (relative; geometric mean over facts).", None, None))
    variants = sorted(v for v in edits["variant"].unique() if v not in ("paper", "before"))
    probes = {c: int(max(len(o) for o in edits[f"outcomes_{c}"])) for c in CONDITIONS}
    return EditingSummary(
        rates=edit_rates(edits), contrasts=[{k: v for k, v in r.items() if k != "sentence"}
                                            for r in contrasts.to_dict("records")],
        specificity=specificity["Same minus Unrelated (net)"].to_dict(),
        variants={v: edit_rates(edits, v) for v in variants}, power=power_rows(contrasts, "06"), probes=probes,
        facts=len(setup.design), success={m: dict(r) for m, r in success.to_dict("index").items()},
        changed_same=update["change rate"].to_dict(), ppl_within_relative=ppl.to_dict(),
        ppl_across_relative=update["perplexity across, relative"].to_dict(),
        ppl_within_change=update["perplexity within, change"].to_dict(),
        ppl_across_change=update["perplexity across, change"].to_dict(),
        erasing=erasing.to_dict("records"), claims=claims, seconds=seconds)


# --------------------------------------------------------------------------- chapters 5 and 6: the primary family

PRIMARY_FAMILY_5 = "chapter 5: amplification, log change of P(answer)"
PRIMARY_FAMILY_6 = "chapter 6: edit success"


def primary_pairs() -> list[tuple[str, str]]:
    land = METHODS["land"]
    return [(land, METHODS["kn_refined"]), (land, METHODS["baseline"])] + [(METHODS[k], random_name(k)) for k in PRIMARY]


def _verdict(a: str, b: str, difference: Interval, p_holm: float, fmt: str) -> tuple[bool | None, str]:
    """holds (the difference is positive, Holm-significant), and the words for it."""
    if math.isnan(difference.mean):
        return None, f"{a} and {b} cannot be compared here"
    if not p_holm < 0.05:
        return None, f"{a} and {b} are not distinguishable here (difference {difference.format(fmt)})"
    if difference.mean > 0:
        return True, f"{a} exceeds {b} by {difference.format(fmt)}"
    flipped = Interval(-difference.mean, -difference.hi, -difference.lo, difference.n)
    return False, f"{a} falls below {b} by {flipped.format(fmt.replace('+', ''))}"


def log_ratio_contrasts(results: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Chapter 5's primary family on the amplification: per condition and pair, the paired difference of the facts'
    mean log(P_after / P_before) (resampled by relation, then fact) and its cluster-bootstrap p, Holm-corrected over
    the family. A log ratio is not carried by the few facts whose P was tiny before, as a mean change rate is."""
    part = per_fact(results[(results["action"] == "amplify") & np.isfinite(results["log_ratio"])], "log_ratio")
    rows = []
    for condition in CONDITIONS:
        wide = part[part["condition"] == condition].pivot_table(index="fact_id", columns="method", values="log_ratio")
        relation_of = dict(zip(part["fact_id"], part["relation"]))
        clusters = np.array([relation_of[f] for f in wide.index])
        for a, b in primary_pairs():
            if a not in wide or b not in wide:
                continue
            diff = wide[a].to_numpy(float) - wide[b].to_numpy(float)
            interval = cluster_bootstrap_mean(diff, clusters, n_boot=n_boot, seed=seed)
            rows.append({"condition": condition, "A": a, "B": b, "difference": interval,
                         "p": cluster_bootstrap_p(diff, clusters, n_boot=n_boot, seed=seed)})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_holm"] = holm(table["p"].to_numpy())
    words = [_verdict(r.A, r.B, r.difference, r.p_holm, "{:+.2f}") for r in table.itertuples()]
    table["holds"] = [w[0] for w in words]
    table["sentence"] = [f"{r.condition}: {w[1]} in log(P after / P before) (bootstrap p = {r.p:.3g}, Holm "
                         f"{r.p_holm:.3g}, n = {r.difference.n} facts)." for r, w in zip(table.itertuples(), words)]
    return table


def log_ratio_table(results: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """[method x condition] mean log(P_after / P_before) of the amplification over facts, cluster intervals."""
    part = per_fact(results[(results["action"] == "amplify") & np.isfinite(results["log_ratio"])], "log_ratio")
    rows = {}
    for (method, condition), g in part.groupby(["method", "condition"]):
        rows.setdefault(method, {})[condition] = cluster_bootstrap_mean(g["log_ratio"].to_numpy(), g["relation"].to_numpy(),
                                                                        n_boot=n_boot, seed=seed)
    return pd.DataFrame.from_dict(rows, orient="index").loc[[m for m in method_names() if m in rows], list(CONDITIONS)]


def table9_readings(amplify: dict) -> pd.DataFrame:
    """The paper's Table 9 under both readings of its unit: as ratios (2.48 = +248%) and as percents (2.48 = +2.48%),
    beside our mean change rate (a ratio), for the three methods and conditions."""
    rows = []
    for model, part in paper.LAND_TABLE9.groupby("model", sort=False):
        for r in part.itertuples():
            rows.append({"source": f"LAND, {model}, read as ratios", "method": r.method,
                         **{c: getattr(r, c) for c in CONDITIONS}})
            rows.append({"source": f"LAND, {model}, read as percents", "method": r.method,
                         **{c: getattr(r, c) / 100 for c in CONDITIONS}})
    for method in (METHODS["baseline"], METHODS["kn_refined"], METHODS["land"]):
        if method in amplify:
            rows.append({"source": "ours (a ratio)", "method": method,
                         **{c: amplify[method][c].mean for c in CONDITIONS}})
    return pd.DataFrame(rows).set_index(["source", "method"])


def _outcomes(edits: pd.DataFrame, method: str, condition: str) -> dict:
    part = edits[edits["method"] == method]
    return dict(zip(part["fact_id"], (list(o) for o in part[f"outcomes_{condition}"])))


def edit_rates(edits: pd.DataFrame, variant: str = "paper") -> dict:
    """{method: {condition: Rate}}: the share of probe outcomes whose top-1 became t', with its exact (Clopper-Pearson)
    interval, for the papers' sets (and Before) or one variant ("top 5", "scaled λ")."""
    part = edits[edits["variant"].isin(["paper", "before"] if variant == "paper" else [variant])]
    return {m: {c: rate([x for o in g[f"outcomes_{c}"] for x in o]) for c in CONDITIONS}
            for m, g in part.groupby("method", sort=False)}


def edit_contrasts(edits: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Chapter 6's primary family: per condition and pair, McNemar's exact test on the paired probe outcomes (the
    discordant counts shown), the cluster interval of the per-fact difference in success, Holm over the family. On
    Unrelated a positive difference means the edit leaked more."""
    relation_of = dict(zip(edits["fact_id"], edits["relation"]))
    rows = []
    for condition in CONDITIONS:
        for a, b in primary_pairs():
            out_a, out_b = _outcomes(edits, a, condition), _outcomes(edits, b, condition)
            facts = [f for f in out_a if f in out_b]
            if not facts:
                continue
            test = mcnemar_exact([x for f in facts for x in out_a[f]], [x for f in facts for x in out_b[f]])
            diff = [np.mean(out_a[f]) - np.mean(out_b[f]) for f in facts]
            interval = cluster_bootstrap_mean(diff, [relation_of[f] for f in facts], n_boot=n_boot, seed=seed)
            rows.append({"condition": condition, "A": a, "B": b, "a_only": test.a_only, "b_only": test.b_only,
                         "n": test.n, "p": test.p_value, "difference": interval})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_holm"] = holm(table["p"].to_numpy())
    words = [_verdict(r.A, r.B, r.difference, r.p_holm, "{:+.0%}") for r in table.itertuples()]
    table["holds"] = [w[0] for w in words]
    table["sentence"] = [f"{r.condition}: {w[1]} in edit success ({r.a_only} vs {r.b_only} discordant of {r.n} "
                         f"prompts, McNemar exact p = {r.p:.3g}, Holm {r.p_holm:.3g})."
                         + (" On Unrelated prompts more success means more leakage." if r.condition == "Unrelated"
                            else "") for r, w in zip(table.itertuples(), words)]
    return table


def specificity_table(edits: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Per method: success on the Same prompt minus success on the Unrelated prompts net of Before (the partner's
    top-1 was t' already), paired over facts and resampled by relation: an edit is specific when this is positive."""
    before = edits[edits["method"] == "Before"].set_index("fact_id")["success_Unrelated"]
    rows = {}
    for method in [METHODS[k] for k in PRIMARY] + [random_name(k) for k in PRIMARY]:
        g = edits[edits["method"] == method]
        if g.empty:
            continue
        leak = g["success_Unrelated"].to_numpy(float) - g["fact_id"].map(before).to_numpy(float)
        interval = cluster_paired_difference(g["success_Same"].to_numpy(float), leak, g["relation"].to_numpy(),
                                             n_boot=n_boot, seed=seed)
        specific = interval.lo > 0
        rows[method] = {"Same minus Unrelated (net)": interval,
                        "verdict": "specific" if specific else ("leaks as much as it edits" if interval.hi < 0 else
                                                               "not distinguishable here")}
    return pd.DataFrame.from_dict(rows, orient="index")


def rates_table(rates: dict) -> pd.DataFrame:
    """[method x condition] of kn.stats.Rate (shown as "22% [7%, 41%] (6/27)"), methods in table order."""
    frame = pd.DataFrame.from_dict(rates, orient="index")[list(CONDITIONS)]
    return frame.loc[_edit_order(frame.index) + [m for m in frame.index if m not in _edit_order(frame.index)]]


def contrasts_table(contrasts: pd.DataFrame, fmt: str = "{:+.0%}") -> pd.DataFrame:
    """The primary family as a table in words: the difference (per fact, cluster interval), the test and Holm's p."""
    rows = []
    for r in contrasts.itertuples():
        verdict = {True: "holds (A higher)", False: "fails (A lower)", None: "not distinguishable here"}[r.holds]
        row = {"condition": r.condition, "A": r.A, "B": r.B, "difference A - B": r.difference.format(fmt)}
        if hasattr(r, "a_only"):
            row |= {"A only": r.a_only, "B only": r.b_only, "paired prompts": r.n}
        rows.append(row | {"p": f"{r.p:.3g}", "Holm p": f"{r.p_holm:.3g}", "verdict": verdict})
    return pd.DataFrame(rows).set_index(["condition", "A", "B"])


def power_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).set_index("claim") if rows else pd.DataFrame()


def power_rows(contrasts: pd.DataFrame, chapter: str, results: pd.DataFrame | None = None) -> list[dict]:
    """For LAND vs KN-refined and LAND vs Baseline on Same and Related: the paper's effect (GPT-2, the first of its
    models), and the test facts needed to detect it at 80% power (two-sided 5%) given the variance measured here:
    McNemar's discordance for edit success (chapter 6), the SD of the per-fact change-rate difference (chapter 5)."""
    reference = paper.LAND_TABLE10 if chapter == "06" else paper.LAND_TABLE9
    gpt2 = reference[reference["model"] == "GPT-2"].set_index("method")
    rows = []
    for r in contrasts.itertuples():
        if r.condition == "Unrelated" or r.B not in (METHODS["kn_refined"], METHODS["baseline"]):
            continue
        effect = float(gpt2.loc[r.A, r.condition] - gpt2.loc[r.B, r.condition])
        if chapter == "06":
            per_fact_probes = r.n / max(r.difference.n, 1)
            s = (r.a_only + r.b_only) / r.n if r.n else float("nan")
            s = max(s, abs(effect))  # the discordance measured here, at least what the paper's effect needs
            needed_facts = power_mcnemar_n((s + effect) / 2, (s - effect) / 2) / per_fact_probes
        else:
            part = per_fact(results[results["action"] == "amplify"], "change_rate")
            wide = part[part["condition"] == r.condition].pivot_table(index="fact_id", columns="method",
                                                                      values="change_rate")
            sd = float(np.nanstd(wide[r.A] - wide[r.B], ddof=1))
            needed_facts = power_mean_n(effect, sd)
        rows.append({"claim": f"{r.condition}: {r.A} vs {r.B}", "paper effect (GPT-2)": effect,
                     "test facts needed (80% power)": needed_facts, "test facts here": r.difference.n})
    return rows


# --------------------------------------------------------------------------- chapter 2b


def choice_prompts(prompts: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """A seeded sample of ``n`` distinct (prompt, target) rows of the run (all of them if fewer)."""
    distinct = prompts.drop_duplicates(["prompt", "target_id"])
    return distinct.sample(n=min(n, len(distinct)), random_state=seed).reset_index(drop=True)


def reference_cost(result) -> pd.DataFrame:
    """Integrand evaluations per prompt: shared by all layers (the rules' nodes and the mesh) and the reference's own
    refinement, with seconds."""
    p = result.prompts
    return pd.DataFrame({"mean per prompt": {
        "alphas evaluated for every layer": p["shared_alphas"].mean(),
        "... of them the rules' nodes": p["rule_alphas"].mean(),
        "(alpha, layer) rows of the reference's refinement": p["refine_rows"].mean(),
        "layers not converged": float((~result.layers["converged"]).groupby(result.layers["prompt"]).sum().mean()),
        "seconds": p["seconds"].mean()}})


def layer_errors(result, specs) -> pd.DataFrame:
    """[layer x "rule, m"]: the median over prompts of the layer's largest error relative to the prompt's largest
    score, for the (rule, m) pairs ``specs``."""
    e = result.errors
    out = {}
    for rule, m in specs:
        part = e[(e["rule"] == rule) & (e["steps"] == m)]
        if len(part):
            out[f"{rule}, m = {m}"] = part.groupby("layer")["max_rel_error"].median()
    return pd.DataFrame(out)


def spiky_case(result, slow_layers) -> dict:
    """The (prompt, layer, neuron) where the paper's rule is furthest from the reference, preferring a slow layer."""
    e = result.errors
    rule, m = result.paper
    part = e[(e["rule"] == rule) & (e["steps"] == m)]
    if slow_layers:
        part = part[part["layer"].isin(slow_layers)]
    worst = part.loc[part["max_rel_error"].idxmax()]
    return {"prompt": int(worst["prompt"]), "layer": int(worst["layer"]), "neuron": int(worst["worst_neuron"])}


def definition_table(definitions, *, n_boot: int, seed: int) -> pd.DataFrame:
    """The two neuron definitions: coarse-set Jaccard, top-k overlap, and the change of P(answer) when each one's top-k
    (and a matched random set) is silenced, with intervals over prompts."""
    p = definitions.prompts
    k = definitions.settings["top_k"]
    rows = {"coarse sets: Jaccard of the two definitions": bootstrap_mean(p["jaccard_coarse"], n_boot=n_boot, seed=seed),
            f"top-{k}: shared share": bootstrap_mean(p["topk_overlap"], n_boot=n_boot, seed=seed)}
    for arm, label in (("ffn_out_input", "the papers' neurons"), ("pre_activation", "pre-activations"),
                       ("random", "random, matched per layer")):
        rows[f"P(answer) change, top-{k} of {label} silenced"] = bootstrap_mean(p[f"change_{arm}"], n_boot=n_boot,
                                                                                seed=seed)
    return pd.DataFrame({"mean [95% interval]": rows})


def choices_summary(params, result, table: pd.DataFrame, definitions, seconds: float) -> ChoicesSummary:
    from .convergence import cheapest_converged_rule, share_max_in_slow_layers, slow_layers

    n_boot, seed = params.bootstrap_samples, params.seed
    rule, m = result.paper
    paper_row = table.loc[(rule, m)]
    converged = bool(paper_row["jaccard_reference_mean"] >= 0.95 and paper_row["jaccard_reference_min"] >= 0.8)
    slow = slow_layers(result)
    share = share_max_in_slow_layers(result, slow)
    cheapest = cheapest_converged_rule(table)
    fixed = table.drop(index=[i for i in table.index if i[0] == "reference"])
    best = fixed["jaccard_reference_mean"].idxmax()
    claims = [Claim("the paper's rule is converged",
                    f"The paper's rule (right sum, m = {m}) gives coarse sets that agree with the converged reference at "
                    f"a mean Jaccard of {paper_row['jaccard_reference_mean']:.2f} (worst prompt "
                    f"{paper_row['jaccard_reference_min']:.2f}); its largest error is a median "
                    f"{paper_row['rel_error_median']:.1%} of the prompt's largest score (worst "
                    f"{paper_row['rel_error_max']:.0%}). "
                    + ("It gives the converged sets here." if converged else
                       "It does not give the converged sets here, so the papers' coarse sets carry this quadrature "
                       f"error. Among the fixed rules, {best[0]} with m = {best[1]} comes closest (mean Jaccard "
                       f"{table.loc[best, 'jaccard_reference_mean']:.2f}, worst {table.loc[best, 'jaccard_reference_min']:.2f}); "
                       "the converged setting is `ig_rule: adaptive` (the reference as an attribution rule)."),
                    None, converged)]
    if ("right", 1) in table.index:
        one = table.loc[("right", 1)]
        claims.append(Claim("m = 1", f"With m = 1 (EasyEdit's Llama setting: gradient times activation) the coarse sets "
                                     f"share {one['jaccard_reference_mean']:.0%} of the reference's on average: a "
                                     "different set of neurons.", None, None))
    claims.append(Claim("a cheaper rule",
                        "No rule cheaper than the paper's reaches a mean Jaccard of 0.95 with no prompt below 0.8."
                        if cheapest is None or cheapest[1] >= m else
                        f"{cheapest[0]} with m = {cheapest[1]} reaches a mean Jaccard of 0.95 with no prompt below 0.8 "
                        "against the reference.", None, None))
    claims.append(Claim("slow layers",
                        (f"{'Layers' if len(slow) > 1 else 'Layer'} {', '.join(map(str, slow))} "
                         f"{'converge' if len(slow) > 1 else 'converges'} slowly (the paper's rule misses by more than 5% of "
                         f"the largest score on at least half the prompts); the prompt's largest score sits there on "
                         f"{share:.0%} of the prompts.") if slow else
                        "No layer converges slowly under the paper's rule on most prompts.", None, None))
    p = definitions.prompts
    jac = bootstrap_mean(p["jaccard_coarse"], n_boot=n_boot, seed=seed)
    drops = {arm: bootstrap_mean(p[f"change_{arm}"], n_boot=n_boot, seed=seed)
             for arm in ("ffn_out_input", "pre_activation", "random")}
    diff = paired_difference(p["change_ffn_out_input"], p["change_pre_activation"], n_boot=n_boot, seed=seed)
    claims.append(Claim("which neuron",
                        f"The two definitions' coarse sets share {jac.format('{:.0%}')} (Jaccard). Silencing the top "
                        f"{definitions.settings['top_k']} changes P(answer) by {drops['ffn_out_input'].format('{:.0%}')} "
                        f"(papers' neurons), {drops['pre_activation'].format('{:.0%}')} (pre-activations) and "
                        f"{drops['random'].format('{:.0%}')} (random); "
                        + compare("the change after silencing the papers' neurons",
                                  "the change after silencing the pre-activations", diff, fmt="{:.1%}"),
                        diff, None))
    layer_evals = result.layers["evaluations"].mean()
    return ChoicesSummary(
        prompts=len(result.prompts),
        reference=f"adaptive composite Boole/Simpson per layer, tolerance {result.settings['tolerance']:g} of the "
                  "prompt's largest score", reference_points=float(layer_evals),
        convergence=table.reset_index().to_dict("records"), slow_layers=[int(x) for x in slow],
        share_max_in_slow_layer=float(share), definitions_jaccard=jac, definition_drop=drops,
        definition_difference=diff, claims=claims, seconds=seconds)
