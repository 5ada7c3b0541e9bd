"""kn.experiments: the shared test design, the methods' sets and their matched random controls, and the amplification,
update and erasing experiments on a tiny random model."""

import numpy as np
import pandas as pd
import pytest
import torch
from kn.base.neurons import matched_random
from kn.experiments import amplification, conditions, updates
from kn.experiments.conditions import (
    EditSettings,
    design_conditions,
    method_sets,
    new_targets,
    random_name,
    refine_p_on_train,
)

torch.set_num_threads(1)


def _prompts():
    rows = []
    for relation, facts in (("P1", ["a", "b", "c"]), ("P2", ["d", "e"])):
        for n, fact in enumerate(facts):
            for position in range(4):
                rows.append({"relation": relation, "fact_id": f"{relation}:{fact}", "object": f"obj-{fact}",
                             "subject": f"subj-{fact}", "target_id": 100 + n,
                             "split": "test" if fact != "c" else "train", "template_position": position,
                             "prompt_id": f"{relation}:{fact}#{position}"})
    return pd.DataFrame(rows)


def test_design_holds_out_one_template_and_pairs_unrelated_facts():
    prompts = _prompts()
    design = design_conditions(prompts, seed=3)
    assert sorted(design["fact_id"]) == ["P1:a", "P1:b", "P2:d", "P2:e"]  # test facts only
    for row in design.itertuples():
        assert row.held_out_positions == [row.held_out_positions[0]] and row.ident_position not in row.held_out_positions
        assert row.same_prompt == f"{row.fact_id}#{row.ident_position}"
        assert row.related_prompt == f"{row.fact_id}#{row.held_out_positions[0]}"
        assert row.unrelated_fact.split(":")[0] != row.relation  # other_relation by default
    same = design_conditions(prompts, seed=3, unrelated="same_relation")
    assert dict(zip(same["fact_id"], same["unrelated_fact"])) == {"P1:a": "P1:b", "P1:b": "P1:a", "P2:d": "P2:e",
                                                                  "P2:e": "P2:d"}
    assert design.equals(design_conditions(prompts.sample(frac=1, random_state=0), seed=3))
    with pytest.raises(ValueError, match="unrelated="):
        design_conditions(prompts, unrelated="nearby")


def test_several_related_templates_and_typed_unrelated_partners_that_never_answer_t_prime():
    prompts = _prompts()
    rows = []
    for relation, facts in (("P3", ["f", "g"]), ("P4", ["h"])):  # P3 answers like P1 (a shared object); P4 does not
        for n, fact in enumerate(facts):
            for position in range(4):
                rows.append({"relation": relation, "fact_id": f"{relation}:{fact}", "object": f"obj-{fact}",
                             "subject": f"subj-{fact}", "target_id": 200 + n, "split": "test",
                             "template_position": position, "prompt_id": f"{relation}:{fact}#{position}"})
    prompts = pd.concat([prompts, pd.DataFrame(rows)], ignore_index=True)
    objects = pd.DataFrame({"relation": ["P1", "P1", "P2", "P2", "P3", "P3", "P4", "P4"],
                            "object": ["obj-a", "shared", "obj-d", "Lima", "shared", "obj-f", "obj-h", "Kyiv"],
                            "target_id": [100, 7, 100, 9, 7, 200, 200, 8]})
    design = design_conditions(prompts, seed=1, related_templates=2, unrelated_partners=2, objects=objects)
    for row in design.itertuples():
        assert len(row.related_prompts) == 2 and len(set(row.held_out_positions) | {row.ident_position}) == 3
        assert all(p.startswith(row.fact_id + "#") and p != row.same_prompt for p in row.related_prompts)
        assert len(row.unrelated_prompts) == len(row.unrelated_facts) <= 2
        answers = dict(zip(prompts["fact_id"], prompts["target_id"]))
        for partner in row.unrelated_facts:
            assert answers[partner] != row.new_target_id  # the partner's own answer is never t'
        if row.relation in ("P1", "P3"):  # P1 and P3 share an object: never each other's partners
            assert not any(f.split(":")[0] in ("P1", "P3") for f in row.unrelated_facts)
    assert design["unrelated_typed"].all()


def test_matched_size_sets_keep_the_top_k_by_attribution():
    from kn.experiments.conditions import matched_size_sets, top_k_by_score

    assert top_k_by_score(frozenset({1, 2, 3, 4}), {1: 0.1, 2: 0.9, 3: 0.5}, 2) == frozenset({2, 3})
    assert top_k_by_score(frozenset({8}), {}, 5) == frozenset({8})  # fewer than k: all of them
    prompts = _prompts()
    design = design_conditions(prompts, seed=0)
    sets = {"baseline": {f: frozenset(range(10)) for f in design["fact_id"]},
            "land": {f: frozenset({3}) for f in design["fact_id"]}}
    scores = {p: {n: float(n) for n in range(10)} for p in design["same_prompt"]}
    matched = matched_size_sets(design, sets, scores, [1, 5])
    assert set(matched) == {1, 5} and set(matched[5]) == {"baseline", "land"}
    assert all(s == frozenset({5, 6, 7, 8, 9}) for s in matched[5]["baseline"].values())
    assert all(s == frozenset({9}) for s in matched[1]["baseline"].values())


def test_kn_refined_never_sees_the_held_out_prompt():
    prompts = _prompts()
    design = design_conditions(prompts, seed=0)
    # every set holds neuron 1; only the held-out (Related) prompt's set holds 99. With p = 0 refining keeps the union
    # of the sets it sees, so 99 appears exactly when the held-out prompt is seen.
    held = set(design["related_prompt"])
    coarse = {p: frozenset({1, 99}) if p in held else frozenset({1, 50 + int(p[-1])}) for p in prompts["prompt_id"]}
    sets = method_sets(design, prompts, {"baseline": coarse}, refine_sets=coarse, p_by_relation={"P1": 0.0, "P2": 0.0},
                       n_layers=2, n_neurons=100, seed=0)
    for row in design.itertuples():
        refined = sets["kn_refined"][row.fact_id]
        assert 99 not in refined and 1 in refined
        assert refined == frozenset({1} | {50 + p for p in range(4) if p not in row.held_out_positions})
        assert sets["baseline"][row.fact_id] == coarse[row.same_prompt]


def test_every_method_has_a_random_control_matched_per_layer():
    prompts = _prompts()
    design = design_conditions(prompts, seed=0)
    H = 50
    coarse = {p: frozenset({3, 7, H + 2}) for p in prompts["prompt_id"]}  # 2 neurons in layer 0, 1 in layer 1
    land = {p: frozenset({2 * H + 5}) for p in prompts["prompt_id"]}  # 1 neuron in layer 2
    sets = method_sets(design, prompts, {"baseline": coarse, "land": land, "constant": frozenset({4})},
                       refine_sets=coarse, p_by_relation={"P1": 0.5, "P2": 0.5}, n_layers=3, n_neurons=H, seed=0)
    assert set(sets) == {"baseline", "kn_refined", "land", "constant", "random_baseline", "random_kn_refined",
                         "random_land", "random_constant"}
    for key in ("baseline", "kn_refined", "land", "constant"):
        for fact, chosen in sets[key].items():
            control = sets[f"random_{key}"][fact]
            layers = lambda s: sorted(i // H for i in s)  # noqa: E731
            assert layers(control) == layers(chosen) and not (control & chosen)
    assert sets["random_land"]["P1:a"] != sets["random_baseline"]["P1:a"]  # each method its own control
    assert random_name("land") == "Random (LAND)"


def test_matched_random_is_seeded_and_falls_back_to_the_whole_layer():
    rng = lambda: np.random.default_rng(3)  # noqa: E731
    chosen = frozenset({0, 1, 2, 10})
    assert matched_random(chosen, 4, rng()) == matched_random(chosen, 4, rng())
    full = matched_random(frozenset({0, 1, 2, 3}), 4, rng())  # no neuron of layer 0 outside the set
    assert sorted(full) == [0, 1, 2, 3]


def test_refine_p_is_chosen_on_train_facts_with_nine_sets():
    prompts = _prompts()
    # P1's train fact c: neuron 5 in 3 of its 4 templates; dropping one template leaves it in 2 or 3 of 3 sets
    sets = {p: frozenset({5}) if p.startswith("P1:c") and not p.endswith("#3") else frozenset({6})
            for p in prompts["prompt_id"]}
    p = refine_p_on_train(prompts, sets, p0=0.7, step=0.05, lo=1, hi=1, seed=0)
    assert set(p) == {"P1"}  # P2 has no train fact
    assert 0 < p["P1"] < 1


def test_new_target_is_another_object_of_the_relation_even_when_the_run_has_one_answer():
    prompts = _prompts()
    prompts["target_id"] = 100  # every fact of the run has the same answer token
    design = design_conditions(prompts, seed=0)
    objects = pd.DataFrame({"relation": ["P1", "P1", "P1", "P2", "P2"], "object": ["obj-a", "Rome", "Oslo", "Lima", "Kyiv"],
                            "target_id": [100, 7, 8, 9, 100]})
    targets = new_targets(objects, prompts, design, seed=0)
    for fact, (obj, token) in targets.items():
        relation = fact.split(":")[0]
        assert token != 100 and obj in set(objects.loc[objects["relation"] == relation, "object"])
    with pytest.raises(ValueError, match="no other object"):
        new_targets(objects[objects["target_id"] == 100], prompts, design, seed=0)


# --------------------------------------------------------------------------- the experiments on a tiny model


@pytest.fixture
def setup():
    from kn.core.models import tiny_model

    loaded = tiny_model("llama", n_layers=2, n_neurons=16, vocab_size=128)
    prompts = _prompts()
    prompts["prompt"] = [f"prompt {p}" for p in prompts["prompt_id"]]
    prompts["answer"] = " x"
    objects = pd.DataFrame({"relation": ["P1", "P1", "P2", "P2"], "object": ["x", "y", "z", "w"],
                            "target_id": [3, 4, 5, 6]})
    design = design_conditions(prompts, seed=0, objects=objects)
    rng = np.random.default_rng(0)
    input_ids = {p: torch.tensor(rng.integers(1, 128, size=3 + i % 3)) for i, p in enumerate(prompts["prompt_id"])}
    coarse = {p: frozenset({1, 17}) for p in prompts["prompt_id"]}
    sets = method_sets(design, prompts, {"baseline": coarse}, refine_sets=coarse,
                       p_by_relation={"P1": 0.5, "P2": 0.5}, n_layers=2, n_neurons=16, seed=0)
    return conditions.InterventionSetup(prompts.set_index("prompt_id", drop=False), design, sets, input_ids,
                                         {"P1": 0.5, "P2": 0.5}, 2, 16, {"P1": [frozenset({1, 17})],
                                                                         "P2": [frozenset({2})]}, objects, loaded)


def test_amplification_experiment_values(setup):
    from kn.methods.interventions import answer_probabilities

    results = amplification.amplification_experiment(setup, {"amplify": 2.0, "suppress": 0.0})
    assert len(results) == 3 * len(setup.sets) * 2 * len(setup.design)
    row = results[(results["condition"] == "Related") & (results["method"] == "Baseline")
                  & (results["action"] == "amplify")].iloc[0]
    design = setup.design.set_index("fact_id").loc[row["fact_id"]]
    before, after = answer_probabilities(setup.loaded, [setup.input_ids[design["related_prompt"]]],
                                         [setup.prompts.loc[design["related_prompt"], "target_id"]],
                                         [setup.sets["baseline"][row["fact_id"]]], 2.0)
    assert row["p_before"] == before[0] and row["p_after"] == after[0]
    assert row["change_rate"] == pytest.approx((after[0] - before[0]) / before[0])
    table = amplification.change_rate_table(results, "amplify", n_boot=200, seed=0)
    assert list(table.index[:2]) == ["Baseline", "Random (Baseline)"] and list(table.columns) == ["Same", "Related",
                                                                                                   "Unrelated"]


class _Tokenizer:
    def __call__(self, texts):
        return {"input_ids": [[1 + (ord(c) % 100) for c in t][:6] for t in texts]}


def test_update_and_erasing_undo_every_edit(setup):
    from kn.base.params import StudyParams
    from kn.methods.editing import weights_checksum

    setup.loaded.tokenizer = _Tokenizer()
    before = weights_checksum(setup.loaded.model)
    params = StudyParams(ppl_statements=3, erase_top_k=2)
    edits = updates.fact_update_experiment(setup, EditSettings.from_params(params))
    assert weights_checksum(setup.loaded.model) == before
    assert set(edits["method"]) == {"Before", "Baseline", "Random (Baseline)", "KN-refined", "Random (KN-refined)",
                                    "Baseline, scaled λ", "KN-refined, scaled λ"}  # Dai's rule beside the paper's
    variants = edits[~edits["variant"].isin(["paper", "before"])]
    assert set(variants["variant"]) == {"scaled λ"} and variants["ppl_within"].isna().all()
    assert all(len(o) == 1 for o in edits["outcomes_Related"]) and edits["success_Same"].isin([0.0, 1.0]).all()
    first = edits[edits["method"] == "Before"]
    assert (first["ppl_within_relative"] == 0).all() and (first["ppl_within_change"] == 0).all()
    erasing = updates.relation_erasing_experiment(setup, EditSettings.from_params(params))
    assert weights_checksum(setup.loaded.model) == before
    assert set(erasing["erased"]) == {"refined neurons", "random neurons (matched)"}
    assert (erasing.groupby("relation")["neurons"].nunique() == 1).all()  # the control is as large
