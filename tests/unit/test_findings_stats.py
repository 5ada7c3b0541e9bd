"""Chapters 5 and 6's verdicts on hand-built outcomes: exact rates, McNemar's discordant counts and Holm within the
declared family, specificity net of Before, the log-ratio family, both readings of Table 9, and the power rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kn.base.stats import Interval
from kn.book import findings
from kn.experiments.conditions import CONDITIONS


def _edits(n_facts: int = 8) -> pd.DataFrame:
    """LAND succeeds on every Same prompt, KN-refined on none, Baseline on half; Baseline also leaks onto every
    Unrelated prompt. Two Related and two Unrelated probes per fact."""
    rows = []
    for i in range(n_facts):
        fact, relation = f"P{i % 4}:{i}", f"P{i % 4}"
        hits = {"Before": (0, [0, 0], [0, 0]), "LAND": (1, [1, 0], [0, 0]), "KN-refined": (0, [0, 0], [0, 0]),
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


def test_edit_contrasts_show_the_discordant_counts_and_are_holm_corrected():
    table = findings.edit_contrasts(_edits(16), n_boot=200, seed=0).set_index(["condition", "A", "B"])
    row = table.loc[("Same", "LAND", "KN-refined")]
    assert (row["a_only"], row["b_only"], row["n"]) == (16, 0, 16)
    assert row["p"] == pytest.approx(2 * 0.5 ** 16) and row["p_holm"] >= row["p"] and row["holds"] is True
    assert len(table) == 3 * 5  # the declared family: 5 pairs x 3 conditions, and nothing else
    baseline = table.loc[("Same", "LAND", "Baseline")]
    assert (baseline["a_only"], baseline["b_only"]) == (8, 0) and baseline["p"] == pytest.approx(2 * 0.5 ** 8)
    assert baseline["p"] < 0.05 and baseline["p_holm"] > 0.05 and baseline["holds"] is None  # Holm decides
    assert "discordant" in table.loc[("Unrelated", "LAND", "Baseline"), "sentence"]


def test_specificity_is_same_minus_unrelated_net_of_before():
    table = findings.specificity_table(_edits(), n_boot=200, seed=0)
    land = table.loc["LAND", "Same minus Unrelated (net)"]
    assert land.mean == pytest.approx(1.0) and table.loc["LAND", "verdict"] == "specific"
    baseline = table.loc["Baseline", "Same minus Unrelated (net)"]
    assert baseline.mean == pytest.approx(0.5 - 1.0) and table.loc["Baseline", "verdict"] != "specific"


def test_power_rows_need_more_facts_when_the_method_disagree_more():
    contrasts = findings.edit_contrasts(_edits(), n_boot=100, seed=0)
    rows = {r["claim"]: r for r in findings.power_rows(contrasts, "06")}
    assert set(rows) == {"Same: LAND vs KN-refined", "Same: LAND vs Baseline", "Related: LAND vs KN-refined",
                         "Related: LAND vs Baseline"}
    same = rows["Same: LAND vs KN-refined"]
    assert same["paper effect (GPT-2)"] == pytest.approx(0.2581 - 0.2049) and same["test facts here"] == 8
    assert same["test facts needed (80% power)"] > 8


def _amplification(n_facts: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_facts):
        for condition in CONDITIONS:
            for method, gain in (("LAND", 2.0), ("KN-refined", 1.0), ("Baseline", 1.0), ("Random (LAND)", 1.0),
                                 ("Random (KN-refined)", 1.0), ("Random (Baseline)", 1.0)):
                before = float(rng.uniform(0.01, 0.5))
                after = before * gain * float(np.exp(rng.normal(0, 0.01)))
                rows.append({"condition": condition, "method": method, "action": "amplify", "fact_id": f"f{i}",
                             "relation": f"R{i % 3}", "prompt_id": f"f{i}#{condition}", "p_before": before,
                             "p_after": after, "change_rate": after / before - 1,
                             "log_ratio": np.log(after) - np.log(before)})
    return pd.DataFrame(rows)


def test_the_log_ratio_family_and_both_readings_of_table_9():
    results = _amplification()
    # a bootstrap p is at least 2 / (n_boot + 1): within a family of 15, Holm needs n_boot in the thousands
    table = findings.log_ratio_contrasts(results, n_boot=2000, seed=0).set_index(["condition", "A", "B"])
    doubled = table.loc[("Same", "LAND", "KN-refined")]
    assert doubled["difference"].mean == pytest.approx(np.log(2), abs=0.02) and doubled["holds"] is True
    assert table.loc[("Same", "KN-refined", "Random (KN-refined)"), "holds"] is None
    readings = findings.table9_readings({"LAND": {c: Interval(1.0, 0.9, 1.1, 12) for c in CONDITIONS}})
    assert readings.loc[("LAND, GPT-2, read as ratios", "LAND"), "Same"] == pytest.approx(3.21)
    assert readings.loc[("LAND, GPT-2, read as percents", "LAND"), "Same"] == pytest.approx(0.0321)
    assert readings.loc[("ours (a ratio)", "LAND"), "Same"] == 1.0
