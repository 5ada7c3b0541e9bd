"""kn.book.verdicts: the results page counts only the declared primary contrasts (Holm-corrected within their family)
and gives, per primary claim and run, the test facts the paper's effect needs at 80% power."""

from __future__ import annotations

import math
from types import SimpleNamespace

from kn.base.stats import Interval
from kn.book.summaries import Claim
from kn.book.verdicts import across_models, power_lines, primary_counts

FAMILY = "chapter 6: LAND vs KN-refined and Baseline, each vs its random control"


def _run(name, *, primary_holds, exploratory_holds, power):
    editing = SimpleNamespace(claims=[
        Claim("Same: LAND vs Baseline", "", Interval(0.1, 0.02, 0.2, 9), primary_holds, FAMILY, 0.01, 0.03),
        Claim("Same: LAND vs KN-refined", "", Interval(0.0, -0.1, 0.1, 9), None, FAMILY, 0.9, 1.0),
        Claim("LAND's edit is specific", "", Interval(0.1, 0.05, 0.2, 9), exploratory_holds)], power=power)
    return SimpleNamespace(name=name, label=name, short=name, choices=None, overlap=None, land=None,
                           amplification=None, editing=editing)


def test_only_primary_contrasts_are_counted_across_runs():
    runs = [_run("a", primary_holds=True, exploratory_holds=True, power=[]),
            _run("b", primary_holds=False, exploratory_holds=True, power=[])]
    frame = across_models(runs)
    assert frame.loc[("editing", "Same: LAND vs Baseline"), "across runs"] == \
        "favours LAND in 1, Baseline in 1, not distinguishable in 0 of 2 runs"
    assert frame.loc[("editing", "Same: LAND vs Baseline"), "a"] == "favours LAND: 0.10 [0.02, 0.20]"
    assert frame.loc[("editing", "LAND's edit is specific"), "across runs"] == "exploratory: not counted"
    counts = primary_counts(runs)
    assert counts.loc[FAMILY, "a"] == "1 favour A, 0 favour B, 1 not distinguishable (of 2)"
    assert counts.loc[FAMILY, "b"] == "0 favour A, 1 favour B, 1 not distinguishable (of 2)"


def test_more_leakage_on_unrelated_prompts_is_never_tallied_for_the_method_that_leaks():
    """On Unrelated prompts lower is better: LAND leaking more than Baseline (difference > 0, significant) is a
    contrast that favours Baseline (holds False, as edit_contrasts decides it), and the tallies say so."""
    from kn.book.verdicts import verdict

    leak = Claim("Unrelated: LAND vs Baseline", "", Interval(0.2, 0.1, 0.3, 30, n_clusters=15), False, FAMILY, 1e-4,
                 1e-3, "lower")
    runs = [SimpleNamespace(name="a", label="a", short="a", choices=None, overlap=None, land=None,
                            amplification=None, editing=SimpleNamespace(claims=[leak], power=[]))]
    assert verdict("editing", leak) == "favours B"
    assert across_models(runs).loc[("editing", "Unrelated: LAND vs Baseline"), "a"] == "favours Baseline: 0.20 [0.10, 0.30]"
    assert primary_counts(runs).loc[FAMILY, "a"] == "0 favour A, 1 favour B, 0 not distinguishable (of 1)"


def test_power_lines_give_the_facts_needed_per_claim_and_run():
    row = {"claim": "Same: LAND vs Baseline", "paper effect (GPT-2)": 0.13, "test facts needed (80% power)": 81.2,
           "test facts here": 27}
    flat = {**row, "claim": "Related: LAND vs Baseline", "test facts needed (80% power)": math.inf}
    frame = power_lines([_run("a", primary_holds=True, exploratory_holds=True, power=[row, flat])])
    assert frame.loc[("chapter 6", "Same: LAND vs Baseline", "a"), "test facts needed (80% power)"] == "82"
    assert frame.loc[("chapter 6", "Related: LAND vs Baseline", "a"), "test facts needed (80% power)"] == \
        "never (no effect)"
