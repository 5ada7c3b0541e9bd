"""kn.methods.counterexamples: LAND's training targets: a fact's counts minus the neurons of sentences like its own
that carry other knowledge (the counter-examples), per the paper's rule or the whole-union rule.

API
    validation_split(prompts, fraction, seed) -> prompts, a seeded share of each relation's train facts relabelled
                                   split "validation" (read-outs are chosen there, never on test facts)
    validation_count(n_facts, fraction) -> int   how many of a relation's n_facts train facts it holds out
    training_data(prompts, coarse, hp, *, split) -> (pairs [(coarse set, key)], targets {key: (ids, counts)},
                                   counterexamples); key is the fact (rule whole_union) or the prompt (same_template)
    prompt_targets_for(prompts, coarse, hp) -> {prompt_id: (ids, counts)}   each prompt's target under hp's rule
    removed_share(prompts, coarse, prompt_targets) -> float   mean share of a fact's union removed by counter-examples
    COUNTEREXAMPLE_RULES             ("same_template", "whole_union"): how a target's counter-examples are drawn
    draw_counterexamples(prompts, n, seed) -> {fact: [other facts]}   (rule "whole_union") same split and relation,
        never the same subject, another object first
    counter_sets_for(prompts, counterexamples, sets) -> {fact: [coarse sets of counter-example prompts]}
    fact_sets_for(prompts, sets) -> {fact: [sets of its prompts, by template position]}
        (prompts: one row per prompt with columns prompt_id, fact_id, template_position; sets: {prompt_id: frozenset})
    build_targets(fact_sets, counter_sets) -> {fact: (ids int64 [k], counts float32 [k])}   sparse targets
        (rule "whole_union": the union of every counter-example set of the fact is removed, one target per fact)
    counter_prompts_for(prompts, k, seed) -> {prompt_id: [counter prompt_id]}   rule "same_template": k prompts of
        the SAME template, split and relation, of other facts with another subject AND another object
    build_prompt_targets(prompts, sets, counter_prompts) -> {prompt_id: (ids int64 [k], counts float32 [k])}
        one target per prompt: its fact's counts less the neurons of that prompt's own counter-example prompts
    fact_mean_targets(prompt_targets, prompt_fact) -> {fact: (ids, mean counts over the fact's prompts)}
    top_k_constant_set(targets, k) -> frozenset      control baseline: one fixed set for every prompt
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Mapping

import numpy as np
import pandas as pd


# same_template: the paper's wording (Sec. 4.1: some texts of the input's form carrying other knowledge), one target
# per prompt; whole_union: every template of `counterexamples` other facts, one target per fact (the former rule)
COUNTEREXAMPLE_RULES = ("same_template", "whole_union")


# --------------------------------------------------------------------------- counter-examples and targets


def draw_counterexamples(prompts: pd.DataFrame, n: int, seed: int) -> dict:
    """For each fact, ``n`` other facts whose prompts serve as its counter-examples.

    prompts: one row per prompt (or per fact) with at least columns fact_id, relation, subject, object, split.
    Candidates are the other facts of the SAME relation in the SAME split (train facts never borrow test facts'
    prompts, and vice versa) whose subject differs (a counter-example must carry other knowledge: a fact with the
    same subject shares the prompt's wording up to the object). Facts with a different object are preferred: up to ``n`` are drawn from them without
    replacement; if there are fewer than ``n``, the rest come from same-object facts. Each fact's draw uses its own
    numpy stream seeded by (seed, crc32(str(fact_id))), so it does not depend on which other relations are present.
    Returns {fact_id: [fact_id, ...]} (possibly shorter than n for small relations; all empty when n == 0).
    """
    if n < 0:
        raise ValueError(f"draw_counterexamples: n={n} must be 0 or more")
    missing = {"fact_id", "relation", "subject", "object", "split"} - set(prompts.columns)
    if missing:
        raise ValueError(f"draw_counterexamples: prompts lack column(s) {sorted(missing)}")
    facts = prompts.drop_duplicates("fact_id")[["fact_id", "relation", "subject", "object", "split"]]
    out: dict = {}
    for _, group in facts.groupby(["split", "relation"], sort=True):
        ids = list(group["fact_id"])
        objects = dict(zip(ids, group["object"]))
        subjects = dict(zip(ids, group["subject"]))
        order = sorted(ids, key=str)
        for fact in order:
            if n == 0:
                out[fact] = []
                continue
            allowed = [g for g in order if g != fact and subjects[g] != subjects[fact]]
            other = [g for g in allowed if objects[g] != objects[fact]]
            same = [g for g in allowed if objects[g] == objects[fact]]
            rng = np.random.default_rng([int(seed), zlib.crc32(str(fact).encode())])
            pick = [other[i] for i in rng.permutation(len(other))[:n]]
            if len(pick) < n:
                pick += [same[i] for i in rng.permutation(len(same))[: n - len(pick)]]
            out[fact] = pick
    return out


def _prompt_index(prompts: pd.DataFrame) -> dict:
    """{(fact_id, template_position): prompt_id}. Prompts are named by (fact, template), never by their text: two
    relations can hold the same fact and wording, and those are two rows (see kn.data.pararel.prompt_id)."""
    missing = {"fact_id", "template_position", "prompt_id"} - set(prompts.columns)
    if missing:
        raise ValueError(f"prompts lack column(s) {sorted(missing)}")
    return {(f, int(t)): k for f, t, k in zip(prompts["fact_id"], prompts["template_position"], prompts["prompt_id"])}


def fact_sets_for(prompts: pd.DataFrame, sets: Mapping) -> dict:
    """{fact_id: [set of each of its prompts, by template_position]}; prompts without a set are skipped.
    prompts: columns fact_id, template_position, prompt_id; sets: prompt_id -> frozenset."""
    index = _prompt_index(prompts)
    out: dict = {}
    for (fact, position) in sorted(index, key=lambda ft: (str(ft[0]), ft[1])):
        key = index[(fact, position)]
        if key in sets:
            out.setdefault(fact, []).append(frozenset(sets[key]))
    return out


def counter_sets_for(prompts: pd.DataFrame, counterexamples: Mapping, sets: Mapping) -> dict:
    """{fact_id: [coarse sets of its counter-example prompts]}.

    For each prompt of fact f (template_position t) and each fact g in counterexamples[f], the prompt of g with the
    same template_position t (same sentence form, other knowledge). prompts: columns fact_id, template_position,
    prompt_id; sets: prompt_id -> frozenset; prompts without a set are skipped."""
    index = _prompt_index(prompts)
    positions: dict = {}
    for fact, position in index:
        positions.setdefault(fact, []).append(position)
    out: dict = {}
    for fact in positions:
        found = []
        for position in sorted(positions[fact]):
            for other in counterexamples.get(fact, ()):
                key = index.get((other, position))
                if key is not None and key in sets:
                    found.append(frozenset(sets[key]))
        out[fact] = found
    return out


def build_targets(fact_sets: Mapping, counter_sets: Mapping) -> dict:
    """Sparse LAND targets.

    fact_sets: {fact_id: [coarse set of each prompt]}; counter_sets: {fact_id: [counter-example coarse sets]}
    (a fact absent from it has nothing removed). For each neuron the target is the number of the fact's coarse sets
    holding it, then 0 for every neuron in any of the fact's counter-example sets.
    Returns {fact_id: (ids int64 [k] ascending, counts float32 [k])}, zeros not stored.
    """
    out = {}
    for fact, sets in fact_sets.items():
        counts = Counter()
        for s in sets:
            counts.update(s)
        removed = set().union(*counter_sets.get(fact, ()))
        ids = np.array(sorted(i for i in counts if i not in removed), dtype=np.int64)
        values = np.array([counts[int(i)] for i in ids], dtype=np.float32)
        out[fact] = (ids, values)
    return out


def counter_prompts_for(prompts: pd.DataFrame, k: int, seed: int) -> dict:
    """Per prompt, ``k`` counter-example prompts in the paper's sense: the same sentence form, other knowledge.

    prompts: one row per prompt, columns prompt_id, fact_id, relation, subject, object, template_position, split.
    Candidates for prompt p (fact f) are the prompts of the SAME split (train never borrows test prompts, nor the
    reverse), relation and template_position (so the same template text) whose fact is another one with ANOTHER
    subject and ANOTHER object than f: a shared subject is the prompt's own wording up to the object, a shared object
    is part of the knowledge p carries. Up to ``k`` are drawn without replacement from p's own numpy stream seeded by
    (seed, crc32(str(prompt_id))), over the candidates sorted by str(prompt_id), so the draw depends neither on the
    row order nor on which other relations are present; fewer than k when there are fewer candidates.
    Returns {prompt_id: [prompt_id, ...]} for every prompt (all empty when k == 0).
    """
    if k < 0:
        raise ValueError(f"counter_prompts_for: k={k} must be 0 or more")
    needed = {"prompt_id", "fact_id", "relation", "subject", "object", "template_position", "split"}
    missing = needed - set(prompts.columns)
    if missing:
        raise ValueError(f"counter_prompts_for: prompts lack column(s) {sorted(missing)}")
    out: dict = {}
    for _, group in prompts.groupby(["split", "relation", "template_position"], sort=True):
        order = np.argsort(group["prompt_id"].astype(str).to_numpy(), kind="stable")
        ids = group["prompt_id"].to_numpy(object)[order]
        facts = group["fact_id"].astype(str).to_numpy()[order]
        subjects = group["subject"].astype(str).to_numpy()[order]
        objects = group["object"].astype(str).to_numpy()[order]
        for i, prompt in enumerate(ids):
            if k == 0:
                out[prompt] = []
                continue
            allowed = np.flatnonzero((facts != facts[i]) & (subjects != subjects[i]) & (objects != objects[i]))
            rng = np.random.default_rng([int(seed), zlib.crc32(str(prompt).encode())])
            out[prompt] = [ids[j] for j in allowed[rng.permutation(allowed.size)[:k]]]
    return out


def build_prompt_targets(prompts: pd.DataFrame, sets: Mapping, counter_prompts: Mapping) -> dict:
    """Sparse LAND targets, one per prompt (rule "same_template").

    prompts: columns prompt_id, fact_id; sets: {prompt_id: coarse set}; counter_prompts: {prompt_id: [prompt_id]}
    (:func:`counter_prompts_for`; a prompt absent from it has nothing removed; counter prompts without a set are
    skipped). For prompt p of fact f: for each neuron, the number of f's coarse sets holding it (f's prompts in
    ``prompts`` that have a set), then 0 for every neuron of a coarse set of p's OWN counter-example prompts. So two
    prompts of one fact share the counts but not what is removed. Prompts without a set get no target.
    Returns {prompt_id: (ids int64 [k] ascending, counts float32 [k])}, zeros not stored.
    """
    missing = {"prompt_id", "fact_id"} - set(prompts.columns)
    if missing:
        raise ValueError(f"build_prompt_targets: prompts lack column(s) {sorted(missing)}")
    rows = [(p, f) for p, f in zip(prompts["prompt_id"], prompts["fact_id"]) if p in sets]
    counts: dict = {}
    for prompt, fact in rows:
        counts.setdefault(fact, Counter()).update(sets[prompt])
    out = {}
    for prompt, fact in rows:
        removed = set().union(*(sets[c] for c in counter_prompts.get(prompt, ()) if c in sets))
        fact_counts = counts[fact]
        ids = np.array(sorted(i for i in fact_counts if i not in removed), dtype=np.int64)
        out[prompt] = (ids, np.array([fact_counts[int(i)] for i in ids], dtype=np.float32))
    return out


def fact_mean_targets(prompt_targets: Mapping, prompt_fact: Mapping) -> dict:
    """{fact_id: (ids int64 [k], mean counts float32 [k])}: per fact, the mean over its prompts of their targets
    (a neuron absent from a prompt's target counts 0 there): the best single output for all of a fact's prompts
    under MSE, used where a rule needs one target per fact (relation prior, constant set). With one target shared by
    every prompt of a fact (rule "whole_union") it is that target. prompt_fact: {prompt_id: fact_id} for every key
    of prompt_targets."""
    by_fact: dict = {}
    for prompt, (ids, values) in prompt_targets.items():
        by_fact.setdefault(prompt_fact[prompt], []).append((np.asarray(ids, np.int64), np.asarray(values, np.float64)))
    out = {}
    for fact, parts in by_fact.items():
        ids = np.concatenate([i for i, _ in parts])
        values = np.concatenate([v for _, v in parts])
        unique, inverse = np.unique(ids, return_inverse=True)
        sums = np.bincount(inverse, weights=values, minlength=unique.size) / len(parts)
        keep = sums > 0
        out[fact] = (unique[keep].astype(np.int64), sums[keep].astype(np.float32))
    return out


def top_k_constant_set(targets: Mapping, k: int) -> frozenset:
    """The control baseline: the ``k`` neurons with the largest sum of target counts over ``targets`` (the training
    facts), ties broken by the smaller id; neurons with a zero sum are never picked, so the set may hold fewer than
    k. The same set is then used for every prompt."""
    if k < 0:
        raise ValueError(f"top_k_constant_set: k={k} must be 0 or more")
    if not targets or k == 0:
        return frozenset()
    ids = np.concatenate([np.asarray(t[0], dtype=np.int64) for t in targets.values()])
    counts = np.concatenate([np.asarray(t[1], dtype=np.float64) for t in targets.values()])
    if ids.size == 0:
        return frozenset()
    unique, inverse = np.unique(ids, return_inverse=True)
    sums = np.bincount(inverse, weights=counts, minlength=unique.size)
    order = np.lexsort((unique, -sums))  # by -sum, then id
    order = order[sums[order] > 0][:k]
    return frozenset(int(i) for i in unique[order])


def validation_count(n_facts: int, fraction: float) -> int:
    """How many of a relation's n_facts train facts validation_split holds out: round(fraction * n_facts), at least
    2 when there are 4 or more (fact-specific overlap compares two validation facts of one relation), at least 1 when
    there are 2 or 3, none of a single fact."""
    return max(2 if n_facts >= 4 else 1, int(round(fraction * n_facts))) if n_facts > 1 else 0


def validation_split(prompts: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """A copy of ``prompts`` whose split is "validation" for round(fraction * n) of each relation's n train facts
    (at least 2 when it has 4 or more, at least 1 when it has 2 or 3), drawn per relation from (seed,
    crc32(relation))."""
    out = prompts.copy()
    train = out[out["split"] == "train"]
    chosen = set()
    for relation, group in train.groupby("relation", sort=True):
        facts = sorted(group["fact_id"].unique())
        n = validation_count(len(facts), fraction)
        rng = np.random.default_rng([seed, zlib.crc32(str(relation).encode()), zlib.crc32(b"validation")])
        chosen.update(facts[i] for i in rng.permutation(len(facts))[:n])
    out.loc[out["fact_id"].isin(chosen), "split"] = "validation"
    return out


def training_data(prompts: pd.DataFrame, coarse: dict, hp, *, split: str = "train"):
    """(pairs, targets, counterexamples) of the prompts of ``split``, counter-examples drawn in that split only.

    hp.counterexample_rule "whole_union": pairs [(coarse set, fact_id)] in row order, targets {fact: (ids, counts)}
    (kn.methods.counterexamples.build_targets: the fact's counts less every template of hp.counterexamples other facts),
    counterexamples {fact: [fact]}. "same_template": pairs [(coarse set, prompt_id)], targets {prompt_id: (ids,
    counts)} (kn.methods.counterexamples.build_prompt_targets: the fact's counts less hp.counterexamples prompts of the same template
    and other facts), counterexamples {prompt_id: [prompt_id]}."""
    part = prompts[prompts["split"] == split]
    if hp.counterexample_rule == "whole_union":
        counter = draw_counterexamples(part, hp.counterexamples, hp.seed)
        targets = build_targets(fact_sets_for(part, coarse), counter_sets_for(part, counter, coarse))
        pairs = [(coarse[p], f) for p, f in zip(part["prompt_id"], part["fact_id"])]
    else:
        counter = counter_prompts_for(part, hp.counterexamples, hp.seed)
        targets = build_prompt_targets(part, coarse, counter)
        pairs = [(coarse[p], p) for p in part["prompt_id"]]
    return pairs, targets, counter


def _key_fact(prompts: pd.DataFrame, hp) -> dict:
    """{training key: fact_id}: the key of :func:`training_data`'s pairs and targets."""
    if hp.counterexample_rule == "whole_union":
        return {f: f for f in prompts["fact_id"]}
    return dict(zip(prompts["prompt_id"], prompts["fact_id"]))


def _by_prompt(prompts: pd.DataFrame, targets: Mapping, hp) -> dict:
    """{prompt_id: target} from :func:`training_data`'s targets (a fact's target serves each of its prompts)."""
    if hp.counterexample_rule == "whole_union":
        return {p: targets[f] for p, f in zip(prompts["prompt_id"], prompts["fact_id"]) if f in targets}
    return {p: targets[p] for p in prompts["prompt_id"] if p in targets}


def prompt_targets_for(prompts: pd.DataFrame, coarse: dict, hp) -> dict:
    """Each prompt's target under hp's counter-example rule, counter-examples drawn among ``prompts`` (pass one
    split): {prompt_id: (ids int64 [k], counts float32 [k])}; with whole_union every prompt of a fact gets the
    fact's target."""
    if hp.counterexample_rule == "whole_union":
        counter = draw_counterexamples(prompts, hp.counterexamples, hp.seed)
        targets = build_targets(fact_sets_for(prompts, coarse),
                                     counter_sets_for(prompts, counter, coarse))
        return _by_prompt(prompts, targets, hp)
    return build_prompt_targets(prompts, coarse, counter_prompts_for(prompts, hp.counterexamples, hp.seed))


def removed_share(prompts: pd.DataFrame, coarse: dict, prompt_targets: Mapping) -> float:
    """Mean over facts of the mean over their prompts of 1 - |target| / |union of the fact's coarse sets|: the share
    of the union the counter-examples remove (0 where the union is empty)."""
    fact_of = dict(zip(prompts["prompt_id"], prompts["fact_id"]))
    unions: dict = {}
    for prompt, fact in fact_of.items():
        unions[fact] = unions.get(fact, frozenset()) | coarse.get(prompt, frozenset())
    per_fact: dict = {}
    for prompt, (ids, _) in prompt_targets.items():
        union = len(unions.get(fact_of[prompt], ()))
        per_fact.setdefault(fact_of[prompt], []).append(1 - len(ids) / union if union else 0.0)
    return float(np.mean([np.mean(v) for v in per_fact.values()])) if per_fact else float("nan")
