"""kn.adapters: where the FFN neurons of each architecture family live.

One adapter per family; nothing outside this module names a model's submodules.

API
    adapter_for(model) -> Adapter            # raises UnsupportedArchitecture naming the supported families
    Adapter.n_layers, Adapter.n_neurons      # L, H
    Adapter.ffn_out_proj(layer) -> nn.Module # its *input* [.., H] is the layer's neurons
    Adapter.value_vector(layer, neuron) -> Tensor [d_model]   (a view into the weight)
    Adapter.value_vectors(layer) -> Tensor [H, d_model]       (a view: row i is neuron i's value vector)
    Adapter.embedding_row(token_id) -> Tensor [d_model]
    SUPPORTED_FAMILIES
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class UnsupportedArchitecture(ValueError):
    pass


@dataclass
class Adapter:
    """Base class: a family subclass fills in the module paths."""

    model: nn.Module
    family: str = ""

    # --- set by subclasses -------------------------------------------------
    def layers(self) -> list[nn.Module]:
        raise NotImplementedError

    def ffn_out_proj(self, layer: int) -> nn.Module:
        raise NotImplementedError

    def value_vectors(self, layer: int) -> torch.Tensor:
        """[H, d_model] view of layer ``layer``'s value vectors (row i: neuron i)."""
        raise NotImplementedError

    def input_embeddings(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight

    # --- shared ------------------------------------------------------------
    @property
    def config(self):
        return self.model.config

    @property
    def n_layers(self) -> int:
        return len(self.layers())

    @property
    def n_neurons(self) -> int:
        raise NotImplementedError

    @property
    def d_model(self) -> int:
        return self.input_embeddings().shape[1]

    def value_vector(self, layer: int, neuron: int) -> torch.Tensor:
        """Neuron ``neuron`` of layer ``layer``: what it adds to the residual stream per unit of activation. [d_model]"""
        self._check(layer, neuron)
        return self.value_vectors(layer)[neuron]

    def embedding_row(self, token_id: int) -> torch.Tensor:
        """The input embedding of ``token_id``: [d_model] (tied with the output head in GPT-2, SmolLM2, Llama-3.2-1B)."""
        emb = self.input_embeddings()
        if not 0 <= token_id < emb.shape[0]:
            raise IndexError(f"token id {token_id} outside the vocabulary of {emb.shape[0]}")
        return emb[token_id]

    def _check(self, layer: int, neuron: int | None = None) -> None:
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"layer {layer} outside 0..{self.n_layers - 1}")
        if neuron is not None and not 0 <= neuron < self.n_neurons:
            raise IndexError(f"neuron {neuron} outside 0..{self.n_neurons - 1}")


class GPT2Adapter(Adapter):
    """GPT-2: neurons are the input of ``mlp.c_proj`` (after GELU). ``c_proj`` is a Conv1D: weight [H, d_model]."""

    def layers(self):
        return list(self.model.transformer.h)

    @property
    def n_neurons(self) -> int:
        return self.model.config.n_inner or 4 * self.model.config.n_embd

    def ffn_out_proj(self, layer: int) -> nn.Module:
        self._check(layer)
        return self.layers()[layer].mlp.c_proj

    def value_vectors(self, layer: int) -> torch.Tensor:
        return self.ffn_out_proj(layer).weight  # Conv1D: [in=H, out=d_model]


class LlamaAdapter(Adapter):
    """Llama family (Llama, Qwen2, Mistral, SmolLM2): neurons are the input of ``mlp.down_proj``, act(gate) * up.

    ``down_proj`` is an nn.Linear: weight [d_model, H], so value vectors are its columns."""

    def layers(self):
        return list(self.model.model.layers)

    @property
    def n_neurons(self) -> int:
        return self.model.config.intermediate_size

    def ffn_out_proj(self, layer: int) -> nn.Module:
        self._check(layer)
        return self.layers()[layer].mlp.down_proj

    def value_vectors(self, layer: int) -> torch.Tensor:
        return self.ffn_out_proj(layer).weight.T  # [H, d_model] view


_FAMILIES: dict[str, type[Adapter]] = {
    "gpt2": GPT2Adapter,
    "llama": LlamaAdapter,
    "qwen2": LlamaAdapter,
    "mistral": LlamaAdapter,
}
SUPPORTED_FAMILIES = tuple(sorted(_FAMILIES))


def adapter_for(model: nn.Module) -> Adapter:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    cls = _FAMILIES.get(model_type)
    if cls is None:
        raise UnsupportedArchitecture(
            f"architecture {model_type!r} is not supported; supported model_type values: {', '.join(SUPPORTED_FAMILIES)}"
        )
    return cls(model=model, family="gpt2" if cls is GPT2Adapter else "llama")
