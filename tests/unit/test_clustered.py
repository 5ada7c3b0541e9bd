"""The fact as the unit, relations as the clusters: kn.base.clustered's exact sign-flip test, its floor, the design
effect and power; kn.data.clusters' merging of relations that hold the same prompts; intervals that are never
zero-width; verdicts over seeds that say "not distinguishable" where nothing was shown."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from kn.base.clustered import (
    cluster_sign_flip_p,
    design_effect,
    facts_needed,
    min_detectable_effect,
    min_sign_flip_p,
)
from kn.base.stats import bootstrap_mean, cluster_bootstrap_mean, cluster_share, power_mean_n
from kn.data.clusters import relation_clusters


def _brute_force_p(values, clusters) -> float:
    sums = {}
    for v, c in zip(values, clusters):
        sums[c] = sums.get(c, 0.0) + v
    s = np.array(list(sums.values()))
    observed = abs(s.sum())
    totals = [abs(np.dot(signs, s)) for signs in itertools.product([1, -1], repeat=len(s))]
    return float(np.mean([t >= observed - 1e-12 for t in totals]))


def test_the_sign_flip_test_is_exact_and_flips_whole_clusters():
    rng = np.random.default_rng(3)
    values = rng.normal(0.3, 1.0, 40)
    clusters = rng.integers(0, 9, 40)
    assert cluster_sign_flip_p(values, clusters) == pytest.approx(_brute_force_p(values, clusters))
    # 17 clusters go through the two-level enumeration (16 at once, the rest pattern by pattern)
    values, clusters = rng.normal(0.2, 1.0, 51), np.arange(51) % 17
    assert cluster_sign_flip_p(values, clusters) == pytest.approx(_brute_force_p(values, clusters))
    assert cluster_sign_flip_p(np.ones(12), np.arange(12)) == pytest.approx(min_sign_flip_p(12)) == 2 / 2 ** 12
    # one cluster can never be evidence: its sign flips give the same |sum|
    assert cluster_sign_flip_p(np.ones(30), np.zeros(30)) == 1.0 and min_sign_flip_p(1) == 1.0
    assert cluster_sign_flip_p(np.zeros(5), np.arange(5)) == 1.0
    # many clusters: Monte Carlo, never 0
    p = cluster_sign_flip_p(np.ones(30), np.arange(30), n_perm=5000)
    assert 0 < p <= 1 / 5001 * 2


def test_the_floor_of_the_default_runs_former_design_is_above_holms_first_step():
    """Ten relations in 8 clusters (P176/P178, P364/P407 merged): no primary claim of a family of 15 could hold."""
    assert min_sign_flip_p(8) == pytest.approx(0.0078125) and min_sign_flip_p(8) > 0.05 / 15
    assert min_sign_flip_p(12) < 0.05 / 15


def test_relations_that_hold_the_same_prompts_are_one_cluster():
    facts = pd.DataFrame({"relation": ["P176", "P178", "P176", "P47", "P530", "P19"],
                          "subject": ["iPhone", "iPhone", "Golf", "France", "France", "Bach"],
                          "object": ["Apple", "Apple", "Volkswagen", "Spain", "Spain", "Eisenach"]})
    templates = pd.DataFrame({"relation": ["P176", "P178", "P47", "P530", "P19"],
                              "template": ["[X] is made by [Y].", "[X] is made by [Y].", "[X] borders [Y].",
                                           "[X] has relations with [Y].", "[X] was born in [Y]."]})
    clusters = relation_clusters(facts, templates)
    assert clusters["P176"] == clusters["P178"] == "P176+P178"  # a shared pair under a shared wording: twins
    assert clusters["P47"] == "P47" and clusters["P530"] == "P530"  # a shared pair, different questions
    assert clusters["P19"] == "P19"
    assert relation_clusters(facts)["P47"] == "P47+P530"  # pairs alone would merge them


def test_a_facts_other_relation_pool_never_holds_its_twin():
    from kn.methods.detectors import overlap_by_fact

    rows = []
    for relation, cluster in (("P176", "P176+P178"), ("P178", "P176+P178"), ("P30", "P30")):
        for f in range(2):
            for t in range(3):
                rows.append({"prompt_id": f"{relation}:{f}#{t}", "fact_id": f"{relation}:{f}", "relation": relation,
                             "cluster": cluster, "template_position": t})
    prompts = pd.DataFrame(rows)
    # twins share their sets exactly; the other cluster shares nothing
    sets = {p: frozenset({1, 2, 3} if p.startswith(("P176:0", "P178:0")) else {10 + hash(p) % 50})
            for p in prompts["prompt_id"]}
    with_clusters = overlap_by_fact(prompts, sets, seed=0)
    without = overlap_by_fact(prompts.drop(columns="cluster"), sets, seed=0)
    assert without.loc["P176:0", "across_other_relation"] > 0  # the twin counted as "another relation"
    assert with_clusters.loc["P176:0", "across_other_relation"] == 0.0


def test_equal_values_never_give_a_zero_width_interval():
    none = bootstrap_mean(np.ones(4))
    assert np.isnan(none.lo) and not none.excludes_zero and not none.decidable
    share = bootstrap_mean(np.ones(4), bounds=(0.0, 1.0))
    assert share.lo < 1.0 == share.hi and share.lo == pytest.approx(0.025 ** (1 / 4))  # Clopper-Pearson, 4 of 4
    clustered = cluster_bootstrap_mean(np.zeros(6), np.arange(6) % 3, bounds=(-1.0, 1.0))
    assert clustered.lo < 0 < clustered.hi and clustered.n_clusters == 3
    assert cluster_share(np.zeros(27), np.arange(27) % 9).hi == pytest.approx(1 - 0.025 ** (1 / 27))
    one = cluster_bootstrap_mean([0.4], ["R"])
    assert not one.decidable and one.n_clusters == 1


def test_the_design_effect_and_power_at_holms_level():
    rng = np.random.default_rng(0)
    clusters = np.repeat(np.arange(10), 5)
    shared = np.repeat(rng.normal(0, 1, 10), 5)  # facts of a relation move together
    effect, icc = design_effect(shared + rng.normal(0, 0.3, 50), clusters)
    assert icc > 0.7 and effect == pytest.approx(1 + 4 * icc)
    assert design_effect(rng.normal(0, 1, 50), clusters)[1] < 0.3
    assert design_effect([1.0, 2.0], ["a", "b"]) == (1.0, 1.0)  # one fact per cluster: m = 1 whatever the ICC
    base = power_mean_n(0.1, 0.3, alpha=0.05)
    assert facts_needed(0.1, 0.3, alpha=0.05 / 15) > base  # Holm's first step needs more facts than 0.05
    assert facts_needed(0.1, 0.3, alpha=0.05, design_effect=2.0) == pytest.approx(2 * base)
    assert min_detectable_effect(0.3, 26, 12, alpha=0.05 / 15, design_effect=1.2) > 0
    assert min_detectable_effect(0.3, 27, 8, alpha=0.05 / 15) == float("inf")  # the floor is above the level


def test_holding_at_no_seed_is_not_refuted():
    from kn.book.findings.land import _seed_reading

    never = SimpleNamespace(holds_at_every_seed=False, opposite_at_every_seed=False, n_true=0, n_seeds=5)
    assert _seed_reading(never) == "not distinguishable here (holds at 0 of 5 seeds)"
    refuted = SimpleNamespace(holds_at_every_seed=False, opposite_at_every_seed=True, n_true=0, n_seeds=5)
    assert _seed_reading(refuted).startswith("does not hold")
    always = SimpleNamespace(holds_at_every_seed=True, opposite_at_every_seed=False, n_true=5, n_seeds=5)
    assert _seed_reading(always).startswith("holds")


def test_a_run_of_one_cluster_pairs_unrelated_facts_across_relations_but_never_twins():
    from kn.experiments.conditions import design_conditions

    rows = []
    for relation in ("P176", "P178"):
        for f, (subject, obj) in enumerate([("iPhone", "Apple"), ("Golf", "VW"), (f"x{relation}", "Sony")]):
            for t in range(4):
                rows.append({"prompt_id": f"{relation}:{f}#{t}", "fact_id": f"{relation}:{f}", "relation": relation,
                             "cluster": "P176+P178", "template_position": t, "split": "test", "subject": subject,
                             "object": obj})
    design = design_conditions(pd.DataFrame(rows), unrelated="other_relation", unrelated_partners=2).set_index("fact_id")
    assert design.loc["P176:0", "unrelated_facts"] == ["P178:1", "P178:2"]  # P178:0 is its twin (iPhone, Apple)
    assert all(f.split(":")[0] != fact.split(":")[0] for fact, fs in design["unrelated_facts"].items() for f in fs)


def _overlap_study(land_fs, prior_fs, nearest_fs, clusters):
    facts = [f"f{i}" for i in range(len(land_fs))]
    frame = lambda v: pd.DataFrame({"fact_specific": np.asarray(v, float)}, index=pd.Index(facts, name="fact_id"))
    return SimpleNamespace(overlap={"land": frame(land_fs), "relation_prior": frame(prior_fs),
                                    "nearest_neighbour": frame(nearest_fs)},
                           fact_cluster=dict(zip(facts, clusters)))


def test_chapter_4s_overlap_claims_hold_only_where_the_cluster_test_backs_the_interval():
    """Chapter 4's "LAND beats the relation prior" was decided by its interval alone. Two clusters, every fact 10
    points above the prior: the interval excludes 0, but no sign-flip p below 0.5 is possible, so it must read "not
    distinguishable"; with twelve clusters the same facts are decided (p = 2/2^12, Holm 3 x that)."""
    from kn.book.findings.land import TESTED_OVERLAP_CLAIMS, tested_overlap_claims
    from kn.book.findings.common import interval_table
    from kn.book.verdicts import verdict

    rng = np.random.default_rng(0)
    land = 0.2 + rng.uniform(0, 0.02, 24)
    for clusters, decided in (([0] * 12 + [1] * 12, False), (list(np.repeat(np.arange(12), 2)), True)):
        study = _overlap_study(land, land - 0.1 - rng.uniform(0, 0.02, 24), land, clusters)
        land_fs = interval_table(study.overlap["land"], ["fact_specific"],
                                 clusters=np.asarray(clusters, dtype=object), n_boot=500, seed=0)["fact_specific"]
        claims = {c.name: c for c in tested_overlap_claims(study, land_fs, n_boot=500, seed=0)}
        assert list(claims) == list(TESTED_OVERLAP_CLAIMS)
        prior = claims["LAND beats the relation prior"]
        assert prior.interval.lo > 0  # the interval alone would say "holds"
        assert prior.holds is (True if decided else None)
        assert verdict("land", prior) == ("holds" if decided else "not distinguishable")
        assert prior.p_value == pytest.approx(2 / 2 ** 12 if decided else 0.5)  # all clusters on one side: the floor
        assert prior.p_holm == pytest.approx(min(1.0, 3 * prior.p_value) if decided else 1.0)
        assert claims["LAND beats the nearest neighbour"].holds is None  # no difference at all: p = 1
        assert claims["LAND is specific to the fact"].holds is (True if decided else None)
