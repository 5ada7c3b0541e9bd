"""Chapters 5 and 6's verdicts on hand-built outcomes: exact rates, McNemar's discordant counts and Holm within the
declared family, specificity net of Before, the log-ratio family, both readings of Table 9, and the power rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kn.base.stats import Interval
from kn.book import findings
from kn.experiments.conditions import CONDITIONS


def _edits(n_facts: int = 8, n_relations: int = 4, land_leaks_every: int = 0) -> pd.DataFrame:
    """LAND succeeds on every Same prompt, KN-refined on none, Baseline on half; Baseline also leaks onto every
    Unrelated prompt (and LAND onto one of its two on every land_leaks_every-th fact). Two Related and two Unrelated
    probes per fact; fact i is of relation i % n_relations."""
    rows = []
    for i in range(n_facts):
        fact, relation = f"P{i % n_relations}:{i}", f"P{i % n_relations}"
        land_leak = [1, 0] if land_leaks_every and i % land_leaks_every == 0 else [0, 0]
        hits = {"Before": (0, [0, 0], [0, 0]), "LAND": (1, [1, 0], land_leak), "KN-refined": (0, [0, 0], [0, 0]),
                "Baseline": (i % 2, [1, 1], [1, 1]), "Random (LAND)": (0, [0, 0], [0, 0]),
                "Random (KN-refined)": (0, [0, 0], [0, 0]), "Random (Baseline)": (0, [0, 0], [0, 0]),
                "LAND, top 5": (1, [1, 1], [0, 0])}
        for method, (same, related, unrelated) in hits.items():
            variant = "before" if method == "Before" else ("top 5" if "top" in method else "paper")
            outcomes = {"Same": [same], "Related": related, "Unrelated": unrelated}
            rows.append({"fact_id": fact, "relation": relation, "method": method, "variant": variant,
                         **{f"outcomes_{c}": o for c, o in outcomes.items()},
                         **{f"success_{c}": float(np.mean(o)) for c, o in outcomes.items()}})
    return pd.DataFrame(rows)


def test_edit_rates_are_exact_over_every_probe():
    rates = findings.edit_rates(_edits())
    assert (rates["LAND"]["Same"].k, rates["LAND"]["Same"].n) == (8, 8) and rates["LAND"]["Same"].lo < 1
    assert (rates["LAND"]["Related"].k, rates["LAND"]["Related"].n) == (8, 16)
    zero = rates["KN-refined"]["Same"]
    assert zero.k == 0 and zero.hi == pytest.approx(1 - 0.025 ** (1 / 8))  # never [0%, 0%]
    assert set(findings.edit_rates(_edits(), "top 5")) == {"LAND, top 5"}


LAND_NET, KN_NET, BASELINE_NET = (findings.net_name(m) for m in ("LAND", "KN-refined", "Baseline"))


def test_edit_contrasts_decide_on_facts_with_relation_clusters():
    table = findings.edit_contrasts(_edits(32, n_relations=16), n_boot=200, seed=0,
                                    sizes={"LAND": 25.8, "KN-refined": 3.9}).set_index(["condition", "A", "B"])
    row = table.loc[("Same", LAND_NET, KN_NET)]  # the random controls succeed on nothing: net = raw here
    assert pd.isna(row["n"])  # no McNemar table for a difference-in-differences
    assert row["n_facts"] == 32 and row["n_clusters"] == 16
    assert row["p"] == pytest.approx(2 * 0.5 ** 16)  # the exact sign flip over 16 clusters, not over 32 probes
    assert row["p_holm"] < 0.05 and row["holds"] is True and f"favours {LAND_NET}" in row["sentence"]
    assert "LAND 25.8 and KN-refined 3.9 neurons, each against a random control of its own size" in row["sentence"]
    assert len(table) == 3 * 5  # the declared family: 5 pairs x 3 conditions, and nothing else
    baseline = table.loc[("Same", LAND_NET, BASELINE_NET)]  # Baseline succeeds on even facts: 8 clusters differ
    assert baseline["p"] == pytest.approx(2 * 0.5 ** 8) and baseline["p_holm"] > 0.05 and baseline["holds"] is None
    assert row["floor"] == pytest.approx(2 * 0.5 ** 16) and row["holm_level"] == pytest.approx(0.05 / 15)
    control = table.loc[("Same", "LAND", "Random (LAND)")]
    assert (control["a_only"], control["b_only"], control["n"]) == (32, 0, 32)  # the probes, descriptive


def test_a_difference_that_the_sets_size_explains_is_not_a_difference_between_methods():
    """LAND's set is larger than KN-refined's, and touching more neurons moves more: LAND and its random control (of
    LAND's size) both succeed on every fact, KN-refined and its control (of KN-refined's size) on none. The raw
    contrast at the papers' sizes favours LAND by 100 points; the primary family compares each net of its own control,
    and finds no difference between the methods."""
    rows = []
    for i in range(32):
        fact, relation = f"R{i % 16}:{i}", f"R{i % 16}"
        for method, yes in (("Before", 0), ("LAND", 1), ("Random (LAND)", 1), ("KN-refined", 0),
                            ("Random (KN-refined)", 0), ("Baseline", 0), ("Random (Baseline)", 0)):
            outcomes = [yes, yes]
            rows.append({"fact_id": fact, "relation": relation, "method": method,
                         "variant": "before" if method == "Before" else "paper",
                         **{f"outcomes_{c}": outcomes for c in CONDITIONS},
                         **{f"success_{c}": float(yes) for c in CONDITIONS}})
    edits = pd.DataFrame(rows)
    table = findings.edit_contrasts(edits, n_boot=200, seed=0).set_index(["condition", "A", "B"])
    assert not any(a == "LAND" and b == "KN-refined" for _, a, b in table.index)  # the raw pair is not primary
    for condition in CONDITIONS:
        row = table.loc[(condition, LAND_NET, KN_NET)]
        assert row["difference"].mean == 0 and row["holds"] is None and "not distinguishable" in row["sentence"]
    raw = findings.success_comparisons(edits, n_boot=200, seed=0).set_index(["condition", "A", "B"])
    assert raw.loc[("Same", "LAND", "KN-refined")].iloc[0].mean == pytest.approx(1.0)  # what the raw contrast says
    # the same in chapter 5's family: LAND and its control double P(answer), KN-refined and its control do not move it
    amplify = _amplification()
    for method, factor in (("Random (LAND)", 2.0), ("KN-refined", 1.0), ("Random (KN-refined)", 1.0)):
        chosen = amplify["method"] == method
        amplify.loc[chosen, "p_after"] = amplify.loc[chosen, "p_before"] * factor
    amplify["log_ratio"] = np.log(amplify["p_after"] / amplify["p_before"])
    amplify["change_rate"] = amplify["p_after"] / amplify["p_before"] - 1
    contrasts = findings.log_ratio_contrasts(amplify, n_boot=200, seed=0).set_index(["condition", "A", "B"])
    assert contrasts.loc[("Same", LAND_NET, KN_NET), "holds"] is None
    assert abs(contrasts.loc[("Same", LAND_NET, KN_NET), "difference"].mean) < 0.05


def test_one_relation_that_succeeds_on_every_probe_is_not_a_finding():
    """30 facts in 5 relations, 3 probes each; A succeeds on every probe of one relation's 6 facts, B on none. Pooled
    probes give McNemar 18 vs 0 of 90 (p = 7.6e-6); the fact is the unit and the relation the cluster, so it is one
    cluster's worth of evidence: not distinguishable."""
    from kn.base.stats import mcnemar_exact

    rows = []
    for i in range(30):
        fact, relation = f"R{i % 5}:{i}", f"R{i % 5}"
        for method in ("Before", "LAND", "KN-refined", "Baseline", "Random (LAND)", "Random (KN-refined)",
                       "Random (Baseline)"):
            yes = [1, 1, 1] if method == "LAND" and relation == "R0" else [0, 0, 0]
            rows.append({"fact_id": fact, "relation": relation, "method": method,
                         "variant": "before" if method == "Before" else "paper",
                         **{f"outcomes_{c}": yes for c in CONDITIONS},
                         **{f"success_{c}": float(np.mean(yes)) for c in CONDITIONS}})
    edits = pd.DataFrame(rows)
    pooled = mcnemar_exact([1] * 18 + [0] * 72, [0] * 90)
    assert pooled.p_value == pytest.approx(7.6e-6, rel=0.02)  # what counting probes would say
    table = findings.edit_contrasts(edits, n_boot=500, seed=0).set_index(["condition", "A", "B"])
    row = table.loc[("Related", LAND_NET, KN_NET)]
    control = table.loc[("Related", "LAND", "Random (LAND)")]
    assert (control["a_only"], control["b_only"], control["n"]) == (18, 0, 90)
    assert control["p"] == 1.0 and control["holds"] is None
    assert row["p"] == 1.0 and row["holds"] is None and "not distinguishable" in row["sentence"]
    assert row["difference"].covers(0.0)


def test_more_leakage_on_unrelated_prompts_favours_the_other_method():
    edits = _edits(32, n_relations=16, land_leaks_every=1)  # LAND leaks on every fact, its random control never
    table = findings.edit_contrasts(edits, n_boot=200, seed=0).set_index(["condition", "A", "B"])
    row = table.loc[("Unrelated", "LAND", "Random (LAND)")]
    assert row["direction"] == "lower" and row["difference"].mean > 0
    assert row["holds"] is False and "favours Random (LAND)" in row["sentence"]
    words = findings.contrasts_table(table.reset_index()).loc[("Unrelated", "LAND", "Random (LAND)"), "verdict"]
    assert words == "favours Random (LAND)"


def test_specificity_is_same_minus_unrelated_each_net_of_before():
    table = findings.specificity_table(_edits(32, n_relations=16, land_leaks_every=4), n_boot=200, seed=0)
    land = table.loc["LAND", "Same minus Unrelated (net)"]
    assert land.mean == pytest.approx(1.0 - 8 * 0.5 / 32) and table.loc["LAND", "verdict"] == "specific"
    baseline = table.loc["Baseline", "Same minus Unrelated (net)"]
    assert baseline.mean == pytest.approx(0.5 - 1.0) and table.loc["Baseline", "verdict"] != "specific"
    # Same is net of Before too: a Before that already answers t' on the Same prompt takes that success away
    edits = _edits(32, n_relations=16, land_leaks_every=4)
    edits.loc[edits["method"] == "Before", "success_Same"] = 1.0
    assert table.loc["LAND", "p"] < 0.05
    assert findings.specificity_table(edits, n_boot=200, seed=0).loc["LAND", "Same minus Unrelated (net)"].mean < 0
    # four clusters cannot decide it, whatever the facts say
    assert findings.specificity_table(_edits(8, land_leaks_every=4), n_boot=200, seed=0).loc["LAND", "verdict"] \
        == "not distinguishable here"


def test_power_rows_use_the_holm_level_the_design_effect_and_give_the_detectable_difference():
    contrasts = findings.edit_contrasts(_edits(32, n_relations=16, land_leaks_every=4), n_boot=100, seed=0)
    rows = {r["claim"]: r for r in findings.power_rows(contrasts, "06")}
    assert len(rows) == 15  # every primary contrast
    same = rows[f"Same: {LAND_NET} vs {BASELINE_NET}"]  # planned for the paper's raw difference
    assert same["paper effect (GPT-2)"] == pytest.approx(0.2581 - 0.1498) and same["test facts here"] == 32
    assert same["level (Holm's first step)"] == pytest.approx(0.05 / 15)
    from kn.base.stats import power_mean_n

    at_holm = power_mean_n(same["paper effect (GPT-2)"], 0.5, alpha=0.05 / 15)
    assert at_holm > power_mean_n(same["paper effect (GPT-2)"], 0.5)  # Holm's level needs more facts than 0.05
    assert same["design effect"] >= 1 and np.isfinite(same["smallest detectable difference here"])
    assert np.isnan(rows["Same: Baseline vs Random (Baseline)"]["paper effect (GPT-2)"])
    few = {r["claim"]: r for r in findings.power_rows(findings.edit_contrasts(_edits(), n_boot=100, seed=0), "06")}
    assert few[f"Same: {LAND_NET} vs {BASELINE_NET}"]["smallest detectable difference here"] == float("inf")  # 4 clusters


def _amplification(n_facts: int = 12, n_relations: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_facts):
        for condition in CONDITIONS:
            for method, gain in (("LAND", 2.0), ("KN-refined", 1.0), ("Baseline", 1.0), ("Random (LAND)", 1.0),
                                 ("Random (KN-refined)", 1.0), ("Random (Baseline)", 1.0)):
                before = float(rng.uniform(0.01, 0.5))
                after = before * gain * float(np.exp(rng.normal(0, 0.01)))
                rows.append({"condition": condition, "method": method, "action": "amplify", "fact_id": f"f{i}",
                             "relation": f"R{i % n_relations}", "prompt_id": f"f{i}#{condition}", "p_before": before,
                             "p_after": after, "change_rate": after / before - 1,
                             "log_ratio": np.log(after) - np.log(before)})
    return pd.DataFrame(rows)


def test_the_log_ratio_family_and_both_readings_of_table_9():
    results = _amplification()
    table = findings.log_ratio_contrasts(results, n_boot=1000, seed=0).set_index(["condition", "A", "B"])
    doubled = table.loc[("Same", LAND_NET, KN_NET)]
    assert doubled["difference"].mean == pytest.approx(np.log(2), abs=0.02) and doubled["holds"] is True
    assert doubled["p"] == pytest.approx(2 * 0.5 ** 12)  # exact: 12 clusters, every one the same way
    three = findings.log_ratio_contrasts(_amplification(12, 3), n_boot=1000, seed=0).set_index(["condition", "A", "B"])
    assert three.loc[("Same", LAND_NET, KN_NET), "holds"] is None  # 3 clusters: the floor is 0.25
    assert table.loc[("Same", "KN-refined", "Random (KN-refined)"), "holds"] is None
    readings = findings.table9_readings({"LAND": {c: Interval(1.0, 0.9, 1.1, 12) for c in CONDITIONS}})
    assert readings.loc[("LAND, GPT-2, read as ratios", "LAND"), "Same"] == pytest.approx(3.21)
    assert readings.loc[("LAND, GPT-2, read as percents", "LAND"), "Same"] == pytest.approx(0.0321)
    assert readings.loc[("ours (a ratio)", "LAND"), "Same"] == 1.0


def test_a_metric_over_seeds_never_prints_nan_or_a_zero_width_range():
    """Chapter 4's seed tables: no seed measured it -> a dash (a run of one cluster has no other-relation pool); the
    seeds agree -> the value once (never "x [x, x]"); else mean [min, max]."""
    from kn.book.findings.land import seed_range

    nan = float("nan")
    assert seed_range(nan, nan, nan, "{:.1%}") == "–"
    assert seed_range(0.098, 0.098, 0.098, "{:.1%}") == "9.8%"
    assert seed_range(28.2, 28.2, 28.2, "{:.1f}") == "28.2"
    assert seed_range(0.172, 0.170, 0.174, "{:.1%}") == "17.2% [17.0%, 17.4%]"
