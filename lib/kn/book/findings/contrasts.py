"""kn.book.findings.contrasts: the declared primary contrasts of chapters 5 and 6 (McNemar's exact test or a cluster
bootstrap per pair, Holm within each chapter's family), exact rates, specificity and power.

API
    primary_pairs() -> [(A, B)]   the declared family of chapters 5 and 6 (per condition): LAND vs KN-refined, LAND vs
        Baseline, each of Baseline, KN-refined and LAND vs its random control; Holm-corrected within each chapter
    log_ratio_contrasts(results, *, n_boot, seed) -> DataFrame   chapter 5's family on log(P_after / P_before)
    table9_readings(amplify) -> DataFrame      the paper's Table 9 read as ratios and as percents, beside ours
    edit_rates(edits, variant="paper") -> {method: {condition: Rate}}   exact rates over every probe outcome
    edit_contrasts(edits, *, n_boot, seed) -> DataFrame        chapter 6's family: McNemar exact, Holm, intervals
    specificity_table(edits, *, n_boot, seed) -> DataFrame     Same minus Unrelated success (net of Before), paired
    power_rows(contrasts, chapter) -> [dict]   test facts needed for the paper's effect at 80% power
    rates_table(rates), contrasts_table(contrasts), power_table(rows) -> DataFrame   the same, for the page
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kn.base import paper
from kn.base.stats import (
    Interval,
    cluster_bootstrap_mean,
    cluster_bootstrap_p,
    cluster_paired_difference,
    holm,
    mcnemar_exact,
    power_mcnemar_n,
    power_mean_n,
    rate,
)
from kn.experiments.amplification import per_fact
from kn.experiments.conditions import (
    CONDITIONS,
    METHODS,
    PRIMARY,
    method_names,
    random_name,
)

# --------------------------------------------------------------------------- chapters 5 and 6


def _method_pairs() -> list[tuple[str, str]]:
    land = METHODS["land"]
    return ([(land, METHODS["kn_refined"]), (land, METHODS["baseline"]), (land, METHODS["relation_prior"]),
             (land, METHODS["nearest_neighbour"])] + [(name, random_name(key)) for key, name in METHODS.items()])


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
    return _holm_family(rows, "{:+.2f}", lambda r, words: (
        f"{r.condition}: {words} in log(P after / P before) (bootstrap p = {r.p:.3g}, Holm {r.p_holm:.3g}, "
        f"n = {r.difference.n} facts)."))


def _holm_family(rows: list[dict], fmt: str, sentence) -> pd.DataFrame:
    """A declared family's table: Holm's correction over its rows' p, each row's verdict (holds) and its sentence,
    ``sentence(row, verdict words)``."""
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_holm"] = holm(table["p"].to_numpy())
    words = [_verdict(r.A, r.B, r.difference, r.p_holm, fmt) for r in table.itertuples()]
    table["holds"] = [w[0] for w in words]
    table["sentence"] = [sentence(r, w[1]) for r, w in zip(table.itertuples(), words)]
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
    return _holm_family(rows, "{:+.0%}", lambda r, words: (
        f"{r.condition}: {words} in edit success ({r.a_only} vs {r.b_only} discordant of {r.n} prompts, McNemar "
        f"exact p = {r.p:.3g}, Holm {r.p_holm:.3g})."
        + (" On Unrelated prompts more success means more leakage." if r.condition == "Unrelated" else "")))


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
    """[method x condition] of kn.base.stats.Rate (shown as "22% [7%, 41%] (6/27)"), methods in table order."""
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


def _edit_order(present) -> list[str]:
    return [m for m in ["Before"] + method_names() if m in set(present)]
