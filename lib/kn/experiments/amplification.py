"""kn.experiments.amplification: chapter 5's experiment: suppress or amplify each method's neurons on the test design,
the change rates per probe and their comparisons.

API
    amplification_experiment(setup, factors, *, batch_size) -> DataFrame, one row per probe (condition, method,
        action, fact_id, relation, prompt_id, p_before, p_after, change_rate, log_ratio)
    per_fact(results, value) -> the mean of value over each fact's probes (the unit of every interval)
    change_rate_table(results, action, *, n_boot, seed) -> DataFrame [method x condition] of kn.base.stats.Interval
    paired_comparisons(per_fact, value, pairs, *, n_boot, seed) -> DataFrame of cluster-bootstrap intervals and
        sentences
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kn.base.progress import track
from kn.base.clustered import cluster_column
from kn.base.stats import cluster_bootstrap_mean, cluster_paired_difference, compare
from kn.experiments.conditions import (
    CONDITIONS,
    InterventionSetup,
    _name,
    condition_prompts,
    method_names,
)
from kn.methods.interventions import answer_probabilities, change_rate

# --------------------------------------------------------------------------- amplification


def amplification_experiment(setup: InterventionSetup, factors: dict, *, batch_size: int = 32,
                             progress: bool = False) -> pd.DataFrame:
    """Scale every method's neurons by each factor ({action: factor}) on each condition's prompt of every designed
    fact. Returns one row per (condition, method, action, fact): p_before, p_after, change_rate."""
    records = []
    design = setup.design
    probes = [(row.fact_id, (row.relation, row.cluster), c, p) for row in design.itertuples()
              for c, ps in condition_prompts(row).items() for p in ps]
    steps = [(c, k, a) for c in CONDITIONS for k in setup.sets for a in factors]
    for condition, key, action in (track(steps, len(steps), "amplification", "run") if progress else steps):
        rows = [r for r in probes if r[2] == condition]
        ids = [setup.input_ids[r[3]] for r in rows]
        targets = setup.prompts.loc[[r[3] for r in rows], "target_id"].tolist()
        neuron_sets = [setup.sets[key][r[0]] for r in rows]
        before, after = answer_probabilities(setup.loaded, ids, targets, neuron_sets, factors[action],
                                             batch_size=batch_size)
        for (fact, (relation, cluster), _, prompt_id), b, a in zip(rows, before, after):
            records.append({"condition": condition, "method": _name(key), "action": action, "fact_id": fact,
                            "relation": relation, "cluster": cluster, "prompt_id": prompt_id, "p_before": b,
                            "p_after": a})
    results = pd.DataFrame(records)
    results["change_rate"] = change_rate(results["p_before"].to_numpy(), results["p_after"].to_numpy())
    with np.errstate(divide="ignore"):
        results["log_ratio"] = np.log(results["p_after"].to_numpy()) - np.log(results["p_before"].to_numpy())
    return results


def per_fact(results: pd.DataFrame, value: str) -> pd.DataFrame:
    """The mean of ``value`` over each fact's probes, per (condition, method, action where present): one row per fact,
    the unit every interval resamples (with its relation and cluster: kn.base.stats.cluster_column)."""
    keys = ([c for c in ("condition", "method", "action") if c in results] + ["fact_id", "relation"]
            + (["cluster"] if "cluster" in results else []))
    return results.groupby(keys, sort=False, as_index=False)[value].mean()


def change_rate_table(results: pd.DataFrame, action: str, *, n_boot: int, seed: int) -> pd.DataFrame:
    """[method x condition] of kn.base.stats.Interval (mean change rate over facts, each fact's probes averaged first,
    with its cluster-bootstrap interval over relations then facts; the median rides along) for one action, methods in
    method_names() order."""
    part = per_fact(results[results["action"] == action], "change_rate")
    table = {}
    for (method, condition), group in part.groupby(["method", "condition"]):
        table.setdefault(method, {})[condition] = cluster_bootstrap_mean(group["change_rate"].to_numpy(),
                                                                         cluster_column(group).to_numpy(),
                                                                         n_boot=n_boot, seed=seed)
    order = [m for m in method_names() if m in table]
    return pd.DataFrame.from_dict(table, orient="index").loc[order, list(CONDITIONS)]


def paired_comparisons(per_fact: pd.DataFrame, value: str, pairs, *, n_boot: int, seed: int, fmt: str = "{:.2f}",
                       by: str = "condition") -> pd.DataFrame:
    """Paired differences between methods over facts.

    per_fact: long rows with columns method, fact_id, relation, ``by`` and ``value`` (a fact's several rows are
    averaged); pairs: [(method A, method B)] display names. Returns one row per (by, A, B): the Interval of
    mean(A - B) over the facts both have, resampled by relation then fact, and its sentence (kn.base.stats.compare)."""
    rows = []
    for level, part in per_fact.groupby(by, sort=False):
        wide = part.pivot_table(index="fact_id", columns="method", values=value, aggfunc="mean")
        relation_of = (dict(zip(part["fact_id"], cluster_column(part)))
                       if "relation" in part or "cluster" in part else {})
        clusters = np.array([relation_of.get(f, f) for f in wide.index])
        for a, b in pairs:
            if a not in wide or b not in wide:
                continue
            interval = cluster_paired_difference(wide[a].to_numpy(float), wide[b].to_numpy(float), clusters,
                                                 n_boot=n_boot, seed=seed)
            rows.append({by: level, "A": a, "B": b, "difference": interval,
                         "sentence": f"{level}: " + compare(a, b, interval, fmt=fmt)})
    return pd.DataFrame(rows)
