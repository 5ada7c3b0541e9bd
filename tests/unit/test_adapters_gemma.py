"""Gemma 3 (kn.core.adapters.gemma3.Gemma3Adapter): the adapter against the model, the fast kernel against the reference on tiny
random configurations and on the real Gemma 3 270M (slow), and neuron scaling / editing on down_proj's input.

test_attribution.py runs every rule and neuron definition on its tiny Gemma 3 too (fast vs reference, the last-token
pass); this file adds what is Gemma's own."""

from __future__ import annotations

import pytest
import torch
from kn.attribution.common import NEURON_DEFINITIONS
from kn.attribution.kernel import integrated_gradients
from kn.attribution.quadrature import RULES
from kn.attribution.reference import reference_integrated_gradients
from kn.core.adapters import adapter_for
from kn.core.adapters.gemma3 import Gemma3Adapter
from kn.core.models import LoadedModel, tiny_model
from kn.core.scoring import pad_right
from tiny_models import PROMPTS, _argmax_targets, _one_thread, _rel, _tiny  # noqa: F401 (_one_thread: fixture)

# longer than the tiny model's sliding window (4), of different lengths, with a 1-token prompt
LONG_PROMPTS = [torch.tensor([5, 17, 9, 33, 2, 71, 8, 64, 90, 3, 12, 55]), torch.tensor([11]),
                torch.tensor([40, 3, 99, 7, 21, 6, 18])]


def _gemma(seed: int = 0, **overrides) -> LoadedModel:
    """A tiny random Gemma 3 with config overrides (the same layout as tiny_model's), FFNs strengthened like _tiny."""
    from transformers import Gemma3ForCausalLM

    base = tiny_model("gemma3", seed=seed, n_layers=3)
    cfg = base.model.config.to_dict()
    cfg.update(overrides)
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(type(base.model.config).from_dict(cfg)).eval()
    model.load_state_dict(base.model.state_dict())
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(k in name for k in ("gate_proj", "up_proj")):
                param.mul_(10.0)
    return LoadedModel(model, None, adapter_for(model), "tiny-gemma3-custom", "tiny-gemma3-custom")


def test_tiny_gemma_config_and_adapter():
    loaded = tiny_model("gemma3", seed=1, n_layers=3, n_neurons=24)
    cfg, adapter = loaded.model.config, loaded.adapter
    assert cfg.model_type == "gemma3_text" and isinstance(adapter, Gemma3Adapter) and adapter.family == "gemma3"
    assert set(cfg.layer_types) == {"sliding_attention", "full_attention"}
    assert cfg.num_key_value_heads < cfg.num_attention_heads  # grouped-query attention
    assert cfg.head_dim * cfg.num_attention_heads != cfg.hidden_size  # Gemma's head_dim is its own
    assert cfg.query_pre_attn_scalar != cfg.head_dim
    assert loaded.model.get_output_embeddings().weight.data_ptr() == adapter.input_embeddings().data_ptr()
    assert float(loaded.model.model.layers[0].post_feedforward_layernorm.weight.detach().abs().max()) > 0  # not 1 + 0
    assert not adapter.ffn_out_affine and adapter.logit_softcapping is None and adapter.supports_last_token
    # the neurons are down_proj's input; ffn_out ends in the post-FFN norm
    mlp = loaded.model.model.layers[2].mlp
    assert adapter.ffn_out_proj(2) is mlp.down_proj and adapter.pre_activation_module(2) is mlp.gate_proj
    a = torch.randn(5, 24)
    torch.testing.assert_close(adapter.ffn_out(2, a),
                               loaded.model.model.layers[2].post_feedforward_layernorm(mlp.down_proj(a)))
    x = torch.randn(5, 16)
    torch.testing.assert_close(adapter.ffn_in(2, x), mlp.act_fn(mlp.gate_proj(adapter.ffn_norm(2, x)))
                               * mlp.up_proj(adapter.ffn_norm(2, x)))


@pytest.mark.parametrize("window", [4, 64])
def test_last_token_pass_beyond_the_sliding_window(window):
    """Prompts longer than the window (12 and 7 tokens, window 4) batched with short ones: the rows reproduce the
    model's logits, mids and neurons; with a window wider than every prompt the sliding layers add no mask."""
    loaded = _gemma(seed=3, sliding_window=window)
    adapter = loaded.adapter
    with torch.no_grad():
        state = adapter.last_token_state(LONG_PROMPTS)
        masks = state.extra.masks
        assert all(m is None for m in masks) if window == 64 else masks[0] is not None and masks[1] is None
        x = state.embedding[:, None, :]
        for layer in range(adapter.n_layers):
            x = adapter.attention_last(layer, x, state)
            torch.testing.assert_close(x[:, 0], state.mids[layer], rtol=1e-5, atol=1e-5)
            a = adapter.ffn_in(layer, x)
            torch.testing.assert_close(a[:, 0], state.acts[layer], rtol=1e-5, atol=1e-5)
            x = x + adapter.ffn_out(layer, a)
        ours = adapter.final_logits(x)[:, 0]
        theirs = torch.stack([loaded.model(input_ids=ids[None]).logits[0, -1] for ids in LONG_PROMPTS])
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("overrides", [{}, {"final_logit_softcapping": 2.0}, {"attn_logit_softcapping": 0.5},
                                       {"rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 2.0,
                                                                               "rope_theta": 1e6},
                                                            "sliding_attention": {"rope_type": "default",
                                                                                  "rope_theta": 1e4}}}],
                         ids=["plain", "final-softcap", "attn-softcap", "linear-rope"])
@pytest.mark.parametrize("rule", RULES)
def test_fast_matches_reference_gemma_configs(overrides, rule):
    """Both neuron definitions on prompts beyond the window of different lengths in one batch, for config variants:
    final logit softcapping (the LM head leaves the hand-written softmax for autograd), attention logit softcapping
    (which transformers' Gemma 3 does not apply, and neither do we: the reference is the model), a scaled rope on the
    global layers."""
    loaded = _gemma(seed=4, **overrides)
    targets = _argmax_targets(loaded, LONG_PROMPTS)
    if "final_logit_softcapping" in overrides:
        assert loaded.adapter.logit_softcapping == 2.0
    for neuron in NEURON_DEFINITIONS:
        ref = reference_integrated_gradients(loaded, LONG_PROMPTS, targets, steps=5, rule=rule, neuron=neuron)
        fast = integrated_gradients(loaded, LONG_PROMPTS, targets, steps=5, rule=rule, neuron=neuron, batch_prompts=3)
        assert float(ref.scores.abs().max()) > 1e-3
        assert _rel(fast.scores, ref.scores) <= 1e-4
        torch.testing.assert_close(fast.p_full, ref.p_full, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(fast.p_zero, ref.p_zero, rtol=1e-5, atol=1e-7)


def test_bidirectional_gemma_falls_back_to_the_reference():
    """A bidirectional config is not causal: the last-token rows would be wrong, so the kernel uses the reference."""
    loaded = _gemma(seed=5, use_bidirectional_attention=True)
    assert not loaded.adapter.supports_last_token
    got = integrated_gradients(loaded, PROMPTS[:2], [3, 4], steps=3)
    ref = reference_integrated_gradients(loaded, PROMPTS[:2], [3, 4], steps=3)
    torch.testing.assert_close(got.scores, ref.scores, rtol=0, atol=0)


# --- interventions and editing act on down_proj's input ----------------------------------------------------------


def _logits(loaded, prompts):
    ids, mask, last = pad_right(prompts, range(len(prompts)))
    with torch.no_grad():
        return loaded.model(input_ids=ids, attention_mask=mask).logits, last


def test_scale_neurons_acts_on_down_proj_input():
    from kn.methods.interventions import scale_neurons

    loaded = _tiny("gemma3", seed=6)
    H = loaded.adapter.n_neurons
    base, last = _logits(loaded, LONG_PROMPTS)
    neuron_sets = [frozenset({3, H + 5}), frozenset({2 * H + 1}), frozenset()]
    with scale_neurons(loaded, neuron_sets, 1.0, last):
        same, _ = _logits(loaded, LONG_PROMPTS)
    assert torch.equal(base, same)
    # factor 0 == zeroing those inputs of down_proj at each row's last position, by a hook of our own
    mlps = [loaded.model.model.layers[l].mlp for l in range(3)]
    handles = []
    for layer, mlp in enumerate(mlps):
        def zero(module, args, layer=layer):
            x = args[0].clone()
            for row, neurons in enumerate(neuron_sets):
                for flat in neurons:
                    if flat // H == layer:
                        x[row, last[row], flat % H] = 0.0
            return (x,)
        handles.append(mlp.down_proj.register_forward_pre_hook(zero))
    try:
        expected, _ = _logits(loaded, LONG_PROMPTS)
    finally:
        for h in handles:
            h.remove()
    with scale_neurons(loaded, neuron_sets, 0.0, last):
        zeroed, _ = _logits(loaded, LONG_PROMPTS)
    assert torch.equal(zeroed, expected)
    assert not torch.equal(zeroed, base)
    assert torch.equal(zeroed[2], base[2])  # the row without neurons is untouched


def test_value_vectors_are_down_proj_columns():
    from kn.methods.editing import erase_neurons

    loaded = _tiny("gemma3", seed=6)
    adapter = loaded.adapter
    down = loaded.model.model.layers[1].mlp.down_proj
    assert adapter.value_vectors(1).shape == (32, 16)
    assert adapter.value_vector(1, 7).data_ptr() == down.weight[:, 7].data_ptr()
    e = torch.zeros(1, 32)
    e[0, 7] = 1.0
    torch.testing.assert_close(down(e)[0], adapter.value_vector(1, 7))
    before = down.weight.clone()
    with erase_neurons(loaded, [32 + 7]):
        assert float(down.weight[:, 7].detach().abs().max()) == 0.0 and torch.equal(down.weight[:, 8], before[:, 8])
    assert torch.equal(down.weight, before)


# --- the real Gemma 3 270M -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gemma():
    from kn.base.errors import UnknownModel
    from kn.core.models import load_model

    try:
        return load_model("gemma3-270m")
    except UnknownModel as err:  # the optional package is not installed
        pytest.skip(str(err))


@pytest.mark.slow
def test_gemma_270m_loads(gemma):
    adapter = gemma.adapter
    assert isinstance(adapter, Gemma3Adapter)
    assert (adapter.n_layers, adapter.n_neurons, adapter.d_model) == (18, 2048, 640)
    assert gemma.model.config.sliding_window == 512 and gemma.model.config.final_logit_softcapping is None
    tok = gemma.tokenizer
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        probs = gemma.model(ids).logits[0, -1].softmax(-1)
    paris = tok(" Paris", add_special_tokens=False).input_ids[0]
    assert paris in probs.topk(5).indices.tolist() and 0.05 < float(probs[paris]) < 0.2
    assert gemma.model.get_output_embeddings().weight.data_ptr() == adapter.input_embeddings().data_ptr()
    assert not any(p.requires_grad for p in gemma.model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("rule,neuron", [("right", "ffn_out_input"), ("gauss_legendre", "pre_activation")])
def test_fast_matches_reference_gemma_270m(gemma, rule, neuron):
    """Three short prompts on three layers (a local one, the first global one, the last global one); prints the
    largest |fast - ref| / largest |ref| (measured on the 2-core CPU: 1.1e-5 right / papers' neurons, 6.3e-6
    Gauss-Legendre / pre-activation)."""
    tok = gemma.tokenizer
    texts = [("The capital of France is", " Paris"), ("Berlin is the capital of", " Germany"),
             ("Water is made of hydrogen and", " oxygen")]
    prompts = [torch.tensor(tok(t).input_ids) for t, _ in texts]
    targets = [tok(c, add_special_tokens=False).input_ids[0] for _, c in texts]
    layers = [0, 5, 17]
    fast = integrated_gradients(gemma, prompts, targets, rule=rule, neuron=neuron, layers=layers)
    ref = reference_integrated_gradients(gemma, prompts, targets, rule=rule, neuron=neuron, layers=layers)
    rel = _rel(fast.scores, ref.scores)
    print(f"gemma3-270m {rule} {neuron}: max |fast - ref| / max |ref| = {rel:.2e}")
    assert rel <= 1e-4
    torch.testing.assert_close(fast.p_full, ref.p_full, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast.p_zero, ref.p_zero, rtol=1e-4, atol=1e-6)
