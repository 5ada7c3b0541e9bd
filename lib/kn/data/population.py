"""kn.data.population: which facts a run studies: all of them (the papers), or the facts the model knows.

API
    KnownRule(max_rank, min_templates)            a fact is known when its answer's first token ranks <= max_rank (0 is
                                                  top-1) on at least min_templates of its templates
    REPORTED_RULES                                the rules chapter 1 counts facts for, beside the run's own
    known_facts(scored, rule) -> Series[fact_id -> bool]        scored: prompt rows with fact_id, rank_target
    rule_counts(scored, rules) -> DataFrame [relation x rule]   facts kept by each rule, per relation
    run_population(data, params, score) -> Population           chapter 1's whole choice, before any attribution;
        EmptyPopulation (a BadInput) when the known-facts rule leaves no relation
    score_rows(loaded, rows, *, batch_size, progress) -> rows + target_id and next-token scores
    shared_prompts(prompts) -> rows another relation repeats word for word, with split_mismatch
    split_table(facts, prompts), accuracy_table(prompts) -> chapter 1's tables
    object_table(facts, relations, tokenizer) -> every object of the relations with its first token (edits' t')
    Population(prompts, candidates, rule_counts, rule)

With population "known", chapter 1 scores a seeded pool of candidate facts (candidate_facts_per_relation per relation
and split), keeps those the rule accepts, and then draws the run's sample from them exactly as it would from all facts;
the rule is fixed by the parameters before attribution and never sees an attribution score. A relation whose known
facts give fewer than MIN_TRAIN_FACTS train facts or no test fact leaves the run (Population.dropped_relations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from kn.base.errors import EmptyPopulation
from kn.base.params import StudyParams
from kn.core.scoring import check_prompt_lengths, next_token_scores, tokenize_prompts
from kn.data import pararel


@dataclass(frozen=True)
class KnownRule:
    max_rank: int = 0  # 0 = top-1
    min_templates: int = 1

    @property
    def label(self) -> str:
        top = "top-1" if self.max_rank == 0 else f"top-{self.max_rank + 1}"
        return f"{top} on >= {self.min_templates}"

    @classmethod
    def from_params(cls, p: StudyParams) -> "KnownRule":
        return cls(p.known_max_rank, p.known_min_templates)


# A grid wide enough to show how fast the population shrinks as the rule tightens.
REPORTED_RULES = tuple(KnownRule(r, k) for r in (0, 4, 9) for k in (1, 3, 5))


def _hits(scored: pd.DataFrame, rule: KnownRule) -> pd.Series:
    missing = {"fact_id", "rank_target"} - set(scored.columns)
    if missing:
        raise ValueError(f"scored prompts lack column(s) {sorted(missing)}")
    return (scored["rank_target"] <= rule.max_rank).groupby(scored["fact_id"]).sum()


def known_facts(scored: pd.DataFrame, rule: KnownRule) -> pd.Series:
    """fact_id -> whether the rule accepts it. scored: one row per prompt with fact_id and rank_target (0 = top-1)."""
    return _hits(scored, rule) >= rule.min_templates


def rule_counts(scored: pd.DataFrame, rules=REPORTED_RULES) -> pd.DataFrame:
    """Facts kept per relation (rows, plus "all") by each rule (columns, by label), out of the scored candidates
    (column "candidates")."""
    relation = scored.drop_duplicates("fact_id").set_index("fact_id")["relation"]
    table = pd.DataFrame({"candidates": relation.groupby(relation).size()})
    for rule in rules:
        kept = known_facts(scored, rule)
        table[rule.label] = kept.groupby(relation.loc[kept.index]).sum().astype(int)
    table = table.fillna(0).astype(int)
    table.loc["all"] = table.sum()
    return table


# A relation needs train facts for what its test facts are set against (LAND's targets, the relation prior,
# Knowledge-Neurons p) and test facts to be measured: with fewer known facts than this it leaves the run.
MIN_TRAIN_FACTS = 2


@dataclass
class Population:
    prompts: pd.DataFrame  # the run's prompt rows, scored (p_target, top1_id, p_top1, rank_target, correct)
    candidates: pd.DataFrame  # every scored prompt (= prompts when population is "all")
    rule_counts: pd.DataFrame | None  # None when population is "all"
    rule: KnownRule | None
    dropped_relations: list = field(default_factory=list)  # known facts too few: < MIN_TRAIN_FACTS train or no test


def run_population(data: pararel.AdaptedData, params: StudyParams,
                   score: Callable[[pd.DataFrame], pd.DataFrame]) -> Population:
    """The run's prompts, scored. score(prompt rows) -> the same rows with target_id and the scoring columns
    (kn.core.scoring.next_token_scores joined); it is called once, on the candidates (known) or on the sample (all)."""
    if params.population == "all":
        prompts = score(pararel.build_prompts(pararel.sample_facts(data.facts, params), data.templates))
        return Population(prompts, prompts, None, None)
    limit = params.candidate_facts_per_relation
    pool = pararel.sample_facts(data.facts, params, limits={"train": limit, "test": limit}, purpose="candidates")
    candidates = score(pararel.build_prompts(pool, data.templates))
    rule = KnownRule.from_params(params)
    kept = known_facts(candidates, rule)
    known = pool[pararel.fact_ids(pool).map(kept).fillna(False).astype(bool).to_numpy()]
    per_split = known.groupby(["relation", "split"]).size().unstack(fill_value=0).reindex(
        columns=["train", "test"], fill_value=0)
    usable = per_split[(per_split["train"] >= MIN_TRAIN_FACTS) & (per_split["test"] >= 1)].index
    if len(usable) == 0:  # checked here, right after scoring, before any attribution
        raise EmptyPopulation(
            f"population: known keeps no relation: of {pool['relation'].nunique()} relation(s), none has "
            f"{MIN_TRAIN_FACTS} known train facts and 1 known test fact ({len(known)} of {len(pool)} candidate facts "
            f"known by the rule rank <= {params.known_max_rank} on >= {params.known_min_templates} templates); "
            "loosen known_max_rank or known_min_templates, add candidate facts, or use population: all")
    dropped = sorted(set(known["relation"]) - set(usable) | set(pool["relation"]) - set(known["relation"]))
    sample = pararel.sample_facts(known, params, relations=list(usable))
    prompts = candidates[candidates["fact_id"].isin(set(pararel.fact_ids(sample)))]
    counts = rule_counts(candidates, tuple(dict.fromkeys(REPORTED_RULES + (rule,))))
    return Population(prompts.reset_index(drop=True), candidates, counts, rule, dropped)


def score_rows(loaded, rows: pd.DataFrame, *, batch_size: int = 32, progress: bool = False) -> pd.DataFrame:
    """Prompt rows with the answer's first token (target_id, answer_n_tokens) and the model's next-token scores
    (p_target, top1_id, p_top1, rank_target, correct = the answer's first token is top-1)."""
    rows = pararel.add_answer_tokens(rows, loaded.tokenizer).reset_index(drop=True)
    input_ids = tokenize_prompts(loaded.tokenizer, rows["prompt"])
    check_prompt_lengths(loaded, input_ids, rows["prompt"])
    scores = next_token_scores(loaded, input_ids, rows["target_id"], batch_size=batch_size, progress=progress)
    out = pd.concat([rows, scores], axis=1)
    out["correct"] = out["top1_id"] == out["target_id"]
    return out


def shared_prompts(prompts: pd.DataFrame) -> pd.DataFrame:
    """Rows whose (prompt, answer) another relation's row repeats (cross-relation duplicates), with `split_mismatch`
    True where the copies fall on both sides of the split (kn.data.pararel.split_facts prevents it)."""
    twins = prompts[prompts.duplicated(["prompt", "answer"], keep=False)]
    sides = twins.groupby(["prompt", "answer"])["split"].transform("nunique")
    return twins.assign(split_mismatch=sides > 1)


def split_table(facts: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    """Facts per relation and split: in the whole data and in this run (prompts: the run's prompt rows)."""
    run_facts = prompts.drop_duplicates("fact_id")
    table = pd.concat({"all": facts.groupby(["relation", "split"]).size().unstack(),
                       "this run": run_facts.groupby(["relation", "split"]).size().unstack()}, axis=1)
    table = table.fillna(0).astype(int)
    table.loc["total"] = table.sum()
    return table


def accuracy_table(prompts: pd.DataFrame) -> pd.DataFrame:
    """Per relation (and "all"): prompts, top-1 accuracy, mean P(answer), share of answers longer than one token."""
    def row(group):
        return pd.Series({"prompts": len(group), "top-1 accuracy": group["correct"].mean(),
                          "mean P(answer)": group["p_target"].mean(),
                          "multi-token answers": (group["answer_n_tokens"] > 1).mean()})

    table = pd.DataFrame({r: row(g) for r, g in prompts.groupby("relation")}).T
    table.loc["all"] = row(prompts)
    table["prompts"] = table["prompts"].astype(int)
    return table


def object_table(facts: pd.DataFrame, relations, tokenizer) -> pd.DataFrame:
    """Every object of ``relations`` in the data (all facts, both splits) with the first token of " " + object: the
    pool an edit's new answer t' is drawn from."""
    objects = facts[facts["relation"].isin(set(relations))].drop_duplicates(["relation", "object"])
    rows = pararel.add_answer_tokens(objects.assign(answer=" " + objects["object"]), tokenizer)
    return rows[["relation", "object", "target_id"]].sort_values(["relation", "object"]).reset_index(drop=True)
