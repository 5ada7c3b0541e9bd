"""kn.attribution: the fast integrated-gradients kernel against the reference (the definition), for every rule and
neuron definition, and IG's identities (quadrature rules, completeness).

The integrand sampler is tested in test_attribution_integrand.py, Gemma 3 in test_adapters_gemma.py (both reuse this
file's tiny models and prompts)."""

from __future__ import annotations

import pytest
import torch
from kn.attribution.common import NEURON_DEFINITIONS, IGResult
from kn.attribution.kernel import integrated_gradients
from kn.attribution.quadrature import RULES, alphas, quadrature
from kn.attribution.reference import reference_integrated_gradients
from kn.core.models import LoadedModel
from tiny_models import PROMPTS, TARGETS, _argmax_targets, _one_thread, _rel, _tiny  # noqa: F401 (_one_thread: fixture)


def _grad_at(loaded: LoadedModel, ids: torch.Tensor, target: int, layer: int, scale: float) -> torch.Tensor:
    """dP/dw at w = scale * w_bar for one layer, by plain autograd on the whole model (independent of kn.attribution)."""
    proj = loaded.adapter.ffn_out_proj(layer)
    box = {}

    def put(module, args):
        x = args[0]
        leaf = (scale * x[:, -1].detach()).requires_grad_(True)
        box["leaf"], box["w_bar"] = leaf, x[0, -1].detach()
        return (torch.cat([x[:, :-1], leaf[:, None]], dim=1),)

    handle = proj.register_forward_pre_hook(put)
    try:
        logits = loaded.model(input_ids=ids[None]).logits[0, -1]
        p = torch.softmax(logits, -1)[target]
        (g,) = torch.autograd.grad(p, box["leaf"])
    finally:
        handle.remove()
    return box["w_bar"], g[0]


# --- adapters' last-token primitives -------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_last_token_pass_reproduces_model(family):
    """The adapters' last-token primitives, on prompts of different lengths batched together (padded prefixes),
    reproduce the model's own logits and its natural residual stream / neurons (Gemma 3: the 6-token prompt's last
    position sees only the last 4 positions on its sliding-window layers)."""
    loaded = _tiny(family, seed=3)
    adapter = loaded.adapter
    with torch.no_grad():
        state = adapter.last_token_state(PROMPTS)
        x = state.embedding[:, None, :]  # [P, 1, d]
        for layer in range(adapter.n_layers):
            x = adapter.attention_last(layer, x, state)
            torch.testing.assert_close(x[:, 0], state.mids[layer], rtol=1e-5, atol=1e-5)
            a = adapter.ffn_in(layer, x)
            torch.testing.assert_close(a[:, 0], state.acts[layer], rtol=1e-5, atol=1e-5)
            x = x + adapter.ffn_out(layer, a)
        ours = adapter.final_logits(x)[:, 0]
        theirs = torch.stack([loaded.model(input_ids=ids[None]).logits[0, -1] for ids in PROMPTS])
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


# --- fast == reference ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("neuron", NEURON_DEFINITIONS)
def test_fast_matches_reference_tiny(family, rule, neuron):
    """Every rule and neuron definition, prompts of different lengths in one batch (Gemma's 6-token prompt is longer
    than its sliding window of 4). The papers' neurons of GPT-2 and Llama take the affine shortcut, the rest the
    per-row leaves."""
    loaded = _tiny(family, seed=1)
    targets = _argmax_targets(loaded, PROMPTS)
    ref = reference_integrated_gradients(loaded, PROMPTS, targets, steps=6, rule=rule, neuron=neuron)
    fast = integrated_gradients(loaded, PROMPTS, targets, steps=6, rule=rule, neuron=neuron)
    assert isinstance(fast, IGResult)
    assert fast.scores.shape == (3, 3, 32) and fast.scores.dtype == torch.float32
    assert fast.p_full.shape == fast.p_zero.shape == (3, 3)
    assert fast.layers == ref.layers == [0, 1, 2] and fast.steps == 6 and fast.rule == rule
    assert fast.neuron == ref.neuron == neuron
    assert not fast.scores.requires_grad
    assert float(ref.scores.abs().max()) > 1e-3  # the scores are not trivially zero
    assert _rel(fast.scores, ref.scores) <= 1e-4
    torch.testing.assert_close(fast.p_full, ref.p_full, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fast.p_zero, ref.p_zero, rtol=1e-5, atol=1e-7)
    assert torch.equal(fast.target_ids, torch.tensor(targets))
    # other targets too (small probabilities)
    ref = reference_integrated_gradients(loaded, PROMPTS, TARGETS, steps=6, rule=rule, neuron=neuron)
    fast = integrated_gradients(loaded, PROMPTS, TARGETS, steps=6, rule=rule, neuron=neuron)
    assert _rel(fast.scores, ref.scores) <= 1e-4


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_neuron_definitions_differ_but_share_the_end_points(family):
    """The two definitions attribute different quantities, but P(0) is the same in GPT-2 (gelu(0) = 0) and Llama
    (act(0) * up = 0: SiLU), and P(q_bar) is the natural probability under both."""
    loaded = _tiny(family, seed=2)
    a = integrated_gradients(loaded, PROMPTS, TARGETS, steps=4, neuron="ffn_out_input")
    b = integrated_gradients(loaded, PROMPTS, TARGETS, steps=4, neuron="pre_activation")
    assert _rel(a.scores, b.scores) > 0.01
    torch.testing.assert_close(a.p_full, b.p_full, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(a.p_zero, b.p_zero, rtol=1e-5, atol=1e-7)


def test_fast_matches_reference_gpt2_layer_scaled_attention():
    """GPT-2's optional 1/(layer + 1) attention scaling goes through the adapter too."""
    from kn.core.adapters import adapter_for
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(5)
    cfg = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2, n_inner=24,
                     scale_attn_by_inverse_layer_idx=True, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(10.0)
    loaded = LoadedModel(model, None, adapter_for(model), "gpt2-scaled", "gpt2-scaled")
    prompts, targets = [torch.tensor([1, 2, 3, 4]), torch.tensor([9])], [5, 6]
    ref = reference_integrated_gradients(loaded, prompts, targets, steps=4)
    fast = integrated_gradients(loaded, prompts, targets, steps=4)
    assert _rel(fast.scores, ref.scores) <= 1e-4


def test_fast_matches_reference_llama_scaled_rope():
    """A rope type with attention_scaling != 1 (yarn): the adapter folds the rotary embedding into the prefix cache."""
    from kn.core.adapters import adapter_for
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64,
                      rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
                                       "original_max_position_embeddings": 16})
    model = LlamaForCausalLM(cfg).eval()
    assert abs(model.model.rotary_emb.attention_scaling - 1.0) > 0.05
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(10.0)
    loaded = LoadedModel(model, None, adapter_for(model), "llama-yarn", "llama-yarn")
    prompts, targets = [torch.tensor([1, 2, 3, 4, 5, 6, 7]), torch.tensor([3]), torch.tensor([9, 8, 7])], [5, 6, 7]
    ref = reference_integrated_gradients(loaded, prompts, targets, steps=4)
    fast = integrated_gradients(loaded, prompts, targets, steps=4, batch_prompts=3)
    assert _rel(fast.scores, ref.scores) <= 1e-4


def test_batching_layers_subset_and_input_forms():
    loaded = _tiny("llama", seed=2)
    full = integrated_gradients(loaded, PROMPTS, TARGETS, steps=5)
    # prompts of different lengths in one padded batch, or one at a time: the same
    for batch_prompts in (1, 3):
        other = integrated_gradients(loaded, PROMPTS, TARGETS, steps=5, batch_prompts=batch_prompts)
        assert _rel(other.scores, full.scores) <= 1e-5
        torch.testing.assert_close(other.p_zero, full.p_zero)
    sub = integrated_gradients(loaded, PROMPTS, TARGETS, steps=5, layers=[2, 1])
    assert sub.layers == [1, 2] and sub.scores.shape == (3, 2, 32)
    assert _rel(sub.scores, full.scores[:, 1:]) <= 1e-5
    # a [prompt, seq] tensor and int lists are accepted
    batch = torch.tensor([[5, 17, 9], [40, 3, 99]])
    a = integrated_gradients(loaded, batch, torch.tensor([7, 64]), steps=5)
    b = integrated_gradients(loaded, [[5, 17, 9], [40, 3, 99]], [7, 64], steps=5)
    torch.testing.assert_close(a.scores, b.scores)
    with pytest.raises(ValueError):
        integrated_gradients(loaded, PROMPTS, TARGETS[:2])
    with pytest.raises(ValueError):
        integrated_gradients(loaded, PROMPTS, TARGETS, rule="middle")
    with pytest.raises(ValueError):
        integrated_gradients(loaded, PROMPTS, [7, 12, 10_000])  # outside the vocabulary
    with pytest.raises(ValueError):
        integrated_gradients(loaded, PROMPTS, TARGETS, steps=0)
    with pytest.raises(ValueError, match="neuron 'post_activation'"):
        integrated_gradients(loaded, PROMPTS, TARGETS, neuron="post_activation")
    with pytest.raises(ValueError, match="neuron"):
        reference_integrated_gradients(loaded, PROMPTS, TARGETS, neuron="post_activation")


def test_fallback_to_reference_without_fast_path():
    loaded = _tiny("gpt2", seed=4)
    loaded.adapter.supports_last_token = False  # as an adapter without the last-token methods
    for neuron in NEURON_DEFINITIONS:
        got = integrated_gradients(loaded, PROMPTS[:2], TARGETS[:2], steps=3, rule="gauss_legendre", neuron=neuron)
        ref = reference_integrated_gradients(loaded, PROMPTS[:2], TARGETS[:2], steps=3, rule="gauss_legendre",
                                             neuron=neuron)
        torch.testing.assert_close(got.scores, ref.scores, rtol=0, atol=0)


# --- IG identities ---------------------------------------------------------------------------------------------------


def test_alphas():
    torch.testing.assert_close(alphas(4, "right"), torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    torch.testing.assert_close(alphas(4, "left"), torch.tensor([0.0, 0.25, 0.5, 0.75], dtype=torch.float64))
    assert torch.equal(alphas(5, "gauss_legendre"), quadrature("gauss_legendre", 5)[0])
    assert alphas(3).tolist() == alphas(3, "right").tolist()


def test_quadrature_rules():
    for rule in RULES:
        for m in (1, 2, 5, 20):
            nodes, weights = quadrature(rule, m)
            assert nodes.shape == weights.shape == (m,) and nodes.dtype == weights.dtype == torch.float64
            assert abs(float(weights.sum()) - 1.0) < 1e-12
            assert bool((weights > 0).all()) and bool((nodes[1:] > nodes[:-1]).all())
            assert 0.0 <= float(nodes[0]) and float(nodes[-1]) <= 1.0
    nodes, weights = quadrature("right", 4)
    assert nodes.tolist() == [0.25, 0.5, 0.75, 1.0] and weights.tolist() == [0.25] * 4
    assert quadrature("left", 4)[0].tolist() == [0.0, 0.25, 0.5, 0.75]
    # the 1-node Gauss-Legendre rule is the midpoint rule
    assert quadrature("gauss_legendre", 1)[0].tolist() == [0.5] and quadrature("gauss_legendre", 1)[1].tolist() == [1.0]
    for bad in ("middle", "trapezoid"):
        with pytest.raises(ValueError, match="rule"):
            quadrature(bad, 4)
    for bad_steps in (0, -1, 2.5):
        with pytest.raises(ValueError, match="steps"):
            quadrature("right", bad_steps)


@pytest.mark.parametrize("m", [1, 2, 3, 5, 8])
def test_gauss_legendre_is_exact_to_degree_2m_minus_1(m):
    """m nodes integrate every polynomial of degree <= 2m - 1 over [0, 1] exactly (here: the monomials, 1e-12), and
    not degree 2m: the error on [0, 1] is f^(2m) (m!)^4 / ((2m + 1) ((2m)!)^3), for x^(2m) (m!)^4 / ((2m + 1)
    ((2m)!)^2): 1/12 for m = 1 ... 3.5e-10 for m = 8, checked to 0.1% of itself. Right sums are exact for constants
    only."""
    import math

    nodes, weights = quadrature("gauss_legendre", m)
    for k in range(2 * m):
        assert abs(float((weights * nodes**k).sum()) - 1.0 / (k + 1)) < 1e-12
    expected = math.factorial(m) ** 4 / ((2 * m + 1) * math.factorial(2 * m) ** 2)
    error = 1.0 / (2 * m + 1) - float((weights * nodes ** (2 * m)).sum())
    assert abs(error - expected) <= 1e-3 * expected + 1e-15
    r_nodes, r_weights = quadrature("right", m)
    assert abs(float((r_weights * r_nodes).sum()) - 0.5) > 0.1 / m

@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_left_right_one_step_are_endpoint_gradients(family):
    """m = 1: "left" gives w_bar * dP/dw at 0, "right" gives w_bar * dP/dw at w_bar (the natural gradient x input)."""
    loaded = _tiny(family, seed=6)
    ids = PROMPTS[0]
    target = _argmax_targets(loaded, [ids])[0]
    left = integrated_gradients(loaded, [ids], [target], steps=1, rule="left")
    right = integrated_gradients(loaded, [ids], [target], steps=1, rule="right")
    for layer in range(3):
        w_bar, g0 = _grad_at(loaded, ids, target, layer, 0.0)
        _, g1 = _grad_at(loaded, ids, target, layer, 1.0)
        assert _rel(left.scores[0, layer], w_bar * g0) <= 1e-4
        assert _rel(right.scores[0, layer], w_bar * g1) <= 1e-4
    # the two rules differ only by the end points: right(m) - left(m) = (right(1) - left(1)) / m, neuron by neuron
    m = 7
    diff = (integrated_gradients(loaded, [ids], [target], steps=m, rule="right").scores
            - integrated_gradients(loaded, [ids], [target], steps=m, rule="left").scores)
    assert _rel(diff, (right.scores - left.scores) / m) <= 1e-4


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_completeness(family):
    """sum_i Attr_i -> P(w_bar) - P(0) as m grows.

    With g(a) = d/da P(a * w_bar) = w_bar . grad P(a * w_bar), the attributions of a layer sum to the Riemann sum
    (1/m) sum_k g(alpha_k) of the integral of g over [0, 1], which is delta = P(w_bar) - P(0). The right rule's error
    is +(g(1) - g(0)) / (2m) + O(1/m^2), the left rule's the opposite, and g(1), g(0) are the m = 1 sums of the two
    rules. Tolerances: (a) at m = 200 the right-rule error equals that first-order term to within 10% of it, plus
    1e-6 for float32 rounding (sums of 32 scores ~0.1 and of P(w_bar) - P(0), each ~1e-7 off); (b) the error falls
    like 1/m: at m = 200 it is at most 1/5 of the m = 20 error (1/10 expected); (c) the average of the two rules, the
    trapezoid rule, has error -(g'(1) - g'(0)) / (12 m^2) ~ 2e-6 * |g'(1) - g'(0)| at m = 200: we allow 1e-4 of
    |delta| plus 1e-5."""
    loaded = _tiny(family, seed=7)
    targets = _argmax_targets(loaded, PROMPTS)

    def summed(m, rule):
        result = integrated_gradients(loaded, PROMPTS, targets, steps=m, rule=rule)
        return result.scores.sum(-1), result

    m = 200
    right, result = summed(m, "right")
    left, _ = summed(m, "left")
    g1, g0 = summed(1, "right")[0], summed(1, "left")[0]
    delta = result.p_full - result.p_zero  # [prompt, layer]
    assert float(delta.abs().max()) > 0.1  # the FFN layers matter in this model
    err_right = right - delta
    first_order = (g1 - g0) / (2 * m)
    assert torch.all((err_right - first_order).abs() <= 0.1 * first_order.abs() + 1e-6)
    err_20 = summed(20, "right")[0] - delta
    assert torch.all(err_right.abs() <= err_20.abs() / 5 + 1e-6)
    trapezoid = (right + left) / 2
    assert torch.all((trapezoid - delta).abs() <= 1e-4 * delta.abs() + 1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_completeness_gauss_legendre(family):
    """On a smooth tiny model the completeness gap |sum_i Attr_i - (P(q_bar) - P(0))| of Gauss-Legendre at m = 8 is
    far below the right sum's (error ~ (g(1) - g(0)) / (2m)): at least 100x smaller (measured: ~1e4x), and under
    2e-4 of |delta|, for both neuron definitions."""
    loaded = _tiny(family, seed=7)
    targets = _argmax_targets(loaded, PROMPTS)
    for neuron in NEURON_DEFINITIONS:
        gaps = {}
        for rule in ("right", "gauss_legendre"):
            result = integrated_gradients(loaded, PROMPTS, targets, steps=8, rule=rule, neuron=neuron)
            delta = result.p_full - result.p_zero
            gaps[rule] = (result.scores.sum(-1) - delta).abs()
        assert float(delta.abs().max()) > 0.1
        assert float(gaps["gauss_legendre"].max()) < float(gaps["right"].max()) / 100
        assert torch.all(gaps["gauss_legendre"] <= 2e-4 * delta.abs() + 1e-5)


def test_bfloat16_close_to_float32_tiny():
    loaded = _tiny("llama", seed=8)
    targets = _argmax_targets(loaded, PROMPTS)
    f32 = integrated_gradients(loaded, PROMPTS, targets, steps=8)
    bf16 = integrated_gradients(loaded, PROMPTS, targets, steps=8, dtype=torch.bfloat16)
    assert bf16.scores.dtype == torch.float32 and bf16.p_full.dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa (relative rounding 2^-9 per operation); a few percent after 3 layers + head
    assert _rel(bf16.scores, f32.scores) <= 0.05
    torch.testing.assert_close(bf16.p_full, f32.p_full, rtol=0.05, atol=1e-3)
    assert next(loaded.model.parameters()).dtype == torch.float32  # the model itself is untouched
