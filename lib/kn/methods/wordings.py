"""kn.methods.wordings: held-out wordings for chapter 4: one template position per relation held out of training, the
train prompts without it, and LAND's targets from the seen wordings only.

API
    wording_holdout(prompts, *, seed) -> {train fact: held-out prompt_id}   one template position per relation
    split_for_wordings(prompts, heldout) -> (train prompts without the held-out ones, held-out prompts)
    wording_targets(prompts, sets, heldout, counterexamples, *, include_heldout=False) -> targets of train facts
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from kn.methods.counterexamples import build_targets, counter_sets_for, fact_sets_for
from kn.methods.detectors import _require, _stream


def wording_holdout(prompts: pd.DataFrame, *, seed: int) -> dict:
    """One held-out prompt per TRAIN fact, at one template position per relation.

    prompts: one row per prompt, columns prompt_id, fact_id, relation, template_position, split ("train"/"test").
    For each relation with train facts, a template position is drawn (numpy stream seeded by (seed,
    crc32(relation))) among the positions present for ALL of the relation's train facts; every train fact of the
    relation holds out its prompt at that position. So a relation's held-out wording is a template that none of its
    train prompts is trained on: the detector never saw that sentence form for that relation, not merely not for
    that fact. Test facts hold nothing out (they are the "new facts" condition). A relation whose train facts share
    no position raises ValueError. Returns {fact_id: prompt_id}.
    """
    _require(prompts, {"prompt_id", "fact_id", "relation", "template_position", "split"}, "wording_holdout")
    train = prompts[prompts["split"] == "train"]
    index = {(f, int(t)): p for f, t, p in zip(train["fact_id"], train["template_position"], train["prompt_id"])}
    positions: dict = {}
    for (fact, position) in index:
        positions.setdefault(fact, set()).add(position)
    relation_facts: dict = {}
    for fact, relation in zip(train["fact_id"], train["relation"]):
        relation_facts.setdefault(relation, set()).add(fact)
    out = {}
    for relation in sorted(relation_facts, key=str):
        facts = sorted(relation_facts[relation], key=str)
        shared = sorted(set.intersection(*(positions[f] for f in facts)))
        if not shared:
            raise ValueError(f"wording_holdout: the train facts of relation {relation!r} share no template position")
        position = shared[int(_stream(seed, relation).integers(len(shared)))]
        out.update({f: index[(f, position)] for f in facts})
    return out


def split_for_wordings(prompts: pd.DataFrame, heldout: Mapping) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train prompts without the held-out ones, the held-out prompts): the rows of ``prompts`` (columns prompt_id,
    fact_id, split at least) whose split is "train" and whose prompt_id is not held out, and the held-out rows.
    heldout: {fact_id: prompt_id}, each a train prompt of that fact (ValueError otherwise). Row order is kept."""
    _require(prompts, {"prompt_id", "fact_id", "split"}, "split_for_wordings")
    rows = {p: (f, s) for p, f, s in zip(prompts["prompt_id"], prompts["fact_id"], prompts["split"])}
    for fact, prompt in heldout.items():
        if rows.get(prompt) != (fact, "train"):
            raise ValueError(f"split_for_wordings: {prompt!r} is not a train prompt of fact {fact!r}")
    out = prompts["prompt_id"].isin(set(heldout.values()))
    return prompts[(prompts["split"] == "train") & ~out], prompts[out]


def wording_targets(prompts: pd.DataFrame, sets: Mapping, heldout: Mapping, counterexamples: Mapping, *,
                    include_heldout: bool = False) -> dict:
    """LAND targets of the train facts for the new-wording experiment.

    prompts: columns prompt_id, fact_id, template_position, split; sets: {prompt_id: coarse set};
    heldout: {fact_id: prompt_id}; counterexamples: {fact_id: [fact_id]} (kn.methods.counterexamples.draw_counterexamples).
    By default (include_heldout=False) the targets come from the 9 seen prompts of each fact and the
    counter-example prompts at the seen positions only, so the held-out wording is truly unseen: neither an
    input nor a part of any target. include_heldout=True builds them from all the train prompts (the held-out
    wording then shapes the target but is never an input). Returns {fact_id: (ids [k], counts [k])}.
    """
    seen, _ = split_for_wordings(prompts, heldout)
    if include_heldout:
        seen = prompts[prompts["split"] == "train"]
    return build_targets(fact_sets_for(seen, sets), counter_sets_for(seen, counterexamples, sets))
