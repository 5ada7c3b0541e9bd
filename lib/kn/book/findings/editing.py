"""kn.book.findings.editing: chapter 6's tables (Table 10's success rates, updates, erasing) and its summary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kn.base.clustered import cluster_column
from kn.base.stats import Interval, cluster_bootstrap_mean, cluster_share, paired_difference
from kn.book.findings.common import PRIMARY_FAMILY_6, _holds
from kn.book.findings.contrasts import (
    _edit_order,
    _method_pairs,
    edit_contrasts,
    edit_rates,
    power_rows,
    specificity_table,
)
from kn.book.summaries import Claim, EditingSummary
from kn.experiments.amplification import paired_comparisons
from kn.experiments.conditions import CONDITIONS, METHODS, PRIMARY


def rate_means(edits: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """[method x condition] plain means of ``prefix``_<condition> (for a bar chart), methods in table order."""
    table = edits.groupby("method")[[f"{prefix}_{c}" for c in CONDITIONS]].mean()
    table.columns = list(CONDITIONS)
    return table.loc[_edit_order(table.index)]




def rate_table(edits: pd.DataFrame, prefix: str, *, n_boot: int, seed: int) -> pd.DataFrame:
    """[method x condition] of Intervals: the mean over facts of each fact's share of probes with ``prefix``_<condition>
    true, resampled by relation, then fact, and never narrower than the exact interval over the facts
    (kn.base.stats.cluster_share: 0 of 27 facts prints [0%, 13%], not [0%, 0%])."""
    rows = {m: {c: cluster_share(g[f"{prefix}_{c}"].astype(float), cluster_column(g), n_boot=n_boot, seed=seed)
                for c in CONDITIONS} for m, g in edits.groupby("method")}
    return pd.DataFrame.from_dict(rows, orient="index").loc[_edit_order(rows)]


def success_comparisons(edits: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Paired differences of success over facts, per condition (LAND against the others, each method against its
    random control); on Unrelated a positive difference means more leakage."""
    long = pd.concat([edits[["fact_id", "method"]].assign(relation=cluster_column(edits), condition=c,
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
    shares = {"change rate": "changed_Same", "success rate": "success_Same"}  # yes/no per fact: kn.base.stats.cluster_share
    means = {"perplexity within, change": "ppl_within_change", "perplexity across, change": "ppl_across_change"}
    relative = {"perplexity within, relative": "ppl_within_relative",
                "perplexity across, relative": "ppl_across_relative"}
    edited = edits[edits["method"] != "Before"]
    rows = {m: {name: cluster_share(g[col].astype(float), cluster_column(g), n_boot=n_boot, seed=seed)
                for name, col in shares.items()}
            | {name: cluster_bootstrap_mean(g[col].astype(float), cluster_column(g), n_boot=n_boot, seed=seed)
               for name, col in means.items()}
            | {name: _relative_change(g[col], cluster_column(g), n_boot=n_boot, seed=seed)
               for name, col in relative.items()}
            for m, g in edited.groupby("method")}
    order = ["change rate", "success rate", "perplexity within, change", "perplexity within, relative",
             "perplexity across, change", "perplexity across, relative"]
    return pd.DataFrame.from_dict(rows, orient="index").loc[_edit_order(rows), order]


def editing_summary(params, setup, edits: pd.DataFrame, erasing: pd.DataFrame, seconds: float) -> EditingSummary:
    n_boot, seed = params.bootstrap_samples, params.seed
    success = rate_table(edits, "success", n_boot=n_boot, seed=seed)
    update = update_table(edits, n_boot=n_boot, seed=seed)
    contrasts = edit_contrasts(edits, n_boot=n_boot, seed=seed, sizes=setup.set_sizes().to_dict())
    land = METHODS["land"]
    claims = [Claim(f"{r.condition}: {r.A} vs {r.B}", r.sentence, r.difference, r.holds, PRIMARY_FAMILY_6, r.p,
                    r.p_holm, r.direction) for r in contrasts.itertuples()]
    specificity = specificity_table(edits, n_boot=n_boot, seed=seed)
    for method in (METHODS[k] for k in PRIMARY):
        if method in specificity.index:
            interval = specificity.loc[method, "Same minus Unrelated (net)"]
            verdict = specificity.loc[method, "verdict"]
            claims.append(Claim(f"{method}'s edit is specific",
                                f"{method}: success on the Same prompt minus success on Unrelated prompts (each net of "
                                f"Before) is {interval.format('{:+.0%}')} (cluster sign-flip p = "
                                f"{specificity.loc[method, 'p']:.3g}): {verdict}.", interval,
                                True if verdict == "specific" else False if verdict.startswith("leaks") else None))
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
