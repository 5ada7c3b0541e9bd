"""kn.book.findings.overlap: chapter 3's tables (Tables 2 and 4, the cases, the threshold sweep, refined sets) and its
summary.

API
    overlap_summary(...) -> OverlapSummary;  land_summary(...) -> LandSummary
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kn.base import paper
from kn.base.errors import ParameterError
from kn.base.overlap import fact_pair_intersections, overlap_table, pair_intersections
from kn.base.clustered import cluster_column
from kn.base.stats import cluster_bootstrap_mean, cluster_paired_difference, compare
from kn.book.findings.common import _T4, _holds, interval_table
from kn.book.summaries import Claim, OverlapSummary
from kn.methods.counterexamples import fact_sets_for


def overlap_rows(prompts: pd.DataFrame, sets: dict) -> pd.DataFrame:
    """kn.base.overlap.overlap_table of every fact of ``prompts`` (sets: {prompt_id: set}), with its split, relation
    and cluster (relations merged where they share prompts; the relation where prompts have no cluster column)."""
    table = overlap_table(fact_sets_for(prompts, sets))
    facts = prompts.drop_duplicates("fact_id").set_index("fact_id")
    return table.assign(split=facts.loc[table.index, "split"].to_numpy(),
                        relation=facts.loc[table.index, "relation"].to_numpy(),
                        cluster=cluster_column(facts).loc[table.index].to_numpy())


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
    across relations (kn.base.overlap.pair_intersections, Dai's pair means)."""
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

    n_boot, seed = params.bootstrap_samples, params.seed
    test = overlap[overlap["split"] == "test"]
    t4_test, t4_all = (interval_table(o, _T4, n_boot=n_boot, seed=seed) for o in (test, overlap))
    ok = test[(test["N_u"] > 0) & test["N_s"].notna()]
    pooled = float(ok["N_s"].mean() / ok["N_u"].mean()) if len(ok) else float("nan")
    cluster_of = dict(zip(overlap.index, cluster_column(overlap)))
    sizes = cluster_bootstrap_mean([len(s) for s in refined.values()], [cluster_of.get(f, relation_of[f]) for f in refined],
                                   n_boot=n_boot, seed=seed)
    pairs = pair_intersections(refined, relation_of, seed=seed)
    per_fact = fact_pair_intersections(refined, relation_of)
    intra_minus_inter = cluster_paired_difference(per_fact["intra"], per_fact["inter"],
                                                  [cluster_of.get(f, relation_of.get(f, f)) for f in per_fact.index],
                                                  n_boot=n_boot, seed=seed)
    gap = cluster_paired_difference(test["N_s"], test["N_uo"], cluster_column(test), n_boot=n_boot, seed=seed)
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
              r_so, bool(r_so.hi < 0.5) if not math.isnan(r_so.hi) and r_so.decidable else None),
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
