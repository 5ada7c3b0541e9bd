"""kn.book.findings.data: chapter 1's summary (the data, the population, the model's identity).

API
    data_summary(params, data, population, identity, seconds) -> DataSummary
"""

from __future__ import annotations

from kn.base.stats import cluster_bootstrap_mean, rate, rate_from_counts
from kn.book.summaries import Claim, DataSummary
from kn.data.population import known_facts, shared_prompts

# --------------------------------------------------------------------------- chapter 1


def data_summary(params, data, population, identity: str, seconds: float) -> DataSummary:
    prompts = population.prompts
    shared = shared_prompts(prompts)
    mismatch = int(shared.drop_duplicates(["prompt", "answer"])["split_mismatch"].sum())
    per_fact_correct = prompts.groupby("fact_id").agg(correct=("correct", "mean"), relation=("relation", "first"))
    accuracy = cluster_bootstrap_mean(per_fact_correct["correct"].to_numpy(float), per_fact_correct["relation"].to_numpy(),
                                      n_boot=params.bootstrap_samples, seed=params.seed)
    top1 = rate(prompts["correct"].to_numpy(float))
    candidates = population.candidates["fact_id"].nunique()
    known = candidates if population.rule is None else int(known_facts(population.candidates, population.rule).sum())
    facts = prompts.drop_duplicates("fact_id")
    what = "all facts" if population.rule is None else f"facts the model knows ({population.rule.label} templates)"
    dropped = list(population.dropped_relations)
    left = (f" {', '.join(dropped)} left the run: among its candidates fewer than 2 train facts or no test fact are "
            "known." if dropped else "")
    claims = [
        Claim("split", f"{len(shared)} rows repeat another relation's prompt and answer word for word; "
                       f"{mismatch} such pairs fall on both sides of the split.", None, mismatch == 0),
        Claim("accuracy", f"Population: {what}, {len(facts)} facts ({int((facts['split'] == 'test').sum())} test) "
                          f"of {prompts['relation'].nunique()} relations.{left} The model's top-1 accuracy on them is "
                          f"{accuracy.format('{:.1%}')} (mean over facts, resampled by relation); over prompts "
                          f"{top1.format('{:.1%}')} (exact interval).", accuracy, None),
    ]
    return DataSummary(
        model=params.model, model_identity=identity, counts=data.summary() | {"source": data.source},
        population=params.population, known_rule="" if population.rule is None else population.rule.label,
        candidate_facts=int(candidates), known_candidate_facts=int(known), dropped_relations=dropped,
        sample_relations=int(prompts["relation"].nunique()),
        sample_facts_train=int((facts["split"] == "train").sum()), sample_facts_test=int((facts["split"] == "test").sum()),
        sample_prompts=len(prompts), shared_prompt_rows=len(shared), shared_prompts_split_mismatch=mismatch,
        top1_accuracy=accuracy, multi_token_answer_share=float((prompts["answer_n_tokens"] > 1).mean()),
        claims=claims, seconds=seconds, top1_rate=top1, known_rate=rate_from_counts(int(known), int(candidates)))
