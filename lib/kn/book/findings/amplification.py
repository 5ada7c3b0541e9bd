"""kn.book.findings.amplification: chapter 5's tables (Table 9's change rates, per relation, medians) and its summary.

API
    amplification_summary(...) -> AmplificationSummary;  editing_summary(...) -> EditingSummary
"""

from __future__ import annotations

import pandas as pd

from kn.base import paper
from kn.book.findings.common import PRIMARY_FAMILY_5
from kn.book.findings.contrasts import (
    _method_pairs,
    log_ratio_contrasts,
    log_ratio_table,
    power_rows,
)
from kn.book.summaries import AmplificationSummary, Claim
from kn.experiments.amplification import change_rate_table, paired_comparisons
from kn.experiments.conditions import CONDITIONS, METHODS, random_name


def medians(table: pd.DataFrame) -> pd.DataFrame:
    """The medians riding in a table of Intervals."""
    return table.map(lambda i: i.median)


def change_rate_comparisons(results: pd.DataFrame, action: str, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Paired differences of change rate over facts, per condition: LAND against the other methods, and every method
    against its random control (kn.experiments.amplification.paired_comparisons)."""
    part = results[results["action"] == action]
    return paired_comparisons(part, "change_rate", _method_pairs(), n_boot=n_boot, seed=seed)


def per_relation_change(results: pd.DataFrame, methods) -> pd.DataFrame:
    """Mean change rate on the Same prompt per (action, relation) for ``methods`` (columns)."""
    same = results[(results["condition"] == "Same") & results["method"].isin(methods)]
    return same.groupby(["action", "relation", "method"])["change_rate"].mean().unstack()[list(methods)]


def amplification_summary(params, setup, results: pd.DataFrame, seconds: float) -> AmplificationSummary:
    n_boot, seed = params.bootstrap_samples, params.seed
    tables = {a: change_rate_table(results, a, n_boot=n_boot, seed=seed) for a in ("amplify", "suppress")}
    contrasts = log_ratio_contrasts(results, n_boot=n_boot, seed=seed, sizes=setup.set_sizes().to_dict())
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
