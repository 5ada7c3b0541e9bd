"""kn.core.adapters.llama: the Llama family (also Qwen2 and Mistral): rotary attention rows, gated FFN."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kn.core.adapters.base import Adapter, LastTokenState, _rotate_back, _rows_attention


@dataclass
class RotaryRows:
    """What the rows' attention needs besides the cache, per layer (LastTokenState.extra of the Llama family and
    Gemma 3, made by LlamaAdapter.last_token_state).

    self_scaling: [L] floats, a^2 of each layer's rope type (the factor of a row's score against its own key).
    masks: [L] of None (use LastTokenState.mask) or an additive [P, T] mask: on a sliding-window layer, the prompt's
        mask plus -inf on the prefix positions s <= t - window that the last position t does not see."""

    self_scaling: list[float]
    masks: list[torch.Tensor | None]


class LlamaAdapter(Adapter):
    """Llama family (Llama, Qwen2, Mistral, SmolLM2): neurons are the input of ``mlp.down_proj``, act(gate) * up.

    ``down_proj`` is an nn.Linear: weight [d_model, H], so value vectors are its columns. Gemma3Adapter reuses this
    class through the hooks _mid_module, _prefix_cache, _rotary, _window_masks, _qk and _attention_output."""

    family_name = "llama"

    def layers(self):
        return list(self.model.model.layers)

    @property
    def n_neurons(self) -> int:
        return self.config.intermediate_size

    def ffn_out_proj(self, layer: int) -> nn.Module:
        self._check(layer)
        return self.layers()[layer].mlp.down_proj

    def value_vectors(self, layer: int) -> torch.Tensor:
        return self.ffn_out_proj(layer).weight.T  # [H, d_model] view

    def pre_activation_module(self, layer: int) -> nn.Module:
        self._check(layer)
        return self.layers()[layer].mlp.gate_proj

    # --- last-token primitives ---------------------------------------------
    supports_last_token = True

    def _mid_module(self, layer: int) -> nn.Module:
        """The module whose input is the residual stream just before layer ``layer``'s FFN."""
        return self.model.model.layers[layer].post_attention_layernorm

    def _prefix_cache(self):
        """The transformers cache the prompts' forward fills (None: the model's default)."""
        return None

    def _rotary(self, positions: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        """Per layer: (cos, sin) [P, 1, hd] float32 at the last positions ``positions`` [P], and the attention_scaling
        a they include. One rotary embedding for all layers."""
        rotary = self.model.model.rotary_emb
        dummy = torch.zeros(1, device=positions.device, dtype=torch.float32)
        cos, sin = rotary(dummy, positions[:, None])
        a = float(getattr(rotary, "attention_scaling", 1.0) or 1.0)
        return [(cos, sin, a)] * self.n_layers

    def _window_masks(self, mask: torch.Tensor | None, positions: torch.Tensor, T: int) -> list[torch.Tensor | None]:
        """Per layer, a mask replacing ``mask`` [P, T] for a sliding-window layer, else None. Llama: none."""
        return [None] * self.n_layers

    def last_token_state(self, prompts: list[torch.Tensor]) -> LastTokenState:
        """Rotary embedding, folded into the cache: every row of a prompt sits at the same position t, rotated by the
        same R_t, so a row's query against a cached (rotated) key K_s is (R_t q) . K_s = q . (R_t^T K_s), and against
        its own key (R_t q) . (R_t k) = a^2 q . k (R_t is a rotation times the rope type's attention_scaling a). The
        cache holds R_t^T K, and the rows' queries and keys are never rotated: no rotary work per row."""
        base = self.model.model
        attn = base.layers[0].self_attn
        kv_heads = getattr(self.config, "num_key_value_heads", None) or self.config.num_attention_heads
        kv, mask, mids, acts, positions = self._natural_state(base, prompts, self._mid_module, kv_heads, attn.head_dim,
                                                              cache=self._prefix_cache())
        last = torch.stack([torch.as_tensor(ids, device=positions.device).reshape(-1)[-1] for ids in prompts])
        with torch.no_grad():
            emb = base.embed_tokens(last)  # [P, d]
            rotary = self._rotary(positions)
            for layer, (K, V) in enumerate(kv):
                cos, sin, _ = rotary[layer]  # [P, 1, hd] -> [P, 1, 1, hd], against K [P, kv_heads, T, hd]
                kv[layer] = (_rotate_back(K, cos[:, None], sin[:, None]), V)
        extra = RotaryRows(self_scaling=[a * a for _, _, a in rotary],
                           masks=self._window_masks(mask, positions, kv[0][0].shape[2]))
        return LastTokenState(kv=kv, mask=mask, positions=positions, embedding=emb, mids=mids, acts=acts, extra=extra)

    def _qk(self, attn: nn.Module, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows' queries and keys [P, R, heads, hd] before the scores (Llama: as projected)."""
        return q, k

    def _attention_output(self, layer: int, out: torch.Tensor) -> torch.Tensor:
        """What the attention block adds to the residual stream, from o_proj's output (Llama: that output)."""
        return out

    def attention_last(self, layer: int, x: torch.Tensor, state: LastTokenState) -> torch.Tensor:
        block = self.model.model.layers[layer]
        attn = block.self_attn
        P, R, hd = x.shape[0], x.shape[1], attn.head_dim
        h = block.input_layernorm(x)
        q, k = self._qk(attn, attn.q_proj(h).view(P, R, -1, hd), attn.k_proj(h).view(P, R, -1, hd))
        v = attn.v_proj(h).view(P, R, -1, hd)
        # no rotation here: the cache holds R_t^T K (see last_token_state)
        extra = state.extra
        out = _rows_attention(q, k, v, state, layer, attn.scaling, attn.scaling * extra.self_scaling[layer],
                              mask=extra.masks[layer])
        return x + self._attention_output(layer, attn.o_proj(out))

    def ffn_norm(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        return self._mid_module(layer)(x)

    def ffn_from_pre(self, layer: int, g: torch.Tensor, x_normed: torch.Tensor) -> torch.Tensor:
        mlp = self.model.model.layers[layer].mlp
        return mlp.act_fn(g) * mlp.up_proj(x_normed)

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.model.norm(x)
