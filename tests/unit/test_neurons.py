"""Tests of kn.base.neurons against hand-computed examples."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from kn.base.neurons import (
    coarse_set,
    coarse_set_sparse,
    flat_id,
    layer_index,
    refine_fact,
    refine_relation,
    to_flat_set,
    to_pairs,
)
from kn.base.overlap import (
    fact_overlap,
    layer_histogram,
    overlap_table,
    pair_intersections,
    summarize_overlap,
)

F = frozenset


# ----------------------------------------------------------------------------- ids


def test_id_helpers_roundtrip():
    assert flat_id(2, 3, 10) == 23
    assert layer_index(23, 10) == (2, 3)
    assert layer_index(0, 10) == (0, 0)
    pairs = [(0, 9), (3, 0), (1, 4)]
    ids = to_flat_set(pairs, 10)
    assert ids == F({9, 30, 14})
    assert to_pairs(ids, 10) == sorted(pairs)
    with pytest.raises(ValueError):
        flat_id(0, 10, 10)


# ----------------------------------------------------------------------------- coarse sets


def test_coarse_set_threshold_is_strict():
    scores = np.array([[1.0, 2.0], [3.0, 4.0]])  # flat ids 0,1,2,3; max 4
    # t=0.5: thr 2 -> score 2 (id 1) excluded, 3 and 4 kept
    assert coarse_set(scores, 0.5) == F({2, 3})
    # t=0.25: thr 1 -> score 1 (id 0) excluded
    assert coarse_set(scores, 0.25) == F({1, 2, 3})
    # t=1: nothing is strictly above the max
    assert coarse_set(scores, 1.0) == F()
    assert coarse_set(scores, 0.0) == F({0, 1, 2, 3})


def test_coarse_set_flat_ids_and_torch():
    scores = torch.zeros(3, 4)
    scores[2, 1] = 5.0
    scores[0, 3] = 1.0
    assert coarse_set(scores, 0.1) == F({9, 3})  # 2*4+1, 0*4+3
    assert coarse_set(scores, 0.3) == F({9})
    assert coarse_set(scores.to(torch.bfloat16), 0.1) == F({9, 3})


def test_coarse_set_nonpositive_max_is_empty():
    assert coarse_set(-np.ones((2, 3)), 0.2) == F()
    assert coarse_set(np.zeros((2, 3)), 0.2) == F()
    assert coarse_set(np.zeros((2, 3)), -1.0) == F()  # even with a negative t
    assert coarse_set_sparse([1, 2], [0.0, -1.0], 0.0, 0.2) == F()
    with pytest.raises(ValueError):
        coarse_set(np.ones(4), 0.2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_equals_dense_for_t_above_storage_threshold(seed):
    rng = np.random.default_rng(seed)
    dense = torch.tensor(rng.normal(size=(12, 50)), dtype=torch.float32)
    # a few exact ties at round fractions of the max
    dense[0, 0] = 2.0
    dense[1, 1] = 0.4
    dense[2, 2] = 1.0
    dense[3, 3] = 0.6
    max_score = float(dense.max())
    t_store = 0.1
    flat = dense.flatten()
    keep = torch.nonzero(flat > t_store * max_score).flatten()
    ids, vals = keep.numpy(), flat[keep].numpy()  # what would be stored
    assert len(ids) < flat.numel()
    for t in [0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0]:
        d = coarse_set(dense, t)
        assert coarse_set_sparse(ids, vals, max_score, t) == d
        assert coarse_set_sparse(torch.from_numpy(ids), torch.from_numpy(vals), max_score, t) == d
    assert coarse_set(dense, 0.2) == F(
        int(i) for i in np.flatnonzero(dense.numpy().ravel().astype(np.float64) > 0.2 * max_score)
    )


# ----------------------------------------------------------------------------- refining


def test_refine_fact_strictness():
    sets = [F({1, 2, 3}), F({1, 2}), F({1}), F({1, 4})]  # counts: 1:4, 2:2, 3:1, 4:1 ; n=4
    assert refine_fact(sets, 0.5) == F({1})  # count > 2
    assert refine_fact(sets, 0.49) == F({1, 2})  # count > 1.96
    assert refine_fact(sets, 0.25) == F({1, 2})  # count > 1
    assert refine_fact(sets, 0.24) == F({1, 2, 3, 4})  # count > 0.96
    assert refine_fact(sets, 0.0) == F({1, 2, 3, 4})  # union
    assert refine_fact(sets, 1.0) == F()
    assert refine_fact([], 0.5) == F()
    assert refine_fact([F(), F()], 0.0) == F()


def test_refine_fact_float_noise_does_not_break_strictness():
    # 0.29 * 100 == 28.999999999999996 in floats; a neuron in 29 of 100 prompts is NOT > 29
    sets = [F({7, 8}) if i < 29 else F() for i in range(100)]
    sets[29] = F({8})  # neuron 8 in 30 prompts
    assert refine_fact(sets, 0.29) == F({8})


def _fact(counts: dict[int, int], n: int = 10) -> list[frozenset]:
    """n prompt sets where neuron f appears in the first counts[f] of them."""
    return [F(f for f, c in counts.items() if i < c) for i in range(n)]


# With n = 10 prompts, "count > 10 p" keeps:
#   p=0.55 -> count >= 6, 0.6/0.65 -> >= 7, 0.7/0.75 -> >= 8, 0.8/0.85 -> >= 9, 0.9/0.95 -> 10, 1.0 -> none


def test_refine_relation_moves_up():
    # 3 neurons in all 10 prompts, 4 neurons in 8 prompts
    facts = {"f": _fact({0: 10, 1: 10, 2: 10, 10: 8, 11: 8, 12: 8, 13: 8})}
    trace = []
    refined, p = refine_relation(facts, trace=trace)
    # p=0.7: 7 > 5 up; 0.75: 7 up; 0.8: 3 in [2, 5] -> stop
    assert trace == [(0.7, 7.0), (0.75, 7.0), (0.8, 3.0)]
    assert p == 0.8
    assert refined == {"f": F({0, 1, 2})}


def test_refine_relation_moves_down_two_facts():
    # fact a: 1 neuron in 10 prompts, 3 neurons in 6 ; fact b: 1 neuron in 10 prompts, 1 in 6
    facts = {
        "a": _fact({0: 10, 1: 6, 2: 6, 3: 6}),
        "b": _fact({5: 10, 6: 6}),
    }
    trace = []
    refined, p = refine_relation(facts, trace=trace)
    # p=0.7,0.65,0.6: sizes (1,1) mean 1 < 2 -> down; 0.55: sizes (4, 2) mean 3 -> stop
    assert trace == [(0.7, 1.0), (0.65, 1.0), (0.6, 1.0), (0.55, 3.0)]
    assert p == 0.55
    assert refined == {"a": F({0, 1, 2, 3}), "b": F({5, 6})}


def test_refine_relation_oscillation_tie_goes_to_larger_p():
    # 1 neuron in 10 prompts, 5 in 9: mean 6 (distance 1 above hi) up to p=0.85, then 1 at p=0.9
    # (distance 1 below lo): direction reverses -> stop; tie -> larger p = 0.9
    facts = {"f": _fact({0: 10, 1: 9, 2: 9, 3: 9, 4: 9, 5: 9})}
    trace = []
    refined, p = refine_relation(facts, trace=trace)
    assert [m for _, m in trace] == [6.0, 6.0, 6.0, 6.0, 1.0]
    assert [q for q, _ in trace] == [0.7, 0.75, 0.8, 0.85, 0.9]
    assert p == 0.9
    assert refined == {"f": F({0})}


def test_refine_relation_oscillation_picks_closest():
    # 6 neurons in 9 prompts, none in 10: mean 6 (distance 1) up to 0.85, then 0 (distance 2) at 0.9
    facts = {"f": _fact({i: 9 for i in range(6)})}
    refined, p = refine_relation(facts)
    assert p == 0.85
    assert refined == {"f": F(range(6))}


def test_refine_relation_leaves_unit_interval():
    # all prompt sets empty: mean 0 at every p; walks down 0.7 .. 0.0, next would be < 0
    facts = {"f": [F()] * 10, "g": [F()] * 10}
    trace = []
    refined, p = refine_relation(facts, trace=trace)
    assert [q for q, _ in trace] == [round(0.7 - 0.05 * k, 10) for k in range(15)]
    assert trace[-1][0] == 0.0
    assert p == 0.7  # all at distance 2; tie -> larger p
    assert refined == {"f": F(), "g": F()}


def test_refine_relation_never_empties_a_relation():
    # 7 neurons in all 10 prompts: mean 7 (distance 2 above hi) for every p < 1; p = 1.0 empties every set
    # (distance 2 below lo). The tie used to go to the larger p, 1.0, and left the relation with no neurons.
    facts = {"f": _fact({i: 10 for i in range(7)}), "g": _fact({i: 10 for i in range(20, 27)})}
    trace = []
    refined, p = refine_relation(facts, trace=trace)
    assert trace[-1] == (1.0, 0.0)
    assert p == 0.95 and refined == {"f": F(range(7)), "g": F(range(20, 27))}


def test_refine_relation_max_iter_and_empty():
    facts = {"f": _fact({0: 10, 1: 10, 2: 10, 10: 8, 11: 8, 12: 8, 13: 8})}
    refined, p = refine_relation(facts, max_iter=2)
    assert p == 0.75  # evaluated 0.7 and 0.75, both mean 7; tie -> larger p
    assert refine_relation({}) == ({}, 0.7)
    # custom interval: mean 7 is accepted at p0
    assert refine_relation(facts, lo=6, hi=8)[1] == 0.7


# ----------------------------------------------------------------------------- overlap metrics


def test_overlap_with_empty_prompt_set():
    A = [F({1, 2, 3}), F({2, 3, 4}), F()]
    o = fact_overlap(A)
    # sizes 3,3,0 -> N_s = 2 ; U = {1,2,3,4} -> N_u = 4
    # pairs: (A1,A2) inter 2 union 4 J=.5 ; (A1,A3) inter 0 union 3 J=0 ; (A2,A3) 0, 3, 0
    # N_so = 2/3, R_so = .5/3 = 1/6
    # with the others' union: A1 & {2,3,4} = 2 ; A2 & {1,2,3} = 2 ; A3 & U = 0 -> N_uo = 4/3, R_uo = (4/3)/4 = 1/3
    assert o.n_prompts == 3
    assert o.N_s == pytest.approx(2.0)
    assert o.N_u == 4
    assert o.N_so == pytest.approx(2 / 3)
    assert o.R_so == pytest.approx(1 / 6)
    assert o.N_uo == pytest.approx(4 / 3)
    assert o.R_uo == pytest.approx(1 / 3)
    assert o.R_uo_eq5 == pytest.approx(0.5)


def test_n_uo_is_not_n_s_by_construction():
    # A1 = {1,2}, A2 = {1,2,3,4}: A1's neurons all recur in A2 (2), A2's 3 and 4 do not recur (2 of 4)
    o = fact_overlap([F({1, 2}), F({1, 2, 3, 4})])
    assert (o.N_s, o.N_u, o.N_so, o.R_so) == (3.0, 4, 2.0, 0.5)
    assert o.N_uo == 2.0 and o.N_uo < o.N_s  # overlap with the union of ALL sets would give N_s = 3
    assert o.R_uo == pytest.approx(0.5) and o.R_uo_eq5 == pytest.approx(0.75)


def test_overlap_single_prompt():
    o = fact_overlap([F({5, 6})])
    # no pairs, no other prompts -> N_so, R_so, N_uo, R_uo nan ; N_s = N_u = 2 ; Eq. 5 gives 1
    assert o.n_prompts == 1 and o.N_s == 2.0 and o.N_u == 2
    assert all(math.isnan(x) for x in (o.N_so, o.R_so, o.N_uo, o.R_uo))
    assert o.R_uo_eq5 == 1.0


def test_overlap_identical_sets():
    o = fact_overlap([F({1, 2})] * 3)
    assert (o.N_s, o.N_u, o.N_so, o.R_so, o.N_uo, o.R_uo, o.R_uo_eq5) == (2.0, 2, 2.0, 1.0, 2.0, 1.0, 1.0)


def test_overlap_disjoint_sets():
    o = fact_overlap([F({1}), F({2}), F({3, 4})])
    # N_s = 4/3, N_u = 4, every pair inter 0 -> N_so = R_so = 0 ; nothing recurs -> N_uo = R_uo = 0
    assert o.N_s == pytest.approx(4 / 3) and o.N_u == 4
    assert o.N_so == 0.0 and o.R_so == 0.0 and o.N_uo == 0.0 and o.R_uo == 0.0
    assert o.R_uo_eq5 == pytest.approx(1 / 3)


def test_overlap_all_empty_and_no_prompts():
    o = fact_overlap([F(), F()])
    # one pair of two empty sets: inter 0 -> N_so = 0 ; Jaccard nan skipped -> R_so nan ; U empty
    assert o.N_s == 0.0 and o.N_u == 0 and o.N_so == 0.0 and o.N_uo == 0.0
    assert math.isnan(o.R_so) and math.isnan(o.R_uo) and math.isnan(o.R_uo_eq5)
    # mixed: one pair of empties (skipped) and identical non-empty pairs
    o = fact_overlap([F(), F(), F({1})])
    # pairs: (e,e) J nan ; (e,{1}) J 0 ; (e,{1}) J 0 -> R_so = 0 ; N_so = 0
    assert o.R_so == 0.0 and o.N_so == 0.0
    o = fact_overlap([])
    assert o.n_prompts == 0 and o.N_u == 0
    assert all(math.isnan(x) for x in (o.N_s, o.N_so, o.R_so, o.N_uo, o.R_uo, o.R_uo_eq5))



def test_overlap_table_and_summary():
    facts = {
        "x": [F({1, 2, 3}), F({2, 3, 4}), F()],  # N_s 2, N_u 4, R_so 1/6, N_uo 4/3, R_uo 1/3, Eq. 5 .5
        "y": [F({1, 2}), F({1, 2, 3, 4})],  # N_s 3, N_u 4, R_so .5, N_uo 2, R_uo .5, Eq. 5 .75
        "z": [F({5, 6})],  # N_s 2, N_u 2, R_so nan, N_uo nan, R_uo nan, Eq. 5 1
        "e": [F(), F()],  # N_s 0, N_u 0, R_so nan, N_uo 0, R_uo nan, Eq. 5 nan
    }
    df = overlap_table(facts)
    assert list(df.index) == ["x", "y", "z", "e"] and df.index.name == "fact"
    assert list(df.columns) == [
        "n_prompts", "N_s", "N_u", "N_so", "R_so", "N_uo", "R_uo", "R_uo_eq5",
    ]
    assert df.loc["y", "N_so"] == 2.0 and math.isnan(df.loc["z", "N_so"])
    s = summarize_overlap(df)
    assert isinstance(s, pd.Series)
    assert s["N_s"] == pytest.approx((2 + 3 + 2 + 0) / 4)
    assert s["N_u"] == pytest.approx((4 + 4 + 2 + 0) / 4)
    assert s["N_so"] == pytest.approx((2 / 3 + 2 + 0) / 3)  # z skipped
    assert s["R_so"] == pytest.approx((1 / 6 + 0.5) / 2)  # z, e skipped
    assert s["N_uo"] == pytest.approx((4 / 3 + 2 + 0) / 3)  # z skipped
    assert s["R_uo"] == pytest.approx((1 / 3 + 0.5) / 2)  # z, e skipped
    assert s["R_uo_eq5"] == pytest.approx((0.5 + 0.75 + 1.0) / 3)  # e skipped
    # pooled over facts with non-empty union (x, y, z): mean N_s 7/3 / mean N_u 10/3 = .7
    assert s["R_uo_eq5_pooled"] == pytest.approx(0.7)
    assert s["n_facts"] == 4
    assert s["n_prompts"] == pytest.approx((3 + 2 + 1 + 2) / 4)
    assert overlap_table({}).empty


# ----------------------------------------------------------------------------- pair intersections

REFINED = {"a": F({1, 2, 3}), "b": F({2, 3}), "c": F({3, 9}), "d": F(), "e": F({1})}
RELATION = {"a": "r1", "b": "r1", "c": "r2", "d": "r2", "e": "r3", "unused": "r9"}


def test_pair_intersections_enumerated():
    out = pair_intersections(REFINED, RELATION)
    # intra: (a,b) 2, (c,d) 0 -> 1.0
    # inter: a-c 1, a-d 0, a-e 1, b-c 1, b-d 0, b-e 0, c-e 0, d-e 0 -> 3/8
    assert out["intra"] == 1.0 and out["inter"] == 3 / 8
    assert (out["n_intra"], out["n_inter"]) == (2, 8)
    assert (out["n_intra_total"], out["n_inter_total"]) == (2, 8)
    assert not out["intra_sampled"] and not out["inter_sampled"]


def test_pair_intersections_degenerate():
    out = pair_intersections({"a": F({1}), "b": F({1})}, {"a": "r", "b": "r"})
    assert out["intra"] == 1.0 and math.isnan(out["inter"]) and out["n_inter"] == 0
    out = pair_intersections({"a": F({1}), "b": F({1})}, {"a": "r", "b": "s"})
    assert math.isnan(out["intra"]) and out["inter"] == 1.0
    with pytest.raises(KeyError):
        pair_intersections({"zz": F()}, RELATION)


def test_pair_intersections_sampling_is_deterministic():
    o1 = pair_intersections(REFINED, RELATION, n_pairs=3, seed=0)
    o2 = pair_intersections(REFINED, RELATION, n_pairs=3, seed=0)
    assert o1 == o2
    assert not o1["intra_sampled"] and o1["inter_sampled"] and o1["n_inter"] == 3
    # sampled inter pairs are real inter pairs: their intersections are in {0, 1}
    assert 0.0 <= o1["inter"] <= 1.0 and o1["intra"] == 1.0
    seeds = {pair_intersections(REFINED, RELATION, n_pairs=3, seed=s)["inter"] for s in range(20)}
    assert len(seeds) > 1  # the seed matters


def test_pair_intersections_sampling_is_uniform_over_pairs():
    rng = np.random.default_rng(0)
    # relations of very different sizes with different intersection levels (nested pools)
    spec = {"big": (300, 20), "small": (20, 10), "huge": (500, 100)}  # n facts, pool size
    refined, rel = {}, {}
    for r, (n, pool) in spec.items():
        for i in range(n):
            refined[(r, i)] = F(rng.choice(pool, size=5, replace=False).tolist())
            rel[(r, i)] = r
    exact = pair_intersections(refined, rel, n_pairs=10**7)
    assert not exact["intra_sampled"] and exact["n_intra"] == 44850 + 190 + 124750
    sampled = pair_intersections(refined, rel, n_pairs=40_000, seed=1)
    assert sampled["intra_sampled"] and sampled["inter_sampled"]
    assert sampled["n_intra"] == sampled["n_inter"] == 40_000
    # standard errors are ~0.005; a per-relation-uniform sampler would be off by ~0.8 for intra
    assert sampled["intra"] == pytest.approx(exact["intra"], abs=0.03)
    assert sampled["inter"] == pytest.approx(exact["inter"], abs=0.03)
    again = pair_intersections(refined, rel, n_pairs=40_000, seed=1)
    assert again == sampled


# ----------------------------------------------------------------------------- layers


def test_layer_histogram():
    # n_neurons 4: ids 0,1 -> layer 0 ; 5,7 -> layer 1 ; 5 counted twice (two sets)
    assert layer_histogram([F({0, 1, 5}), F({5, 7})], 4, 3).tolist() == [2, 3, 0]
    assert layer_histogram(F({11, 8}), 4, 3).tolist() == [0, 0, 2]
    assert layer_histogram([], 4, 3).tolist() == [0, 0, 0]
    assert layer_histogram([F()], 4, 3).dtype == np.int64
    with pytest.raises(ValueError):
        layer_histogram([F({12})], 4, 3)


def test_pair_jaccards_and_union_ratios_by_hand():
    from kn.base.overlap import pair_jaccards, union_ratios

    a, b, c = frozenset({1, 2, 3}), frozenset({2, 3, 4, 5}), frozenset()
    # pairs: a-b 2/5, a-c 0/3, b-c 0/4
    np.testing.assert_allclose(pair_jaccards([a, b, c]), [0.4, 0.0, 0.0])
    assert pair_jaccards([c, c]).size == 0 and pair_jaccards([a]).size == 0
    # union {1..5}: 3/5, 4/5, 0/5
    np.testing.assert_allclose(union_ratios([a, b, c]), [0.6, 0.8, 0.0])
    assert union_ratios([c, c]).size == 0


def test_refine_relations_reports_each_relation_and_flags_misses():
    from kn.base.neurons import refine_relations

    facts = {"a": _fact({0: 10, 1: 10, 2: 10, 10: 8}), "b": _fact({5: 10, 6: 10, 7: 10}),  # relation r: in range
             "c": _fact({9: 6})}  # relation q: one neuron in 6 of 10 prompts, never 2-5 neurons
    refined, table = refine_relations(facts, {"a": "r", "b": "r", "c": "q"})
    assert refined["a"] == F({0, 1, 2, 10}) and refined["b"] == F({5, 6, 7})  # p = 0.7: count > 7
    assert table.loc["r", "p"] == 0.7 and table.loc["r", "mean_size"] == 3.5 and table.loc["r", "in_range"]
    assert table.loc["q", "mean_size"] == 1.0 and not table.loc["q", "in_range"]
    assert table.loc["q", "facts"] == 1 and refined["c"] == F({9})  # the closest p that keeps a neuron


def test_fact_pair_intersections_by_hand():
    from kn.base.overlap import fact_pair_intersections

    refined = {"a": F({1, 2, 3}), "b": F({2, 3}), "c": F({3, 9}), "d": F({1})}
    out = fact_pair_intersections(refined, {"a": "r", "b": "r", "c": "q", "d": "q"})
    # a: intra with b = 2; inter with c (1) and d (1) -> 1 ; c: intra with d = 0 ; inter with a 1, b 1 -> 1
    assert out.loc["a"].tolist() == [2.0, 1.0] and out.loc["b"].tolist() == [2.0, 0.5]
    assert out.loc["c"].tolist() == [0.0, 1.0] and out.loc["d"].tolist() == [0.0, 0.5]
