"""kn.methods.land: parameter counts, targets, counter-examples, the control baseline, seeded training, persistence."""

from __future__ import annotations

import math
import json

import numpy as np
import pandas as pd
import pytest
import torch
from kn.methods.counterexamples import (
    build_targets,
    counter_sets_for,
    draw_counterexamples,
    fact_sets_for,
    top_k_constant_set,
)
from kn.methods.land import (
    LandDetector,
    LandHyperParams,
    land_sets,
    load_land,
    parameter_count,
    save_land,
    mean_loss,
    train_land,
)

torch.set_num_threads(1)  # 2 shared cores; the problems here are tiny


# --------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("L,H,R", [(2, 32, 4), (3, 5, 7), (12, 3072, 64)])
def test_parameter_count_formula(L, H, R):
    assert parameter_count(L, H, R) == L * 2 * H * R
    with torch.device("meta"):  # no memory for the 12 x 3072 case
        model = LandDetector(L, H, R)
    assert model.n_parameters == L * 2 * H * R
    assert tuple(model.encoder.shape) == (L, H, R) and tuple(model.decoder.shape) == (L, R, H)


def _meta_model(config_cls, model_cls, **kwargs):
    config = config_cls(**kwargs)
    with torch.device("meta"):
        return model_cls(config)


def test_parameter_count_gpt2_and_llama_from_configs():
    from kn.core.adapters import adapter_for
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    gpt2 = _meta_model(GPT2Config, GPT2LMHeadModel, n_layer=12, n_embd=768, n_head=12)
    llama = _meta_model(LlamaConfig, LlamaForCausalLM, num_hidden_layers=16, hidden_size=2048,
                        intermediate_size=8192, num_attention_heads=32, num_key_value_heads=8,
                        vocab_size=128256, tie_word_embeddings=True)
    for model, expected, shape in ((gpt2, 4_718_592, (12, 3072)), (llama, 16_777_216, (16, 8192))):
        adapter = adapter_for(model)
        L, H = adapter.n_layers, adapter.n_neurons
        assert (L, H) == shape
        assert parameter_count(L, H, 64) == expected
        with torch.device("meta"):
            assert LandDetector(L, H, 64).n_parameters == expected


def test_forward_is_per_layer_bilinear():
    g = torch.Generator().manual_seed(3)
    model = LandDetector(3, 6, 2, generator=g)
    x = (torch.rand(4, 3, 6, generator=g) > 0.5).float()
    y = model(x)
    assert y.shape == (4, 3, 6)
    for layer in range(3):
        expected = x[:, layer] @ model.encoder[layer] @ model.decoder[layer]
        torch.testing.assert_close(y[:, layer], expected)
    with pytest.raises(ValueError, match=r"\[B, 3, 6\]"):
        model(torch.zeros(2, 6, 3))


def test_hyperparams_from_study_params():
    from kn.base.params import StudyParams

    p = StudyParams(land_rank=8, land_epochs=2, land_batch_size=4, land_lr=0.01, land_threshold=2.5,
                    land_counterexamples=0, seed=7)
    assert LandHyperParams.from_params(p) == LandHyperParams(rank=8, epochs=2, batch_size=4, lr=0.01,
                                                             threshold=2.5, counterexamples=0, seed=7)
    assert LandHyperParams.from_params(StudyParams()) == LandHyperParams()


# --------------------------------------------------------------------------- targets and counter-examples


def test_build_targets_by_hand():
    fact_sets = {"A": [frozenset({1, 2, 3}), frozenset({2, 3}), frozenset({3, 9})],
                 "B": [frozenset({5}), frozenset()]}
    counter = {"A": [frozenset({9, 100}), frozenset({1})]}  # B has no counter-examples
    targets = build_targets(fact_sets, counter)
    ids, counts = targets["A"]
    # counts before removal: 1:1, 2:2, 3:3, 9:1; 1 and 9 appear in a counter-example set
    assert ids.tolist() == [2, 3] and counts.tolist() == [2.0, 3.0]
    assert ids.dtype == np.int64 and counts.dtype == np.float32
    ids, counts = targets["B"]
    assert ids.tolist() == [5] and counts.tolist() == [1.0]
    no_removal = build_targets(fact_sets, {})
    assert no_removal["A"][0].tolist() == [1, 2, 3, 9] and no_removal["A"][1].tolist() == [1, 2, 3, 1]


def _prompts(facts, positions=(0, 1, 2)):
    """facts: [(fact_id, relation, object, split)] -> one row per (fact, template_position) with a prompt_id."""
    rows = [{"fact_id": f, "relation": r, "subject": f"subject of {f}", "object": o, "split": s,
             "template_position": t, "prompt_id": f"{f}#{t}"} for f, r, o, s in facts for t in positions]
    return pd.DataFrame(rows)


def test_draw_counterexamples_deterministic_and_prefers_other_objects():
    facts = [("P1:0", "P1", "Paris", "train"), ("P1:1", "P1", "Paris", "train"), ("P1:2", "P1", "Rome", "train"),
             ("P1:3", "P1", "Oslo", "train"), ("P1:4", "P1", "Lima", "train"), ("P1:5", "P1", "Rome", "test"),
             ("P2:0", "P2", "French", "train"), ("P2:1", "P2", "French", "train")]
    prompts = _prompts(facts)
    a = draw_counterexamples(prompts, 2, seed=0)
    assert a == draw_counterexamples(prompts.sample(frac=1.0, random_state=1), 2, seed=0)  # row order is irrelevant
    assert set(a) == {f for f, *_ in facts}
    objects = {f: o for f, _, o, _ in facts}
    split = {f: s for f, *_, s in facts}
    for fact, drawn in a.items():
        assert fact not in drawn and len(set(drawn)) == len(drawn)
        assert all(g.split(":")[0] == fact.split(":")[0] and split[g] == split[fact] for g in drawn)
    # P1 train facts all have >= 2 facts with another object: only those are drawn
    for fact in ("P1:0", "P1:1", "P1:2", "P1:3", "P1:4"):
        assert len(a[fact]) == 2 and all(objects[g] != objects[fact] for g in a[fact])
    # P2 has only same-object facts: fall back to them; the test fact P1:5 is alone in its split
    assert a["P2:0"] == ["P2:1"] and a["P2:1"] == ["P2:0"]
    assert a["P1:5"] == []
    # asking for more than the other-object facts: all 3 other-object facts, then one same-object fact
    b = draw_counterexamples(prompts, 4, seed=0)
    assert set(b["P1:0"][:3]) == {"P1:2", "P1:3", "P1:4"} and b["P1:0"][3] == "P1:1"
    # seeds change the draw somewhere; n = 0 disables
    draws = {tuple(draw_counterexamples(prompts, 1, seed=s)["P1:0"]) for s in range(10)}
    assert len(draws) > 1
    assert all(v == [] for v in draw_counterexamples(prompts, 0, seed=0).values())


def test_counterexamples_never_share_the_subject():
    # P1:1 and P1:2 have P1:0's subject (one subject, several objects, e.g. a person's languages): never drawn for it
    facts = [("P1:0", "P1", "French", "train"), ("P1:1", "P1", "German", "train"), ("P1:2", "P1", "Dutch", "train"),
             ("P1:3", "P1", "Greek", "train"), ("P1:4", "P1", "Latin", "train")]
    prompts = _prompts(facts)
    prompts.loc[prompts["fact_id"].isin(["P1:0", "P1:1", "P1:2"]), "subject"] = "Alice"
    for seed in range(20):
        drawn = draw_counterexamples(prompts, 2, seed=seed)
        assert sorted(drawn["P1:0"]) == ["P1:3", "P1:4"]
        assert set(drawn["P1:1"]) <= {"P1:3", "P1:4"} and set(drawn["P1:3"]) <= {"P1:0", "P1:1", "P1:2", "P1:4"}


def test_counter_sets_and_fact_sets_use_same_template_position():
    facts = [("A", "P1", "x", "train"), ("B", "P1", "y", "train")]
    prompts = _prompts(facts, positions=(0, 1))
    coarse = {"A#0": frozenset({1}), "A#1": frozenset({2}), "B#0": frozenset({10}), "B#1": frozenset({11})}
    assert fact_sets_for(prompts, coarse) == {"A": [frozenset({1}), frozenset({2})],
                                              "B": [frozenset({10}), frozenset({11})]}
    sets = counter_sets_for(prompts, {"A": ["B"], "B": []}, coarse)
    assert sets == {"A": [frozenset({10}), frozenset({11})], "B": []}
    del coarse["B#1"]  # a prompt without a coarse set is skipped
    assert counter_sets_for(prompts, {"A": ["B"]}, coarse)["A"] == [frozenset({10})]


def test_top_k_constant_set_by_hand():
    targets = {"A": (np.array([1, 2, 3]), np.array([5, 1, 2], np.float32)),
               "B": (np.array([2, 3, 7]), np.array([1, 3, 2], np.float32)),
               "C": (np.array([4]), np.array([2], np.float32))}
    # sums: 1:5, 2:2, 3:5, 4:2, 7:2
    assert top_k_constant_set(targets, 1) == {1}  # tie 1 vs 3 -> smaller id
    assert top_k_constant_set(targets, 2) == {1, 3}
    assert top_k_constant_set(targets, 4) == {1, 2, 3, 4}  # three-way tie at 2 -> 2 and 4 before 7
    assert top_k_constant_set(targets, 99) == {1, 2, 3, 4, 7}
    assert top_k_constant_set(targets, 0) == frozenset()


# --------------------------------------------------------------------------- training


def _synthetic(n_facts=4, L=2, H=32, core_per_layer=3, noise=3, prompts_per_fact=10, seed=0):
    """Facts with disjoint cores; each prompt's set is the core plus random noise neurons."""
    rng = np.random.default_rng(seed)
    perm = [rng.permutation(H) for _ in range(L)]
    cores, pairs, fact_sets = {}, [], {}
    for f in range(n_facts):
        core = {layer * H + int(i) for layer in range(L) for i in perm[layer][f * core_per_layer:(f + 1) * core_per_layer]}
        cores[f] = frozenset(core)
        for _ in range(prompts_per_fact):
            s = frozenset(core | {int(i) for i in rng.choice(L * H, noise, replace=False)})
            pairs.append((s, f))
            fact_sets.setdefault(f, []).append(s)
    return cores, pairs, build_targets(fact_sets, {})


def _jaccard(a, b):
    return len(a & b) / len(a | b) if a | b else 1.0


def test_training_is_seeded_and_deterministic():
    cores, pairs, targets = _synthetic(n_facts=2, prompts_per_fact=5)
    hp = LandHyperParams(rank=4, epochs=2, batch_size=4, lr=1e-3, seed=11)
    m1, l1 = train_land(pairs, targets, 2, 32, hp)
    m2, l2 = train_land(pairs, targets, 2, 32, hp)
    assert torch.equal(m1.encoder, m2.encoder) and torch.equal(m1.decoder, m2.decoder)
    assert l1 == l2 and len(l1) == 2 * 3  # 10 pairs, batch 4 -> 3 steps per epoch
    m3, l3 = train_land(pairs, targets, 2, 32, LandHyperParams(rank=4, epochs=2, batch_size=4, lr=1e-3, seed=12))
    assert not torch.equal(m1.encoder, m3.encoder) and l1 != l3


def test_the_epoch_hook_sees_every_epoch_and_changes_nothing():
    """on_epoch gets each epoch's model in eval mode; training with it equals training without it, and mean_loss on
    the training pairs at the last epoch is the loss of the trained model (by hand, over the dense targets)."""
    cores, pairs, targets = _synthetic(n_facts=2, prompts_per_fact=5)
    hp = LandHyperParams(rank=4, epochs=3, batch_size=4, lr=1e-2, seed=11)
    seen = []
    m1, l1 = train_land(pairs, targets, 2, 32, hp,
                        on_epoch=lambda e, m: seen.append((e, m.training, mean_loss(m, pairs, targets))))
    m2, l2 = train_land(pairs, targets, 2, 32, hp)
    assert [e for e, *_ in seen] == [1, 2, 3] and not any(training for _, training, _ in seen)
    assert l1 == l2 and torch.equal(m1.encoder, m2.encoder)
    x = torch.zeros(len(pairs), 2 * 32)
    y = torch.zeros(len(pairs), 2 * 32)
    for i, (inputs, key) in enumerate(pairs):
        x[i, sorted(inputs)] = 1.0
        ids, counts = targets[key]
        y[i, torch.as_tensor(np.asarray(ids, np.int64))] = torch.as_tensor(np.asarray(counts, np.float32))
    with torch.no_grad():
        by_hand = float(((m1(x.view(-1, 2, 32)).reshape(len(pairs), -1) - y) ** 2).mean())
    assert seen[-1][2] == pytest.approx(by_hand, rel=1e-5)
    assert math.isnan(mean_loss(m1, [], targets))


def test_training_learns_the_core():
    cores, pairs, targets = _synthetic()
    hp = LandHyperParams(rank=4, epochs=40, batch_size=8, lr=2e-2, seed=0)
    model, losses = train_land(pairs, targets, 2, 32, hp)
    assert len(losses) == 40 * 5
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10])
    inputs = [s for s, _ in pairs]
    predicted = land_sets(model, inputs, threshold=5.0, batch_size=7)
    before = np.mean([_jaccard(s, cores[f]) for s, f in pairs])
    after = np.mean([_jaccard(p, cores[f]) for p, (_, f) in zip(predicted, pairs)])
    assert after > before + 0.1 and after > 0.85, (before, after)


def test_train_land_rejects_bad_input():
    _, pairs, targets = _synthetic(n_facts=1, prompts_per_fact=2)
    hp = LandHyperParams(rank=2, epochs=1)
    with pytest.raises(ValueError, match="no training pairs"):
        train_land([], targets, 2, 32, hp)
    with pytest.raises(KeyError, match="without a target"):
        train_land([(frozenset({1}), "nope")], targets, 2, 32, hp)
    with pytest.raises(ValueError, match="outside"):
        train_land([(frozenset({64}), 0)], targets, 2, 32, hp)


# --------------------------------------------------------------------------- persistence


def test_save_load_round_trip(tmp_path):
    hp = LandHyperParams(rank=3, seed=5)
    model = LandDetector(2, 8, 3, generator=torch.Generator().manual_seed(5))
    folder = save_land(model, tmp_path / "land", hp, {"model": "tiny", "n_pairs": 40})
    assert sorted(p.name for p in folder.iterdir()) == ["land.json", "land.safetensors"]  # no temp files left
    config = json.loads((folder / "land.json").read_text())
    assert (config["n_layers"], config["n_neurons"], config["rank"]) == (2, 8, 3)
    loaded, hp2, meta = load_land(folder, 2, 8)
    assert torch.equal(loaded.encoder, model.encoder) and torch.equal(loaded.decoder, model.decoder)
    assert hp2 == hp and meta == {"model": "tiny", "n_pairs": 40}
    sets = [frozenset({0, 9}), frozenset()]
    assert land_sets(loaded, sets, 0.0) == land_sets(model, sets, 0.0)


def test_load_shape_mismatch_and_missing(tmp_path):
    save_land(LandDetector(2, 8, 3), tmp_path / "land", LandHyperParams(rank=3), {})
    with pytest.raises(ValueError) as info:
        load_land(tmp_path / "land", 12, 3072)
    message = str(info.value)
    assert "land.json" in message and "(2, 8)" in message and "(12, 3072)" in message
    with pytest.raises(FileNotFoundError, match="chapter 04"):
        load_land(tmp_path / "nowhere", 2, 8)
