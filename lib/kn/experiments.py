"""kn.experiments: the test design shared by the amplification and editing chapters.

API
    design_conditions(prompts, *, seed, unrelated="other_relation") -> DataFrame, one row per test fact:
        fact_id, relation, ident_key (the prompt that identifies neurons), held_out_position, same_key, related_key,
        unrelated_key, unrelated_fact
    method_sets(design, prompts, coarse, land_sets, constant, p_by_relation, *, n_total, seed, refine_coarse=None)
        -> {method: {fact_id: frozenset}}
        methods: baseline, kn_refined, land, random, constant
    new_targets(prompts, design, *, seed) -> {fact_id: (object, first token id)}   a seeded other object of the relation
    METHODS

Decisions (the methods chapter repeats them):
- Per test fact, one template is held out (seeded); it is the Related test prompt. The identification prompt is another
  seeded template; Same tests on it. Unrelated tests on the identification template of another test fact, drawn from another
  relation ("other_relation", default), the same relation ("same_relation") or any other fact ("any").
- Baseline and LAND use the identification prompt's coarse set and its LAND set. KN-refined refines the fact's coarse sets of
  every template but the held-out one, with the relation's p from chapter 3, so no method has seen the Related prompt.
- Random: as many neurons as the Baseline set, uniform over all neurons, seeded per fact. Constant: chapter 4's fixed set.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from .neurons import refine_fact

METHODS = ("baseline", "kn_refined", "land", "random", "constant")
UNRELATED_CHOICES = ("other_relation", "same_relation", "any")


def _rng(seed: int, *parts) -> np.random.Generator:
    return np.random.default_rng([seed] + [zlib.crc32(str(p).encode()) for p in parts])


def design_conditions(prompts: pd.DataFrame, *, seed: int = 0, unrelated: str = "other_relation") -> pd.DataFrame:
    """prompts: the run's prompt table with a `key` column; only test-split facts with >= 2 templates are used."""
    if unrelated not in UNRELATED_CHOICES:
        raise ValueError(f"unrelated={unrelated!r}: use one of {UNRELATED_CHOICES}")
    test = prompts[prompts["split"] == "test"]
    rows = []
    for fact_id, group in test.groupby("fact_id", sort=True):
        positions = sorted(group["template_position"])
        if len(positions) < 2:
            continue
        rng = _rng(seed, "design", fact_id)
        held_out, ident = rng.choice(positions, size=2, replace=False)
        key_at = dict(zip(group["template_position"], group["key"]))
        rows.append({"fact_id": fact_id, "relation": group["relation"].iloc[0], "ident_position": int(ident),
                     "held_out_position": int(held_out), "ident_key": key_at[ident], "same_key": key_at[ident],
                     "related_key": key_at[held_out]})
    design = pd.DataFrame(rows)
    if design.empty:
        raise ValueError("no test fact has two templates: the run needs test facts (test_facts_per_relation)")
    partners = []
    for row in design.itertuples():
        pool = design[design["fact_id"] != row.fact_id]
        if unrelated == "other_relation":
            pool = pool[pool["relation"] != row.relation]
        elif unrelated == "same_relation":
            pool = pool[pool["relation"] == row.relation]
        if pool.empty:
            raise ValueError(f"fact {row.fact_id}: no other test fact for unrelated={unrelated!r}")
        partners.append(pool.iloc[int(_rng(seed, "unrelated", row.fact_id).integers(len(pool)))])
    design["unrelated_fact"] = [p["fact_id"] for p in partners]
    design["unrelated_key"] = [p["ident_key"] for p in partners]
    return design


def method_sets(design: pd.DataFrame, prompts: pd.DataFrame, coarse: dict, land_sets: dict, constant: frozenset,
                p_by_relation: dict, *, n_total: int, seed: int = 0, refine_coarse: dict | None = None
                ) -> dict[str, dict]:
    """The neuron set each method identifies for each designed fact (flat ids; n_total = L * H for random sets).

    coarse, land_sets, refine_coarse: prompt key -> frozenset; refine_coarse (default: coarse) are the coarse sets
    KN-refined starts from, drawn at the threshold chapter 3 chose p with."""
    refine_coarse = coarse if refine_coarse is None else refine_coarse
    out = {m: {} for m in METHODS}
    by_fact = {f: g for f, g in prompts.groupby("fact_id")}
    for row in design.itertuples():
        group = by_fact[row.fact_id]
        seen = group[group["template_position"] != row.held_out_position]
        out["baseline"][row.fact_id] = coarse[row.ident_key]
        out["land"][row.fact_id] = land_sets[row.ident_key]
        out["kn_refined"][row.fact_id] = refine_fact([refine_coarse[k] for k in seen["key"]], p_by_relation[row.relation])
        n_random = len(coarse[row.ident_key])
        out["random"][row.fact_id] = frozenset(
            int(i) for i in _rng(seed, "random", row.fact_id).choice(n_total, size=n_random, replace=False))
        out["constant"][row.fact_id] = constant
    return out


def new_targets(prompts: pd.DataFrame, design: pd.DataFrame, *, seed: int = 0) -> dict:
    """For each designed fact, t': a seeded other object of its relation whose first token differs from the answer's."""
    objects = prompts.drop_duplicates(["relation", "object"])[["relation", "object", "target_id"]]
    answers = prompts.drop_duplicates("fact_id").set_index("fact_id")
    out = {}
    for row in design.itertuples():
        own = answers.loc[row.fact_id]
        pool = objects[(objects["relation"] == row.relation) & (objects["target_id"] != own["target_id"])]
        if pool.empty:
            raise ValueError(f"fact {row.fact_id}: its relation has no other object to edit towards")
        pick = pool.iloc[int(_rng(seed, "new_target", row.fact_id).integers(len(pool)))]
        out[row.fact_id] = (pick["object"], int(pick["target_id"]))
    return out
