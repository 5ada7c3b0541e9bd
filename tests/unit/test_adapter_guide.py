"""The adapter guide (book/your_model.md), followed as it is written: a made-up architecture (model_type "kn_guide", a
Llama-shaped model under a name no family knows) gets an adapter and one registry entry, and the checks the kernel is
held to in test_attribution.py pass through that adapter on a tiny random model: the last-token pass reproduces the
model, the fast kernel equals the reference for every rule and neuron definition, completeness holds; and the
interventions and edits of chapters 5 and 6 work through it. A second, minimal adapter (the required part of the
specification only, no last-token primitives) shows that the reference path needs nothing more.

Every test registers the family through the ``registered`` fixture, which undoes the registration afterwards and checks
that it did: no other test sees the made-up family."""

from __future__ import annotations

import pytest
import torch
from kn.attribution.common import NEURON_DEFINITIONS
from kn.attribution.kernel import integrated_gradients
from kn.attribution.quadrature import RULES
from kn.attribution.reference import reference_integrated_gradients
from kn.base.errors import UnsupportedArchitecture
from kn.core import adapters, models
from kn.core.adapters.base import Adapter
from kn.core.adapters.llama import LlamaAdapter
from kn.core.models import LoadedModel, model_identity
from kn.methods.editing import update_fact, weights_checksum
from kn.methods.interventions import answer_probabilities
from tiny_models import PROMPTS, TARGETS, _argmax_targets, _one_thread, _rel  # noqa: F401 (_one_thread: fixture)
from transformers import LlamaConfig, LlamaForCausalLM

GUIDE_TYPE = "kn_guide"


class GuideConfig(LlamaConfig):
    """The made-up architecture's config: what AutoConfig would read from its config.json ("model_type")."""

    model_type = GUIDE_TYPE


class GuideForCausalLM(LlamaForCausalLM):
    config_class = GuideConfig


# --- step 1 of the guide: the adapter --------------------------------------------------------------------------------
class GuideAdapter(LlamaAdapter):
    """The family's modules are Llama's (model.model.layers[l].mlp.down_proj, gate_proj, up_proj; rotary attention):
    the guide's shortest path subclasses that family's adapter and names the family; nothing else changes."""

    family_name = GUIDE_TYPE


class MinimalGuideAdapter(Adapter):
    """The required part of kn.core.adapters.base.Adapter only: where the layers, the neurons, their value vectors
    and the pre-activation live, and the final norm. Without the last-token primitives (supports_last_token False)
    kn.attribution falls back to its reference, which needs only these."""

    family_name = GUIDE_TYPE

    def layers(self):
        return list(self.model.model.layers)

    @property
    def n_neurons(self) -> int:
        return self.config.intermediate_size

    def ffn_out_proj(self, layer: int):
        self._check(layer)
        return self.layers()[layer].mlp.down_proj

    def value_vectors(self, layer: int) -> torch.Tensor:
        return self.ffn_out_proj(layer).weight.T  # nn.Linear weight [d_model, H]: a [H, d_model] view

    def pre_activation_module(self, layer: int):
        self._check(layer)
        return self.layers()[layer].mlp.gate_proj

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.model.norm(x)


# --- step 2 of the guide: the registry entry, undone after each test ------------------------------------------------
@pytest.fixture
def registered(request):
    """Registers ``request.param`` (an adapter class) for GUIDE_TYPE as the guide says: one entry in
    kn.core.adapters._FAMILIES, keyed by the config's model_type, and SUPPORTED_FAMILIES as import would derive it."""
    cls = getattr(request, "param", GuideAdapter)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(adapters._FAMILIES, GUIDE_TYPE, cls)
        supported = tuple(sorted(adapters._FAMILIES))
        mp.setattr(adapters, "SUPPORTED_FAMILIES", supported)
        mp.setattr(models, "SUPPORTED_FAMILIES", supported)  # load_model checks a hub model's type against it
        yield cls
    assert GUIDE_TYPE not in adapters._FAMILIES and GUIDE_TYPE not in adapters.SUPPORTED_FAMILIES
    assert GUIDE_TYPE not in models.SUPPORTED_FAMILIES


# --- step 3 of the guide: a tiny random model of the architecture ---------------------------------------------------
def _guide_model(seed: int = 0) -> torch.nn.Module:
    """A tiny random model of the made-up architecture (the sizes of kn.core.models.tiny_model's Llama), its FFNs and
    embeddings scaled as tests/tiny_models._tiny does, so that they matter."""
    torch.manual_seed(seed)
    cfg = GuideConfig(vocab_size=128, hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True, rms_norm_eps=1e-5,
                      bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model = GuideForCausalLM(cfg).eval()
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(30.0)
        for block in model.model.layers:
            for proj in (block.mlp.down_proj, block.mlp.gate_proj, block.mlp.up_proj):
                proj.weight.mul_(10.0)
    return model


def _loaded(seed: int = 0) -> LoadedModel:
    model = _guide_model(seed)
    name = f"tiny-{GUIDE_TYPE}"
    return LoadedModel(model, None, adapters.adapter_for(model), name, model_identity(f"{name}-s{seed}", model))


def test_unregistered_the_architecture_is_refused():
    model = _guide_model()
    with pytest.raises(UnsupportedArchitecture, match=f"'{GUIDE_TYPE}' is not supported"):
        adapters.adapter_for(model)


def test_the_registry_picks_the_new_adapter(registered):
    loaded = _loaded()
    adapter = loaded.adapter
    assert type(adapter) is registered and adapter.family == GUIDE_TYPE
    assert GUIDE_TYPE in adapters.SUPPORTED_FAMILIES and GUIDE_TYPE in models.SUPPORTED_FAMILIES
    assert (adapter.n_layers, adapter.n_neurons, adapter.d_model) == (3, 32, 16)
    # a neuron's value vector is what the output projection adds per unit of its activation, and a view of the weight
    act = torch.zeros(1, 32)
    act[0, 5] = 1.0
    proj = adapter.ffn_out_proj(2)
    torch.testing.assert_close(proj(act) - proj(torch.zeros(1, 32)), adapter.value_vector(2, 5)[None])
    assert adapter.value_vectors(2).data_ptr() == proj.weight.data_ptr()
    with pytest.raises(IndexError, match="layer 3"):
        adapter.ffn_out_proj(3)


def test_last_token_pass_reproduces_model(registered):
    """As test_attribution.test_last_token_pass_reproduces_model: the adapter's last-token primitives, on prompts of
    different lengths batched together, give the model's own residual stream, neurons and logits."""
    loaded = _loaded(seed=3)
    adapter = loaded.adapter
    with torch.no_grad():
        state = adapter.last_token_state(PROMPTS)
        x = state.embedding[:, None, :]
        for layer in range(adapter.n_layers):
            x = adapter.attention_last(layer, x, state)
            torch.testing.assert_close(x[:, 0], state.mids[layer], rtol=1e-5, atol=1e-5)
            a = adapter.ffn_in(layer, x)
            torch.testing.assert_close(a[:, 0], state.acts[layer], rtol=1e-5, atol=1e-5)
            x = x + adapter.ffn_out(layer, a)
        ours = adapter.final_logits(x)[:, 0]
        theirs = torch.stack([loaded.model(input_ids=ids[None]).logits[0, -1] for ids in PROMPTS])
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("neuron", NEURON_DEFINITIONS)
def test_fast_matches_reference(registered, rule, neuron):
    """As test_attribution.test_fast_matches_reference_tiny: within 1e-4 of the largest score, end points equal."""
    loaded = _loaded(seed=1)
    targets = _argmax_targets(loaded, PROMPTS)
    ref = reference_integrated_gradients(loaded, PROMPTS, targets, steps=6, rule=rule, neuron=neuron)
    fast = integrated_gradients(loaded, PROMPTS, targets, steps=6, rule=rule, neuron=neuron)
    assert fast.scores.shape == (3, 3, 32) and float(ref.scores.abs().max()) > 1e-3
    assert _rel(fast.scores, ref.scores) <= 1e-4
    torch.testing.assert_close(fast.p_full, ref.p_full, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fast.p_zero, ref.p_zero, rtol=1e-5, atol=1e-7)


def test_completeness(registered):
    """As test_attribution.test_completeness_gauss_legendre: a layer's scores sum to P(w_bar) - P(0) (Gauss-Legendre
    at m = 8 on a smooth tiny model: under 2e-4 of |delta| plus 1e-5), for both neuron definitions."""
    loaded = _loaded(seed=7)
    targets = _argmax_targets(loaded, PROMPTS)
    for neuron in NEURON_DEFINITIONS:
        result = integrated_gradients(loaded, PROMPTS, targets, steps=8, rule="gauss_legendre", neuron=neuron)
        delta = result.p_full - result.p_zero
        assert float(delta.abs().max()) > 0.1  # the FFN layers matter in this model
        assert torch.all((result.scores.sum(-1) - delta).abs() <= 2e-4 * delta.abs() + 1e-5)


@pytest.mark.parametrize("registered", [MinimalGuideAdapter], indirect=True)
def test_a_minimal_adapter_uses_the_reference(registered):
    """The required part alone: the kernel falls back to the reference (bitwise), and completeness still holds."""
    loaded = _loaded(seed=4)
    assert type(loaded.adapter) is MinimalGuideAdapter and not loaded.adapter.supports_last_token
    for neuron in NEURON_DEFINITIONS:
        got = integrated_gradients(loaded, PROMPTS, TARGETS, steps=8, rule="gauss_legendre", neuron=neuron)
        ref = reference_integrated_gradients(loaded, PROMPTS, TARGETS, steps=8, rule="gauss_legendre", neuron=neuron)
        torch.testing.assert_close(got.scores, ref.scores, rtol=0, atol=0)
        delta = got.p_full - got.p_zero
        assert torch.all((got.scores.sum(-1) - delta).abs() <= 2e-4 * delta.abs() + 1e-5)


@pytest.mark.parametrize("registered", [GuideAdapter, MinimalGuideAdapter], indirect=True)
def test_interventions_and_edits_work_through_the_adapter(registered):
    """Chapters 5 and 6 through the new adapter: suppressing a layer's neurons at the last position moves the answer's
    probability (factor 1 leaves it bitwise), and an edit writes -lambda1 e(t) + lambda2 e(t') into exactly the chosen
    value vectors, changes the logits, and is undone bitwise."""
    loaded = _loaded(seed=5)
    adapter = loaded.adapter
    targets = _argmax_targets(loaded, PROMPTS)
    layer = frozenset(range(32, 64))  # every neuron of layer 1 (flat ids: layer * H + index)
    before, after = answer_probabilities(loaded, PROMPTS, targets, layer, 0.0)
    assert float(abs(after - before).max()) > 1e-3
    same, _ = answer_probabilities(loaded, PROMPTS, targets, layer, 1.0)
    assert (same == before).all()
    checksum, vectors = weights_checksum(loaded.model), adapter.value_vectors(2).detach().clone()
    with torch.no_grad():
        logits = loaded.model(input_ids=PROMPTS[0][None]).logits[0, -1]
    old, new, neurons = targets[0], (targets[0] + 1) % 128, frozenset({2 * 32 + 3, 2 * 32 + 17})
    with update_fact(loaded, neurons, old, new, lambda1=2.0, lambda2=3.0):
        delta = adapter.value_vectors(2).detach() - vectors
        step = -2.0 * adapter.embedding_row(old).detach() + 3.0 * adapter.embedding_row(new).detach()
        torch.testing.assert_close(delta[[3, 17]], torch.stack([step, step]), rtol=1e-5, atol=1e-5)
        assert delta[[i for i in range(32) if i not in (3, 17)]].abs().max() == 0
        with torch.no_grad():
            assert not torch.equal(loaded.model(input_ids=PROMPTS[0][None]).logits[0, -1], logits)
    assert weights_checksum(loaded.model) == checksum
    with torch.no_grad():
        assert torch.equal(loaded.model(input_ids=PROMPTS[0][None]).logits[0, -1], logits)
