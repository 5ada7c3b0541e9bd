"""kn.core.adapters.gemma3: Gemma 3 (text): Llama's rows plus query/key norms, sliding-window layers and the
post-FFN norm."""

from __future__ import annotations

import torch
from torch import nn

from kn.core.adapters.llama import LlamaAdapter


class Gemma3Adapter(LlamaAdapter):
    """Gemma 3 (text; Gemma3ForCausalLM): neurons are the input of ``mlp.down_proj``, act(gate) * up with GELU-tanh,
    value vectors the columns of down_proj.weight, as in the Llama family. What differs (transformers'
    modeling_gemma3):
    - the embedding is scaled by sqrt(d_model) inside embed_tokens (the tied output head is not);
    - RMSNorms multiply by (1 + weight), and each layer has four: x + post_attention_layernorm(attn(
      input_layernorm(x))), then x + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(x))). "mid" is the
      input of pre_feedforward_layernorm, and ffn_out(l, a) = post_feedforward_layernorm(down_proj(a)) is not affine
      in a (ffn_out_affine False: kn.attribution gives every row its own leaf);
    - q_norm and k_norm on the heads before the rotation (the rows apply them too, and the cache holds normed keys);
    - a rotary embedding per layer type ("sliding_attention": local base, "full_attention": global base);
    - sliding-window attention on local layers: a position t sees keys s > t - sliding_window. The prompts' forward
      fills a cache without sliding layers (the model's default keeps only the last window - 1 keys), and the rows'
      mask hides the prefix beyond the window: exact for any prompt length;
    - scores scaled by query_pre_attn_scalar^-0.5 (attn.scaling); final logit softcapping where the config sets it.
      config.attn_logit_softcapping is not applied by transformers' Gemma3Attention (Gemma 3 has QK-norm instead),
      so not here either (a test pins this against the model).
    Bidirectional configs (use_bidirectional_attention) are not causal: no fast path (supports_last_token False)."""

    family_name = "gemma3"
    ffn_out_affine = False

    @property
    def config(self):
        return self.model.config.get_text_config()  # the model's own for Gemma3ForCausalLM

    @property
    def supports_last_token(self) -> bool:
        return not getattr(self.config, "use_bidirectional_attention", False)

    def _mid_module(self, layer: int) -> nn.Module:
        return self.model.model.layers[layer].pre_feedforward_layernorm

    def _prefix_cache(self):
        from transformers import (
            DynamicCache,  # transformers (seconds to import) only when a model is built
        )

        return DynamicCache()  # no config: full layers, every prefix key kept

    def _rotary(self, positions: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        rotary = self.model.model.rotary_emb
        dummy = torch.zeros(1, device=positions.device, dtype=torch.float32)
        per_type = {}
        for kind in set(self.config.layer_types):
            cos, sin = rotary(dummy, positions[:, None], kind)
            per_type[kind] = (cos, sin, float(getattr(rotary, f"{kind}_attention_scaling", 1.0) or 1.0))
        return [per_type[kind] for kind in self.config.layer_types[: self.n_layers]]

    def _window_masks(self, mask: torch.Tensor | None, positions: torch.Tensor, T: int) -> list[torch.Tensor | None]:
        window = self.config.sliding_window
        far = torch.arange(T, device=positions.device)[None, :] <= positions[:, None] - window  # [P, T]
        if not bool(far.any()):  # every prompt fits in the window: the sliding layers see what the others see
            return [None] * self.n_layers
        base = torch.zeros(far.shape, device=far.device) if mask is None else mask
        sliding = base.masked_fill(far, float("-inf"))
        return [sliding if kind == "sliding_attention" else None for kind in self.config.layer_types[: self.n_layers]]

    def _qk(self, attn: nn.Module, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return attn.q_norm(q), attn.k_norm(k)

    def _attention_output(self, layer: int, out: torch.Tensor) -> torch.Tensor:
        return self.model.model.layers[layer].post_attention_layernorm(out)

    def ffn_out(self, layer: int, a: torch.Tensor) -> torch.Tensor:
        return self.model.model.layers[layer].post_feedforward_layernorm(self.ffn_out_proj(layer)(a))

    @property
    def logit_softcapping(self) -> float | None:
        return getattr(self.config, "final_logit_softcapping", None) or None
