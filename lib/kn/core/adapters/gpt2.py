"""kn.core.adapters.gpt2: the GPT-2 family: Conv1D projections, learned positions.

API
    GPT2Adapter ("gpt2"), LlamaAdapter ("llama", "qwen2", "mistral"), Gemma3Adapter ("gemma3_text", "gemma3")
"""

from __future__ import annotations

import torch
from torch import nn

from kn.core.adapters.base import Adapter, LastTokenState, _rows_attention


class GPT2Adapter(Adapter):
    """GPT-2: neurons are the input of ``mlp.c_proj`` (after GELU). ``c_proj`` is a Conv1D: weight [H, d_model]."""

    family_name = "gpt2"

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

    def pre_activation_module(self, layer: int) -> nn.Module:
        self._check(layer)
        return self.layers()[layer].mlp.c_fc

    # --- last-token primitives ---------------------------------------------
    supports_last_token = True

    def last_token_state(self, prompts: list[torch.Tensor]) -> LastTokenState:
        tr = self.model.transformer
        attn = tr.h[0].attn
        kv, mask, mids, acts, positions = self._natural_state(tr, prompts, lambda l: tr.h[l].ln_2, attn.num_heads,
                                                              attn.head_dim)
        last = torch.stack([torch.as_tensor(ids, device=positions.device).reshape(-1)[-1] for ids in prompts])
        with torch.no_grad():
            emb = tr.wte(last) + tr.wpe(positions)
        return LastTokenState(kv=kv, mask=mask, positions=positions, embedding=emb, mids=mids, acts=acts)

    def attention_last(self, layer: int, x: torch.Tensor, state: LastTokenState) -> torch.Tensor:
        block = self.model.transformer.h[layer]
        attn = block.attn
        P, R = x.shape[0], x.shape[1]
        q, k, v = attn.c_attn(block.ln_1(x)).split(attn.split_size, dim=-1)
        shape = (P, R, attn.num_heads, attn.head_dim)
        scaling = getattr(attn, "scaling", None)
        if scaling is None:  # transformers 4.x: the flags, not the product
            scaling = attn.head_dim ** -0.5 if attn.scale_attn_weights else 1.0
            if attn.scale_attn_by_inverse_layer_idx:
                scaling /= float(layer + 1)
        out = _rows_attention(q.reshape(shape), k.reshape(shape), v.reshape(shape), state, layer, scaling)
        return x + attn.c_proj(out)

    def ffn_norm(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        return self.model.transformer.h[layer].ln_2(x)

    def ffn_from_pre(self, layer: int, g: torch.Tensor, x_normed: torch.Tensor) -> torch.Tensor:
        return self.model.transformer.h[layer].mlp.act(g)

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.transformer.ln_f(x)
