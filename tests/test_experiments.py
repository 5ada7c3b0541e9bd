import pandas as pd
import pytest

from kn.experiments import METHODS, design_conditions, method_sets, new_targets


def _prompts():
    rows = []
    for relation, facts in (("P1", ["a", "b", "c"]), ("P2", ["d", "e"])):
        for n, fact in enumerate(facts):
            for position in range(4):
                rows.append({"relation": relation, "fact_id": f"{relation}:{fact}", "object": f"obj-{fact}",
                             "target_id": 100 + n, "split": "test" if fact != "c" else "train",
                             "template_position": position, "key": f"{fact}{position}"})
    return pd.DataFrame(rows)


def test_design_holds_out_one_template_and_pairs_unrelated_facts():
    prompts = _prompts()
    design = design_conditions(prompts, seed=3)
    assert sorted(design["fact_id"]) == ["P1:a", "P1:b", "P2:d", "P2:e"]  # test facts only
    for row in design.itertuples():
        assert row.ident_position != row.held_out_position
        assert row.same_key == row.ident_key and row.related_key[0] == row.ident_key[0]
        assert row.unrelated_fact.split(":")[0] != row.relation  # other_relation by default
    same = design_conditions(prompts, seed=3, unrelated="same_relation")
    assert dict(zip(same["fact_id"], same["unrelated_fact"])) == {"P1:a": "P1:b", "P1:b": "P1:a", "P2:d": "P2:e",
                                                                  "P2:e": "P2:d"}
    assert design.equals(design_conditions(prompts.sample(frac=1, random_state=0), seed=3))
    with pytest.raises(ValueError, match="unrelated="):
        design_conditions(prompts, unrelated="nearby")


def test_method_sets_never_see_the_held_out_prompt():
    prompts = _prompts()
    design = design_conditions(prompts, seed=0)
    # neuron k+1 appears in every template's set; each template also has its own neuron 10*position + 50
    coarse = {k: frozenset({1, 50 + 10 * int(k[-1])}) for k in prompts["key"]}
    land = {k: frozenset({2}) for k in prompts["key"]}
    sets = method_sets(design, prompts, coarse, land, frozenset({9}), {"P1": 0.5, "P2": 0.5}, n_total=1000, seed=0)
    assert set(sets) == set(METHODS)
    for row in design.itertuples():
        assert sets["baseline"][row.fact_id] == coarse[row.ident_key]
        assert sets["land"][row.fact_id] == frozenset({2})
        assert sets["kn_refined"][row.fact_id] == frozenset({1})  # only the shared neuron is in > 50% of the 3 sets
        assert len(sets["random"][row.fact_id]) == 2 and sets["constant"][row.fact_id] == frozenset({9})


def test_new_target_is_another_object_of_the_relation():
    prompts = _prompts()
    design = design_conditions(prompts, seed=0)
    targets = new_targets(prompts, design, seed=0)
    answers = prompts.drop_duplicates("fact_id").set_index("fact_id")
    for fact, (obj, token) in targets.items():
        assert obj != answers.loc[fact, "object"] and token != answers.loc[fact, "target_id"]
        assert obj in set(prompts[prompts["relation"] == answers.loc[fact, "relation"]]["object"])
