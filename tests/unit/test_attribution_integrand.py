"""kn.attribution.kernel.integrand: the integrand dP/dq at any alphas, against the definition and against the kernel's own
quadratures."""

from __future__ import annotations

import pytest
import torch
from kn.attribution.common import NEURON_DEFINITIONS, IntegrandResult
from kn.attribution.kernel import integrand, integrated_gradients
from kn.attribution.quadrature import RULES, quadrature
from kn.attribution.reference import reference_integrand
from tiny_models import PROMPTS, _argmax_targets, _one_thread, _rel, _tiny  # noqa: F401 (_one_thread: fixture)

# unsorted, repeated, both end points, one just above 0 (where Gemma's post-FFN norm turns)
ALPHAS = torch.tensor([0.0, 0.3, 1.0, 0.3, 0.01, 0.77, 1.0, 0.5])


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
@pytest.mark.parametrize("neuron", NEURON_DEFINITIONS)
def test_integrand_matches_reference(family, neuron):
    """Per-alpha gradients, q_bar and P against the definition, with chunks of 3 (layers x 1 alpha: batch_rows 3 and
    3 layers) and in one chunk."""
    loaded = _tiny(family, seed=1)
    ids = PROMPTS[0]
    target = _argmax_targets(loaded, [ids])[0]
    ref = reference_integrand(loaded, ids, target, ALPHAS, neuron=neuron)
    assert isinstance(ref, IntegrandResult) and ref.grads.shape == (8, 3, 32) and ref.p.shape == (8, 3)
    assert float(ref.grads.abs().max()) > 1e-3
    for batch_rows in (3, None):
        fast = integrand(loaded, ids, target, ALPHAS, neuron=neuron, batch_rows=batch_rows)
        assert fast.grads.shape == (8, 3, 32) and fast.grads.dtype == torch.float32
        assert fast.q_bar.shape == (3, 32) and fast.p.shape == (8, 3)
        assert fast.layers == [0, 1, 2] and fast.neuron == neuron and fast.target_id == target
        assert torch.equal(fast.alphas, ALPHAS.double())
        assert _rel(fast.grads, ref.grads) <= 1e-4
        assert _rel(fast.q_bar, ref.q_bar) <= 1e-5
        torch.testing.assert_close(fast.p, ref.p, rtol=1e-5, atol=1e-7)
    # the same alpha twice gives the same row
    torch.testing.assert_close(fast.grads[1], fast.grads[3], rtol=0, atol=0)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
@pytest.mark.parametrize("neuron", NEURON_DEFINITIONS)
def test_integrand_gives_every_rule(family, neuron):
    """q_bar * (weights * grads).sum(0) at a rule's nodes is integrated_gradients' scores for that rule, and the
    integrand's P at 0 and 1 are its p_zero and p_full."""
    loaded = _tiny(family, seed=2)
    ids = PROMPTS[2]
    target = _argmax_targets(loaded, [ids])[0]
    for rule in RULES:
        nodes, weights = quadrature(rule, 5)
        sampled = integrand(loaded, ids, target, nodes, neuron=neuron, batch_rows=7)
        scores = sampled.q_bar * (weights[:, None, None] * sampled.grads.double()).sum(0).float()
        ig = integrated_gradients(loaded, [ids], [target], steps=5, rule=rule, neuron=neuron)
        assert _rel(scores, ig.scores[0]) <= 1e-4
    ends = integrand(loaded, ids, target, [0.0, 1.0], neuron=neuron, layers=[2, 0])
    assert ends.layers == [0, 2]
    torch.testing.assert_close(ends.p[0], ig.p_zero[0, [0, 2]], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ends.p[1], ig.p_full[0, [0, 2]], rtol=1e-5, atol=1e-7)


def test_integrand_many_alphas_in_chunks():
    """Hundreds of alphas in chunks of a few rows equal one big chunk; the trapezoid rule over a fine grid of the
    integrand meets completeness (the integrand is smooth in a tiny Llama)."""
    loaded = _tiny("llama", seed=7)
    ids = PROMPTS[0]
    target = _argmax_targets(loaded, [ids])[0]
    grid = torch.linspace(0, 1, 401, dtype=torch.float64)
    small = integrand(loaded, ids, target, grid, batch_rows=30)  # 10 alphas x 3 layers per chunk
    big = integrand(loaded, ids, target, grid, batch_rows=10_000)
    assert _rel(small.grads, big.grads) <= 1e-5
    trapezoid = torch.full((401,), 1 / 400, dtype=torch.float64)
    trapezoid[[0, -1]] /= 2
    sums = (small.q_bar * (trapezoid[:, None, None] * small.grads.double()).sum(0).float()).sum(-1)  # [layer]
    delta = small.p[-1] - small.p[0]
    assert float(delta.abs().max()) > 0.1
    assert torch.all((sums - delta).abs() <= 1e-4 * delta.abs() + 1e-5)


def test_integrand_input_forms_and_errors():
    loaded = _tiny("gpt2", seed=3)
    a = integrand(loaded, [5, 17, 9], 7, [0.5, 1.0])
    b = integrand(loaded, torch.tensor([[5, 17, 9]]), 7, torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(a.grads, b.grads, rtol=0, atol=0)
    with pytest.raises(ValueError, match="one non-empty prompt"):
        integrand(loaded, torch.tensor([[5, 17], [9, 4]]), 7, [0.5])
    with pytest.raises(ValueError, match="alphas"):
        integrand(loaded, [5, 17, 9], 7, [])
    with pytest.raises(ValueError, match="target ids"):
        integrand(loaded, [5, 17, 9], 10_000, [0.5])
    with pytest.raises(ValueError, match="neuron"):
        integrand(loaded, [5, 17, 9], 7, [0.5], neuron="gate")
    # without the last-token methods: the reference
    loaded.adapter.supports_last_token = False
    c = integrand(loaded, [5, 17, 9], 7, [0.5, 1.0])
    torch.testing.assert_close(c.grads, reference_integrand(loaded, [5, 17, 9], 7, [0.5, 1.0]).grads, rtol=0, atol=0)
