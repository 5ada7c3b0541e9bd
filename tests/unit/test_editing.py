import math

import numpy as np
import pytest
import torch
from kn.core.models import tiny_model
from kn.methods.editing import (
    erase_neurons,
    most_common_neurons,
    perplexity,
    token_nlls,
    top1_success,
    update_fact,
    weights_checksum,
)

FAMILIES = ("gpt2", "llama")


@pytest.fixture(scope="module", params=FAMILIES)
def loaded(request):
    return tiny_model(request.param, seed=5)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(model, state):
    now = model.state_dict()
    return now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)


def _logits(loaded, ids):
    with torch.no_grad():
        return loaded.model(ids[None]).logits[0, -1]


def test_update_and_undo_cycles_restore_weights(loaded):
    ad = loaded.adapter
    total = ad.n_layers * ad.n_neurons
    vocab = ad.input_embeddings().shape[0]
    checksum, state = weights_checksum(loaded.model), _state(loaded.model)
    rng = np.random.default_rng(0)
    for cycle in range(100):
        neurons = frozenset(rng.choice(total, size=rng.integers(1, 12), replace=False).tolist())
        old, new = (int(t) for t in rng.integers(0, vocab, size=2))
        with update_fact(loaded, neurons, old, new, lambda1=float(rng.uniform(0.5, 5)),
                         lambda2=float(rng.uniform(0.5, 5)), scaled=bool(cycle % 2)):
            assert weights_checksum(loaded.model) != checksum
        if cycle % 10 == 0:
            with erase_neurons(loaded, neurons):
                pass
    assert weights_checksum(loaded.model) == checksum
    assert _same_state(loaded.model, state)


def test_update_formula_and_scaled_variant(loaded):
    ad = loaded.adapter
    H = ad.n_neurons
    layer, i = ad.n_layers - 1, 3
    old, new = 11, 40
    v = ad.value_vector(layer, i).detach().clone()
    e_old, e_new = ad.embedding_row(old).detach().clone(), ad.embedding_row(new).detach().clone()
    other = ad.value_vector(0, 0).detach().clone()
    with update_fact(loaded, frozenset({layer * H + i}), old, new, lambda1=2.0, lambda2=3.0) as used:
        assert used == {layer * H + i: (2.0, 3.0)}
        torch.testing.assert_close(ad.value_vector(layer, i), v - 2.0 * e_old + 3.0 * e_new)
        assert torch.equal(ad.value_vector(0, 0), other)
    with update_fact(loaded, frozenset({layer * H + i}), old, new, lambda1=2.0, lambda2=3.0, scaled=True) as used:
        l1 = 2.0 * v.norm().item() / e_old.norm().item()
        l2 = 3.0 * v.norm().item() / e_new.norm().item()
        assert used[layer * H + i] == pytest.approx((l1, l2), rel=1e-6)
        expected = v - l1 * e_old + l2 * e_new
        torch.testing.assert_close(ad.value_vector(layer, i), expected)
        # the removed and added parts each have the value vector's norm times lambda
        torch.testing.assert_close((expected - v).norm(), (3.0 * e_new / e_new.norm() * v.norm()
                                                           - 2.0 * e_old / e_old.norm() * v.norm()).norm())
    assert torch.equal(ad.value_vector(layer, i), v)


def test_hand_built_edit_moves_top1(loaded):
    ad = loaded.adapter
    L, H = ad.n_layers, ad.n_neurons
    ids = torch.tensor([5, 17, 42, 9])
    captured = {}
    h = ad.ffn_out_proj(L - 1).register_forward_pre_hook(
        lambda m, a: captured.__setitem__("x", a[0][0, -1].detach().clone()))
    try:
        base = _logits(loaded, ids)
    finally:
        h.remove()
    act = captured["x"]
    top = act.topk(4).indices
    assert (act[top] > 0).all()
    old = int(base.argmax())
    # design: a token whose direction e(new) - e(old), alone in the residual stream, reads out as top-1
    E = ad.input_embeddings().detach()
    with torch.no_grad():
        new = next(t for t in range(E.shape[0])
                   if t != old and int(ad.final_logits((E[t] - E[old])[None])[0].argmax()) == t)
    # big enough that the added sum(act) * lambda * (e(new) - e(old)), of norm 200, dominates the residual stream
    lam = float(200 / (act[top].sum() * (E[new] - E[old]).norm()))
    neurons = frozenset(((L - 1) * H + top).tolist())
    assert top1_success(loaded, [ids], [old]).tolist() == [True]
    with update_fact(loaded, neurons, old, new, lambda1=lam, lambda2=lam):
        assert int(_logits(loaded, ids).argmax()) == new
        assert top1_success(loaded, [ids], [new]).tolist() == [True]
    assert torch.equal(_logits(loaded, ids), base)
    assert top1_success(loaded, [ids], [old]).tolist() == [True]


def test_erase_zeroes_exactly_the_chosen_vectors(loaded):
    ad = loaded.adapter
    H = ad.n_neurons
    state = _state(loaded.model)
    chosen = {(0, 2), (0, 9), (ad.n_layers - 1, 4)}
    before = [ad.value_vectors(l).detach().clone() for l in range(ad.n_layers)]
    with erase_neurons(loaded, frozenset(l * H + i for l, i in chosen)):
        for l in range(ad.n_layers):
            vv = ad.value_vectors(l)
            for i in range(H):
                if (l, i) in chosen:
                    assert torch.count_nonzero(vv[i]) == 0
                else:
                    assert torch.equal(vv[i], before[l][i])
    assert _same_state(loaded.model, state)


@pytest.mark.parametrize("which", ["update", "update_scaled", "erase"])
def test_weights_restored_after_exception(loaded, which):
    H = loaded.adapter.n_neurons
    neurons = frozenset({1, 7, H + 3})
    checksum, state = weights_checksum(loaded.model), _state(loaded.model)
    ctx = {"update": lambda: update_fact(loaded, neurons, 3, 4, lambda1=5, lambda2=5),
           "update_scaled": lambda: update_fact(loaded, neurons, 3, 4, scaled=True),
           "erase": lambda: erase_neurons(loaded, neurons)}[which]
    with pytest.raises(KeyError):
        with ctx():
            assert weights_checksum(loaded.model) != checksum
            raise KeyError("inside")
    assert weights_checksum(loaded.model) == checksum
    assert _same_state(loaded.model, state)


def test_storage_guard_and_bad_ids(loaded, monkeypatch):
    ad = loaded.adapter
    checksum = weights_checksum(loaded.model)
    with pytest.raises(IndexError):
        with update_fact(loaded, frozenset({ad.n_layers * ad.n_neurons}), 1, 2):
            pass
    with pytest.raises(IndexError):
        with update_fact(loaded, frozenset({0}), 1, 10 ** 6):
            pass
    monkeypatch.setattr(ad, "embedding_row", lambda t: ad.value_vectors(0)[t])
    with pytest.raises(ValueError, match="share storage"):
        with update_fact(loaded, frozenset({0}), 1, 2):
            pass
    assert weights_checksum(loaded.model) == checksum


def test_most_common_neurons():
    sets = [frozenset({1, 2, 3}), frozenset({2, 3, 9}), frozenset({3, 9, 4}), frozenset({5})]
    assert most_common_neurons(sets, 1) == {3}
    assert most_common_neurons(sets, 2) == {2, 3}  # 2 and 9 tie (2 sets each): smaller id wins
    assert most_common_neurons(sets, 4) == {1, 2, 3, 9}  # 1, 4, 5 tie once: 1 wins
    assert most_common_neurons(sets, 100) == {1, 2, 3, 4, 5, 9}
    assert most_common_neurons(sets, 0) == frozenset()


def test_top1_success_hand_picked(loaded):
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 128, (n,), generator=gen) for n in (3, 1, 6, 4)]
    top1 = [int(_logits(loaded, p).argmax()) for p in prompts]
    targets = [top1[0], (top1[1] + 1) % 128, top1[2], (top1[3] + 5) % 128]
    assert top1_success(loaded, prompts, targets, batch_size=3).tolist() == [True, False, True, False]


def test_perplexity_matches_unpadded_computation(loaded):
    gen = torch.Generator().manual_seed(2)
    texts = [torch.randint(0, 128, (n,), generator=gen) for n in (5, 2, 8, 1, 3)]
    nlls = []
    for t in texts:
        with torch.no_grad():
            logp = loaded.model(t[None]).logits[0].double().log_softmax(-1)
        nlls += [-logp[k, t[k + 1]].item() for k in range(len(t) - 1)]
    assert len(nlls) == 4 + 1 + 7 + 0 + 2
    expected = math.exp(sum(nlls) / len(nlls))
    assert perplexity(loaded, texts, batch_size=2) == pytest.approx(expected, rel=1e-5)
    per_text = token_nlls(loaded, texts, batch_size=3)
    assert [len(x) for x in per_text] == [4, 1, 7, 0, 2]
    np.testing.assert_allclose(np.concatenate(per_text), nlls, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        perplexity(loaded, [torch.tensor([3])])


def test_weights_checksum_sees_one_bit():
    loaded = tiny_model("gpt2", seed=0)
    c = weights_checksum(loaded.model)
    assert c == weights_checksum(tiny_model("gpt2", seed=0).model)
    w = loaded.adapter.value_vectors(1)
    with torch.no_grad():
        old = w[0, 0].item()
        w[0, 0] = torch.nextafter(w[0, 0], torch.tensor(math.inf))
        assert weights_checksum(loaded.model) != c
        w[0, 0] = old
    assert weights_checksum(loaded.model) == c
