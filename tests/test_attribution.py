"""kn.attribution: the fast integrated-gradients kernel against the reference (the definition), and IG's identities."""

from __future__ import annotations

import pytest
import torch

from kn.attribution import IGResult, alphas, integrated_gradients, reference_integrated_gradients
from kn.models import LoadedModel, tiny_model

# prompts of different lengths, a 1-token prompt among them
PROMPTS = [torch.tensor([5, 17, 9, 33, 2, 71]), torch.tensor([11]), torch.tensor([40, 3, 99])]
TARGETS = [7, 12, 64]


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: tiny models gain nothing from threads, and on a shared 2-core machine a core busy with another
    process stalls every parallel region of a 2-thread run (we saw the embedded-model test take 110 s instead of 10 s).
    Results do not depend on the thread count beyond float32 rounding."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _tiny(family: str, seed: int = 0) -> LoadedModel:
    """A tiny random model whose FFNs matter (random init leaves them too weak to move the probabilities)."""
    loaded = tiny_model(family, seed=seed, n_layers=3, n_neurons=32)
    with torch.no_grad():
        loaded.model.get_input_embeddings().weight.mul_(3.0)  # sharper next-token distributions
        for layer in range(loaded.adapter.n_layers):
            loaded.adapter.ffn_out_proj(layer).weight.mul_(10.0)
            for name, param in loaded.adapter.layers()[layer].named_parameters():
                if param.dim() == 2 and any(k in name for k in ("c_fc", "gate_proj", "up_proj")):
                    param.mul_(10.0)
    return loaded


def _argmax_targets(loaded: LoadedModel, prompts) -> list[int]:
    """The model's own next-token prediction for each prompt: a target with a sizeable probability."""
    with torch.no_grad():
        return [int(loaded.model(input_ids=ids[None]).logits[0, -1].argmax()) for ids in prompts]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest |b|."""
    return float((a - b).abs().max() / b.abs().max())


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


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_last_token_pass_reproduces_model(family):
    """The adapters' last-token primitives, on prompts of different lengths batched together (padded prefixes),
    reproduce the model's own logits and its natural residual stream / neurons."""
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


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("rule", ["right", "left"])
def test_fast_matches_reference_tiny(family, rule):
    loaded = _tiny(family, seed=1)
    targets = _argmax_targets(loaded, PROMPTS)
    ref = reference_integrated_gradients(loaded, PROMPTS, targets, steps=6, rule=rule)
    fast = integrated_gradients(loaded, PROMPTS, targets, steps=6, rule=rule)
    assert isinstance(fast, IGResult)
    assert fast.scores.shape == (3, 3, 32) and fast.scores.dtype == torch.float32
    assert fast.p_full.shape == fast.p_zero.shape == (3, 3)
    assert fast.layers == ref.layers == [0, 1, 2] and fast.steps == 6 and fast.rule == rule
    assert float(ref.scores.abs().max()) > 1e-3  # the scores are not trivially zero
    assert _rel(fast.scores, ref.scores) <= 1e-4
    torch.testing.assert_close(fast.p_full, ref.p_full, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fast.p_zero, ref.p_zero, rtol=1e-5, atol=1e-7)
    assert torch.equal(fast.target_ids, torch.tensor(targets))
    # other targets too (small probabilities)
    ref = reference_integrated_gradients(loaded, PROMPTS, TARGETS, steps=6, rule=rule)
    fast = integrated_gradients(loaded, PROMPTS, TARGETS, steps=6, rule=rule)
    assert _rel(fast.scores, ref.scores) <= 1e-4


def test_fast_matches_reference_gpt2_layer_scaled_attention():
    """GPT-2's optional 1/(layer + 1) attention scaling goes through the adapter too."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from kn.adapters import adapter_for

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
    from transformers import LlamaConfig, LlamaForCausalLM

    from kn.adapters import adapter_for

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


def test_fallback_to_reference_without_fast_path():
    loaded = _tiny("gpt2", seed=4)
    loaded.adapter.supports_last_token = False  # as an adapter without the last-token methods
    got = integrated_gradients(loaded, PROMPTS[:2], TARGETS[:2], steps=3)
    ref = reference_integrated_gradients(loaded, PROMPTS[:2], TARGETS[:2], steps=3)
    torch.testing.assert_close(got.scores, ref.scores, rtol=0, atol=0)


# --- IG identities ---------------------------------------------------------------------------------------------------


def test_alphas():
    torch.testing.assert_close(alphas(4, "right"), torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    torch.testing.assert_close(alphas(4, "left"), torch.tensor([0.0, 0.25, 0.5, 0.75], dtype=torch.float64))


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


# --- the embedded model ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm():
    from kn.models import load_model

    return load_model("smollm2-135m")


@pytest.mark.slow
def test_fast_matches_reference_smollm(smollm):
    tok = smollm.tokenizer
    prompts = [torch.tensor(tok("The capital of France is").input_ids), torch.tensor(tok("Paris").input_ids)]
    targets = [tok(" Paris").input_ids[0], tok(" is").input_ids[0]]
    fast = integrated_gradients(smollm, prompts, targets)
    assert fast.scores.shape == (2, 30, 1536)
    assert 0.3 < float(fast.p_full[0, 0]) < 1.0  # " Paris" is likely after "The capital of France is"
    layers = [0, 16, 29]  # the reference costs a whole-model forward + backward per layer: check three
    ref = reference_integrated_gradients(smollm, prompts, targets, layers=layers)
    assert _rel(fast.scores[:, layers], ref.scores) <= 1e-4
    torch.testing.assert_close(fast.p_full[:, layers], ref.p_full, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast.p_zero[:, layers], ref.p_zero, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_bfloat16_close_to_float32_smollm(smollm):
    """bfloat16 on the late layers only (bfloat16 matrix products are slow on CPUs without native support)."""
    tok = smollm.tokenizer
    ids = torch.tensor(tok("The capital of France is").input_ids)
    target = tok(" Paris").input_ids[0]
    layers = [27, 28, 29]
    f32 = integrated_gradients(smollm, [ids], [target], layers=layers)
    bf16 = integrated_gradients(smollm, [ids], [target], layers=layers, dtype=torch.bfloat16)
    assert _rel(bf16.scores, f32.scores) <= 0.15
    # the strongest neurons agree
    top32 = set(f32.scores.flatten().topk(20).indices.tolist())
    top16 = set(bf16.scores.flatten().topk(20).indices.tolist())
    assert len(top32 & top16) >= 15
