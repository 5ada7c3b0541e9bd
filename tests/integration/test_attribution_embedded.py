"""The fast integrated-gradients kernel on the embedded SmolLM2-135M: against the reference on three layers, and
bfloat16 against float32 (integration tier)."""

from __future__ import annotations

import pytest
import torch
from kn.attribution.kernel import integrated_gradients
from kn.attribution.reference import reference_integrated_gradients
from kn.core.models import load_model
from tiny_models import _one_thread, _rel  # noqa: F401 (_one_thread: fixture)


@pytest.fixture(scope="module")
def smollm():
    return load_model("smollm2-135m")


@pytest.mark.slow
@pytest.mark.parametrize("rule,neuron", [("right", "ffn_out_input"), ("gauss_legendre", "pre_activation")])
def test_fast_matches_reference_smollm(smollm, rule, neuron):
    tok = smollm.tokenizer
    prompts = [torch.tensor(tok("The capital of France is").input_ids), torch.tensor(tok("Paris").input_ids)]
    targets = [tok(" Paris").input_ids[0], tok(" is").input_ids[0]]
    fast = integrated_gradients(smollm, prompts, targets, rule=rule, neuron=neuron)
    assert fast.scores.shape == (2, 30, 1536)
    assert 0.3 < float(fast.p_full[0, 0]) < 1.0  # " Paris" is likely after "The capital of France is"
    layers = [0, 16, 29]  # the reference costs a whole-model forward + backward per layer: check three
    ref = reference_integrated_gradients(smollm, prompts, targets, layers=layers, rule=rule, neuron=neuron)
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
