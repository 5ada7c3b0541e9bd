import numpy as np
import pytest
import torch
from kn.core.models import tiny_model
from kn.core.scoring import next_token_scores, pad_right
from kn.methods.interventions import answer_probabilities, change_rate, scale_neurons

FAMILIES = ("gpt2", "llama")


@pytest.fixture(scope="module", params=FAMILIES)
def loaded(request):
    return tiny_model(request.param, seed=3)


def _prompts(lengths=(3, 6, 1, 5), seed=0, vocab=128):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=gen) for n in lengths]


def _forward(loaded, prompts):
    ids, mask, last = pad_right(prompts, range(len(prompts)))
    with torch.no_grad():
        return loaded.model(input_ids=ids, attention_mask=mask).logits, last


def _no_hooks(loaded):
    ad = loaded.adapter
    return all(len(ad.ffn_out_proj(l)._forward_pre_hooks) == 0 for l in range(ad.n_layers))


def test_factor_one_is_bitwise_identity(loaded):
    prompts = _prompts()
    base, last = _forward(loaded, prompts)
    H = loaded.adapter.n_neurons
    sets = [frozenset({0, 5, H + 3}), frozenset(), frozenset(range(2 * H)), frozenset({H + 1})]
    with scale_neurons(loaded, sets, 1.0, last):
        same, _ = _forward(loaded, prompts)
    assert torch.equal(base, same)
    with scale_neurons(loaded, frozenset({1, H + 2}), 1, last):
        same, _ = _forward(loaded, prompts)
    assert torch.equal(base, same)
    assert _no_hooks(loaded)


def test_rows_without_neurons_are_bitwise_unchanged(loaded):
    # hooks are registered (factor 3 for row 0), other rows are multiplied by exactly 1.0
    prompts = _prompts()
    base, last = _forward(loaded, prompts)
    H = loaded.adapter.n_neurons
    sets = [frozenset({2, H + 7})] + [frozenset()] * 3
    with scale_neurons(loaded, sets, 3.0, last):
        out, _ = _forward(loaded, prompts)
    assert torch.equal(base[1:], out[1:])
    assert not torch.equal(base[0, last[0]], out[0, last[0]])


def test_hooks_removed_after_exception(loaded):
    prompts = _prompts()
    base, last = _forward(loaded, prompts)
    H = loaded.adapter.n_neurons
    with pytest.raises(RuntimeError, match="boom"):
        with scale_neurons(loaded, frozenset({1, 4, H + 9}), 0.0, last):
            assert not _no_hooks(loaded)
            _forward(loaded, prompts)
            raise RuntimeError("boom")
    assert _no_hooks(loaded)
    after, _ = _forward(loaded, prompts)
    assert torch.equal(base, after)


def test_only_last_real_position_is_scaled(loaded):
    ad = loaded.adapter
    H = ad.n_neurons
    prompts = _prompts()
    base, last = _forward(loaded, prompts)
    factor = 2.5
    sets = [frozenset({0, 3, H + 4}), frozenset({H + 1, H + 2}), frozenset({7}), frozenset({5, H + 5})]

    # 1) the FFN input of layer 0 as the next pre-hook sees it: scaled exactly at [row, last, selected neurons]
    captured = {}

    def capture(module, args):
        captured["x"] = args[0].detach().clone()

    h = ad.ffn_out_proj(0).register_forward_pre_hook(capture)
    try:
        _forward(loaded, prompts)
        plain = captured["x"]
        with scale_neurons(loaded, sets, factor, last):
            h.remove()
            h = ad.ffn_out_proj(0).register_forward_pre_hook(capture)  # after the scaling hook
            out, _ = _forward(loaded, prompts)
        scaled = captured["x"]
    finally:
        h.remove()
    expected = plain.clone()
    for r, s in enumerate(sets):
        for flat in s:
            layer, i = divmod(flat, H)
            if layer == 0:
                expected[r, last[r], i] *= factor
    assert torch.equal(scaled, expected)

    # 2) logits equal a hand-written hook doing the same with Python loops
    def manual(layer):
        def hook(module, args):
            x = args[0].clone()
            for r, s in enumerate(sets):
                for flat in s:
                    l, i = divmod(flat, H)
                    if l == layer:
                        x[r, last[r], i] = x[r, last[r], i] * factor
            return (x,)
        return hook

    handles = [ad.ffn_out_proj(l).register_forward_pre_hook(manual(l)) for l in range(ad.n_layers)]
    try:
        ref, _ = _forward(loaded, prompts)
    finally:
        for h in handles:
            h.remove()
    assert torch.allclose(out, ref, atol=1e-6, rtol=1e-5)
    # positions before each row's last real token cannot see the change (causal attention)
    for r in range(len(prompts)):
        assert torch.equal(out[r, : last[r]], base[r, : last[r]])
        assert not torch.equal(out[r, last[r]], base[r, last[r]])


def test_factor_zero_on_a_whole_layer_equals_zeroed_input(loaded):
    ad = loaded.adapter
    H = ad.n_neurons
    prompts = _prompts()
    _, last = _forward(loaded, prompts)
    layer = ad.n_layers - 1
    with scale_neurons(loaded, frozenset(range(layer * H, (layer + 1) * H)), 0.0, last):
        out, _ = _forward(loaded, prompts)

    def zero(module, args):
        x = args[0].clone()
        x[torch.arange(len(prompts)), last] = 0.0
        return (x,)

    h = ad.ffn_out_proj(layer).register_forward_pre_hook(zero)
    try:
        ref, _ = _forward(loaded, prompts)
    finally:
        h.remove()
    assert torch.equal(out, ref)


def test_bad_inputs(loaded):
    H, L = loaded.adapter.n_neurons, loaded.adapter.n_layers
    with pytest.raises(ValueError):
        with scale_neurons(loaded, [frozenset({1})], 2.0, torch.tensor([0, 1])):
            pass
    with pytest.raises(IndexError):
        with scale_neurons(loaded, frozenset({L * H}), 2.0, torch.tensor([0])):
            pass
    prompts = _prompts()
    with pytest.raises(ValueError):  # batch of 4 run under a context built for 2 rows
        with scale_neurons(loaded, frozenset({1}), 2.0, torch.tensor([0, 1])):
            _forward(loaded, prompts)
    assert _no_hooks(loaded)


def test_answer_probabilities(loaded):
    ad = loaded.adapter
    H = ad.n_neurons
    prompts = _prompts(lengths=(4, 1, 7, 3, 5))
    targets = [3, 9, 27, 81, 100]
    sets = [frozenset({i, H + 2 * i}) for i in range(len(prompts))]
    before, after = answer_probabilities(loaded, prompts, targets, sets, 0.0, batch_size=2)
    assert before.dtype == np.float64 and after.dtype == np.float64
    ref = next_token_scores(loaded, prompts, targets)["p_target"].to_numpy()
    np.testing.assert_allclose(before, ref, rtol=1e-5, atol=1e-7)
    for k, (ids, t, s) in enumerate(zip(prompts, targets, sets)):  # unbatched, one prompt at a time
        with scale_neurons(loaded, s, 0.0, torch.tensor([len(ids) - 1])):
            with torch.no_grad():
                p = loaded.model(ids[None]).logits[0, -1].double().softmax(-1)[t].item()
        assert after[k] == pytest.approx(p, rel=1e-5, abs=1e-7)
    assert not np.allclose(before, after)
    b1, a1 = answer_probabilities(loaded, prompts, targets, sets, 1.0, batch_size=3)
    assert np.array_equal(b1, a1)


def test_change_rate():
    np.testing.assert_allclose(change_rate([0.5, 0.2], [1.0, 0.1]), [1.0, -0.5])
    r = change_rate([0.0, 0.0, 0.25], [0.1, 0.0, 0.25])
    assert np.isnan(r[0]) and np.isnan(r[1]) and r[2] == 0.0
