"""kn.data.population: the known-facts rule, its counts per relation, and the run's population chosen before attribution."""

import pandas as pd
from kn.base.params import StudyParams
from kn.data import pararel
from kn.data.population import (
    KnownRule,
    known_facts,
    rule_counts,
    run_population,
    shared_prompts,
)


def _scored(ranks: dict) -> pd.DataFrame:
    """ranks: {fact_id: [rank of each template]} -> scored prompt rows."""
    rows = [{"fact_id": f, "relation": f.split(":")[0], "rank_target": r} for f, rs in ranks.items() for r in rs]
    return pd.DataFrame(rows)


def test_known_rule_counts_templates_within_the_rank():
    scored = _scored({"P1:0": [0, 0, 3, 9], "P1:1": [4, 5, 6, 7], "P2:0": [0, 20, 20, 20]})
    assert known_facts(scored, KnownRule(0, 2)).to_dict() == {"P1:0": True, "P1:1": False, "P2:0": False}
    assert known_facts(scored, KnownRule(4, 1)).to_dict() == {"P1:0": True, "P1:1": True, "P2:0": True}
    assert known_facts(scored, KnownRule(9, 4)).to_dict() == {"P1:0": True, "P1:1": True, "P2:0": False}
    table = rule_counts(scored, (KnownRule(0, 2), KnownRule(4, 1)))
    assert table.loc["P1"].tolist() == [2, 1, 2] and table.loc["all"].tolist() == [3, 1, 3]
    assert KnownRule(4, 5).label == "top-5 on >= 5"


def test_known_population_is_drawn_from_the_scored_candidates(data_dir):
    data = pararel.load_adapted(StudyParams(data_dir=str(data_dir)))
    params = StudyParams(relations=["P36", "P103"], population="known", known_max_rank=0, known_min_templates=2,
                         candidate_facts_per_relation=6, train_facts_per_relation=2, test_facts_per_relation=1,
                         data_dir=str(data_dir))
    scored_rows = []

    def score(rows):  # a fake model: it "knows" the facts with an even fact_index, on templates 0-2
        rows = rows.assign(target_id=1, answer_n_tokens=1, p_target=0.5, top1_id=1, p_top1=0.5)
        known = (rows["fact_index"] % 2 == 0) & (rows["template_position"] <= 2)
        rows = rows.assign(rank_target=(~known).astype(int) * 50, correct=known)
        scored_rows.append(rows)
        return rows

    pop = run_population(data, params, score)
    assert len(scored_rows) == 1  # one scoring pass, on the candidates
    candidates = scored_rows[0]
    assert candidates.groupby(["relation", "split"])["fact_id"].nunique().max() <= 6
    assert (pop.prompts["fact_index"] % 2 == 0).all()
    assert pop.prompts.groupby(["relation", "split"])["fact_id"].nunique().max() <= 2
    assert set(pop.prompts["fact_id"]) <= set(candidates["fact_id"])
    assert pop.rule_counts.loc["all", "candidates"] == candidates["fact_id"].nunique()
    known = candidates[candidates["fact_index"] % 2 == 0].drop_duplicates("fact_id")
    sides = known.groupby(["relation", "split"]).size().unstack(fill_value=0).reindex(columns=["train", "test"],
                                                                                      fill_value=0)
    expected = sorted(sides.index[(sides["train"] < 2) | (sides["test"] < 1)])
    assert pop.dropped_relations == expected and not set(expected) & set(pop.prompts["relation"])
    everyone = run_population(data, StudyParams(relations=["P36"], train_facts_per_relation=2,
                                                test_facts_per_relation=1, data_dir=str(data_dir)), score)
    assert everyone.rule_counts is None and everyone.prompts["fact_id"].nunique() == 3


def test_shared_prompts_flag_pairs_on_both_sides():
    prompts = pd.DataFrame({"prompt": ["a", "a", "b", "b", "c"], "answer": [" x"] * 5,
                            "split": ["train", "train", "train", "test", "test"]})
    shared = shared_prompts(prompts)
    assert len(shared) == 4 and shared["split_mismatch"].tolist() == [False, False, True, True]


def test_a_relation_without_known_train_facts_leaves_the_run(data_dir):
    data = pararel.load_adapted(StudyParams(data_dir=str(data_dir)))
    params = StudyParams(relations=["P36", "P103"], population="known", known_max_rank=0, known_min_templates=1,
                         candidate_facts_per_relation=5, data_dir=str(data_dir))

    def score(rows):  # P36: only its test facts are known; P103: everything
        known = (rows["relation"] == "P103") | (rows["split"] == "test")
        return rows.assign(target_id=1, answer_n_tokens=1, p_target=0.5, top1_id=1, p_top1=0.5,
                           rank_target=(~known).astype(int) * 50, correct=known)

    pop = run_population(data, params, score)
    assert pop.dropped_relations == ["P36"] and set(pop.prompts["relation"]) == {"P103"}
