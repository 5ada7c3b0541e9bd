"""kn.experiments.updates: chapter 6's experiments: updating facts (t -> t') and erasing relations, with perplexity
statements, on chapter 5's test design.

API
    statement_pools(prompts, size, seed) -> {relation: [prompt_id]}     perplexity statements ("prompt answer")
    fact_update_experiment(setup, settings) -> DataFrame, one row per (fact, method incl. "Before" and the variants)
    variant_name(key, variant) -> "LAND, top 5"
    relation_erasing_experiment(setup, settings) -> DataFrame, one row per (relation, erased set)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kn.base.neurons import matched_random
from kn.base.progress import track
from kn.core.scoring import next_token_scores, tokenize_prompts
from kn.experiments.conditions import (
    METHODS,
    PRIMARY,
    EditSettings,
    InterventionSetup,
    _name,
    _rng,
    condition_prompts,
)
from kn.methods import editing

# --------------------------------------------------------------------------- editing




def statement_pools(prompts: pd.DataFrame, size: int, seed: int) -> dict:
    """Per relation, a seeded sample of at most ``size`` prompt_ids whose statement (prompt + answer) measures
    perplexity."""
    return {r: g.sample(n=min(size, len(g)), random_state=seed)["prompt_id"].tolist()
            for r, g in prompts.groupby("relation", sort=True)}


class _Statements:
    """Perplexity of statement groups: tokenised once, groups per fact (within its relation, across the others)."""

    def __init__(self, setup: InterventionSetup, size: int, seed: int, batch_size: int):

        prompts = setup.prompts
        self.loaded, self.batch_size = setup.loaded, batch_size
        self.pools = statement_pools(prompts, size, seed)
        texts = prompts["prompt"] + prompts["answer"]
        self.ids = dict(zip(prompts["prompt_id"], tokenize_prompts(setup.loaded.tokenizer, texts)))
        self.fact_of = dict(zip(prompts["prompt_id"], prompts["fact_id"]))
        self.size, self.seed = size, seed

    def groups(self, fact: str, relation: str) -> tuple[list, list]:
        within = [p for p in self.pools[relation] if self.fact_of[p] != fact]
        others = sorted(p for r, pool in self.pools.items() if r != relation for p in pool)
        rng = _rng(self.seed, "across", fact)
        across = [others[i] for i in np.sort(rng.permutation(len(others))[: self.size])]
        return within, across

    def perplexity(self, prompt_ids: list) -> float:
        if not prompt_ids:
            return float("nan")
        return editing.perplexity(self.loaded, [self.ids[p] for p in prompt_ids], batch_size=self.batch_size)


def variant_name(key: str, variant: str) -> str:
    """The display name of a method's edit variant: "LAND, top 5" (matched size), "LAND, scaled λ" (Dai's rule)."""
    return f"{METHODS[key]}, {variant}"


def fact_update_experiment(setup: InterventionSetup, settings: EditSettings, *, progress: bool = False) -> pd.DataFrame:
    """Edit every designed fact towards t' (the design's new_target_id) with each method's set (LAND Eq. 7, undone
    after each), and measure on every probe of each condition whether the top-1 token is t' and whether it moved.

    Returns one row per (fact, method): success_<condition> and changed_<condition> as the share of the condition's
    probes (Same 1, Related related_templates, Unrelated unrelated_partners), outcomes_<condition> the 0/1 outcome of
    each probe in the design's order (paired across methods for McNemar's test), and ppl_within / ppl_across
    (perplexity of statements of the fact's relation, the fact's own excluded, and of other relations) with their
    _change and _relative against "Before" (the unedited row). Variants beside the papers' sets, without perplexity:
    each primary method's top-k neurons for every matched size ("LAND, top 5") and the other lambda rule
    ("LAND, scaled λ" when edit_scaled is off, "LAND, unscaled λ" when on). The weights' checksum is compared with
    the original after every edit (ValueError if not)."""
    loaded, design, prompts = setup.loaded, setup.design, setup.prompts
    statements = _Statements(setup, settings.ppl_statements, settings.seed, settings.eval_batch_size)
    checksum = editing.weights_checksum(loaded.model)
    other_rule = "unscaled λ" if settings.edit_scaled else "scaled λ"
    edits = [(key, _name(key), setup.sets[key], settings.edit_scaled, True) for key in setup.sets]
    for k, by_key in sorted((setup.matched or {}).items()):
        edits += [(key, variant_name(key, f"top {k}"), sets, settings.edit_scaled, False) for key, sets in by_key.items()]
    edits += [(key, variant_name(key, other_rule), setup.sets[key], not settings.edit_scaled, False)
              for key in PRIMARY if key in setup.sets]

    def top1(prompt_ids):
        ids = [setup.input_ids[p] for p in prompt_ids]
        return next_token_scores(loaded, ids, [0] * len(ids), batch_size=settings.eval_batch_size)["top1_id"].to_numpy()

    def outcomes(after, before, spans, new_token):
        out = {}
        for c, (lo, hi) in spans.items():
            hit = [int(t == new_token) for t in after[lo:hi]]
            out |= {f"outcomes_{c}": hit, f"success_{c}": float(np.mean(hit)),
                    f"changed_{c}": float(np.mean(after[lo:hi] != before[lo:hi]))}
        return out

    records = []
    rows = list(design.itertuples())
    for row in (track(rows, len(rows), "fact updates", "fact") if progress else rows):
        new_token = int(row.new_target_id)
        old_token = int(prompts.loc[row.same_prompt, "target_id"])
        by_condition = condition_prompts(row)
        probes, spans = [], {}
        for c, ps in by_condition.items():
            spans[c] = (len(probes), len(probes) + len(ps))
            probes += ps
        within, across = statements.groups(row.fact_id, row.relation)
        base = {"fact_id": row.fact_id, "relation": row.relation, "cluster": row.cluster, "new_object": row.new_object}
        before = top1(probes)
        records.append(base | {"method": "Before", "variant": "before", "ppl_within": statements.perplexity(within),
                               "ppl_across": statements.perplexity(across)} | outcomes(before, before, spans, new_token))
        for key, name, sets, scaled, with_ppl in edits:
            with editing.update_fact(loaded, sets[row.fact_id], old_token, new_token, lambda1=settings.edit_lambda1,
                                     lambda2=settings.edit_lambda2, scaled=scaled):
                after = top1(probes)
                ppl = ({"ppl_within": statements.perplexity(within), "ppl_across": statements.perplexity(across)}
                       if with_ppl else {"ppl_within": np.nan, "ppl_across": np.nan})
            records.append(base | {"method": name, "variant": "paper" if with_ppl else name.split(", ", 1)[1]} | ppl
                           | outcomes(after, before, spans, new_token))
    if editing.weights_checksum(loaded.model) != checksum:
        raise ValueError("an edit was not undone: the weights differ from the original")
    edits_table = pd.DataFrame(records)
    before_ppl = edits_table[edits_table["method"] == "Before"].set_index("fact_id")[["ppl_within", "ppl_across"]]
    for column in ("ppl_within", "ppl_across"):
        reference = edits_table["fact_id"].map(before_ppl[column])
        edits_table[f"{column}_change"] = edits_table[column] - reference
        edits_table[f"{column}_relative"] = edits_table[column] / reference - 1
    return edits_table


def relation_erasing_experiment(setup: InterventionSetup, settings: EditSettings, *, progress: bool = False) -> pd.DataFrame:
    """Dai et al.'s erasing: for each relation, zero the value vectors of the erase_top_k neurons most common among its
    facts' refined sets (setup.refined_by_relation), and, as its control, of as many random neurons per layer; measure
    the perplexity of every relation's statements. Returns one row per (relation, erased): neurons, ppl_before,
    ppl_after and the relative change for the erased relation and the mean over the others."""
    refined_by_relation = setup.refined_by_relation
    statements = _Statements(setup, settings.ppl_statements, settings.seed, settings.eval_batch_size)
    base = {r: statements.perplexity(p) for r, p in statements.pools.items()}
    checksum = editing.weights_checksum(setup.loaded.model)
    rows = []
    relations = sorted(refined_by_relation)
    for relation in (track(relations, len(relations), "erasing", "relation") if progress else relations):
        erased = editing.most_common_neurons(refined_by_relation[relation], settings.erase_top_k)
        control = matched_random(erased, setup.n_neurons, _rng(settings.seed, "erase", relation))
        for what, chosen in (("refined neurons", erased), ("random neurons (matched)", control)):
            with editing.erase_neurons(setup.loaded, chosen):
                after = {r: statements.perplexity(p) for r, p in statements.pools.items()}
            others = [after[r] / base[r] - 1 for r in base if r != relation]
            rows.append({"relation": relation, "erased": what, "neurons": len(chosen), "ppl_before": base[relation],
                         "ppl_after": after[relation], "change_erased_relation": after[relation] / base[relation] - 1,
                         "change_other_relations": float(np.mean(others)) if others else float("nan")})
    if editing.weights_checksum(setup.loaded.model) != checksum:
        raise ValueError("an erasure was not undone: the weights differ from the original")
    return pd.DataFrame(rows)
