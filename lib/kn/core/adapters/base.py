"""kn.core.adapters.base: where the FFN neurons of each architecture family live.

One adapter per family; nothing outside this module names a model's submodules.

API
    Adapter.n_layers, Adapter.n_neurons      # L, H
    Adapter.ffn_out_proj(layer) -> nn.Module # its *input* [.., H] is the layer's neurons
    Adapter.value_vector(layer, neuron) -> Tensor [d_model]   (a view into the weight)
    Adapter.value_vectors(layer) -> Tensor [H, d_model]       (a view: row i is neuron i's value vector)
    Adapter.embedding_row(token_id) -> Tensor [d_model]
    Adapter.pre_activation_module(layer) -> nn.Module   # its *output* [.., H] is the FFN's pre-activation
        # (GPT-2 mlp.c_fc output h, neurons gelu(h); Llama / Gemma mlp.gate_proj output g, neurons act(g) * up)

Last-token primitives (the fast integrated-gradients kernel in kn.attribution builds on these). P prompts,
each with R "rows": copies of its last token that differ only in their residual stream; d = d_model, H = n_neurons.
    Adapter.supports_last_token -> bool                # False: kn.attribution falls back to its reference
    Adapter.last_token_state(prompts: list of [seq] LongTensors) -> LastTokenState
        # one no-grad forward of the prompts (a right-padded batch, with hooks): prefix K/V (padded to the longest,
        # masked), the last token's position and embedding [P, d], its natural residual stream before each FFN
        # (mids [L, P, d]) and its neurons (acts [L, P, H], w_bar). Hooks on the shared model: not thread-safe.
    Adapter.attention_last(layer, x [P, R, d], state) -> [P, R, d]  # x + attention(norm(x)) over prefix + own K/V
    Adapter.ffn_in(layer, x [..., d]) -> [..., H]       # the layer's neurons: FFN input side including its norm,
        # = ffn_from_pre(layer, pre_activation_module(layer)(ffn_norm(layer, x)), ffn_norm(layer, x))
    Adapter.ffn_norm(layer, x [..., d]) -> [..., d]     # the FFN's input norm
    Adapter.ffn_from_pre(layer, g [..., H], x_normed [..., d]) -> [..., H]  # neurons from the pre-activation g
        # (GPT-2 act(g); gated FFNs act(g) * up_proj(x_normed)); x_normed broadcasts against g
    Adapter.ffn_out(layer, a [..., H]) -> [..., d]      # what the FFN adds to x: ffn_out_proj(layer)(a), and for
        # Gemma 3 post_feedforward_layernorm of that
    Adapter.ffn_out_affine -> bool                      # ffn_out is affine in a (GPT-2, Llama; not Gemma 3)
    Adapter.final_norm(x [..., d]) -> [..., d]; Adapter.lm_head() -> nn.Linear, weight [vocab, d]
    Adapter.final_logits(x [..., d]) -> [..., vocab]    # lm_head()(final_norm(x)), then the final logit
        # softcapping where the config sets it (Adapter.logit_softcapping: None or the cap)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from kn.core.hooks import hooked


@dataclass
class LastTokenState:
    """What the last tokens of P prompts need from the rest of them (made by Adapter.last_token_state).

    kv: per layer (K, V), each [P, kv_heads, T, head_dim], T = the longest prefix (seq - 1) of the P prompts;
        positions past a prompt's own prefix are padding. Llama family and Gemma 3: the keys are R_t^T K, rotated
        back into the frame of the last position t (see LlamaAdapter.last_token_state).
    mask: [P, T] additive attention mask (0 on a prompt's prefix, -inf on padding), None without padding.
    positions: [P] LongTensor, the last token's position (seq - 1).
    embedding: [P, d] the last token's input to layer 0.
    mids: [L, P, d] the natural residual stream of the last token just before each layer's FFN.
    acts: [L, P, H] the natural neuron activations of the last token (input of ffn_out_proj), w_bar.
    extra: family-specific data (Llama family and Gemma 3: a RotaryRows, per layer the rotary embedding's
        attention_scaling squared and the sliding-window mask)."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor | None
    positions: torch.Tensor
    embedding: torch.Tensor
    mids: torch.Tensor
    acts: torch.Tensor
    extra: object = None


def _rows_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: LastTokenState, layer: int,
                    scaling: float, self_scaling: float | None = None, *,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """Attention of one-token rows, each over its prompt's prefix cache plus its own key/value.

    q: [P, R, heads, hd]; k, v: [P, R, kv_heads, hd] (the rows' own); the cache is state.kv[layer]: K, V
    [P, kv_heads, T, hd] (T may be 0), state.mask [P, T] or None (``mask`` [P, T], if given, replaces it: a
    sliding-window layer's). The score of a row against its own key is scaled by ``self_scaling`` (default
    ``scaling``), those against the prefix by ``scaling``.
    Grouped-query attention: query head h reads kv head h // (heads // kv_heads), as transformers' repeat_kv.
    Returns [P, R, heads * hd]."""
    P, R, nh, hd = q.shape
    K, V = state.kv[layer]
    nkv, T = K.shape[1], K.shape[2]
    g = nh // nkv
    q5 = q.view(P, R, nkv, g, hd)
    # prefix scores: one batched matmul per (prompt, kv head) over all rows and the query heads of its group
    qk = q5.permute(0, 2, 1, 3, 4).reshape(P, nkv, R * g, hd)
    s_prefix = torch.matmul(qk, K.transpose(2, 3)).view(P, nkv, R, g, T) * scaling
    self_scaling = scaling if self_scaling is None else self_scaling
    s_self = (q5 * k[:, :, :, None, :]).sum(-1).permute(0, 2, 1, 3).unsqueeze(-1) * self_scaling  # [P, nkv, R, g, 1]
    mask = state.mask if mask is None else mask
    if mask is not None:
        s_prefix = s_prefix + mask[:, None, None, None, :]
    scores = torch.cat([s_prefix, s_self], dim=-1)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    out = torch.matmul(probs[..., :T].reshape(P, nkv, R * g, T), V).view(P, nkv, R, g, hd)
    out = out + probs[..., T:] * v.permute(0, 2, 1, 3).unsqueeze(3)  # own value: [P, nkv, R, 1, hd]
    return out.permute(0, 2, 1, 3, 4).reshape(P, R, nh * hd)


def _rotate_back(K: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """R_t^T K for rotary keys K [P, kv_heads, T, hd] and the last position's cos, sin [P, 1, 1, hd] (float32,
    including the rope type's attention_scaling): transformers' rotate_half convention. Returns K's dtype."""
    half = K.shape[-1] // 2
    Kf = K.float()
    rotated = Kf * cos - torch.cat([-Kf[..., half:], Kf[..., :half]], dim=-1) * sin
    return rotated.to(K.dtype)


def _forward_with_cache(base: nn.Module, input_ids: torch.Tensor, cache):
    """``base``'s forward filling ``cache`` (None: the model's default); returns the filled cache. transformers 5.24
    (the lock's) names the argument and the output ``cache`` and deprecates ``past_key_values``, which older releases
    still use: the name is read from the forward's signature, so no deprecated argument is ever passed."""
    if "cache" in inspect.signature(base.forward).parameters:
        return base(input_ids=input_ids, use_cache=True, cache=cache).cache
    return base(input_ids=input_ids, use_cache=True, past_key_values=cache).past_key_values


def _cache_kv(cache, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, V) of ``layer`` from a transformers cache (Cache.layers in transformers 5, key_cache in 4.x)."""
    if hasattr(cache, "layers"):
        return cache.layers[layer].keys, cache.layers[layer].values
    if hasattr(cache, "key_cache"):
        return cache.key_cache[layer], cache.value_cache[layer]
    return cache[layer][0], cache[layer][1]


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

    def pre_activation_module(self, layer: int) -> nn.Module:
        """The module whose output [..., H] is layer ``layer``'s FFN pre-activation (what the forks attribute)."""
        raise NotImplementedError

    def input_embeddings(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight

    # --- last-token primitives (optional; see the module docstring) ---------
    supports_last_token = False

    def last_token_state(self, prompts: list[torch.Tensor]) -> LastTokenState:
        """One no-grad forward of P prompts ([seq] LongTensors, seq >= 1): prefix K/V, mids, acts (w_bar), ..."""
        raise NotImplementedError

    def attention_last(self, layer: int, x: torch.Tensor, state: LastTokenState) -> torch.Tensor:
        """Residual stream [P, R, d] of the last tokens after layer ``layer``'s attention block, from x [P, R, d]."""
        raise NotImplementedError

    def ffn_norm(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Layer ``layer``'s FFN input norm of the residual stream x [..., d] (the input of its FFN): [..., d]."""
        raise NotImplementedError

    def ffn_from_pre(self, layer: int, g: torch.Tensor, x_normed: torch.Tensor) -> torch.Tensor:
        """Layer ``layer``'s neurons [..., H] from its pre-activation g [..., H] and its normed FFN input x_normed
        [..., d] (used by gated FFNs only; it broadcasts against g, so one [P, 1, d] serves many rows)."""
        raise NotImplementedError

    def ffn_in(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Layer ``layer``'s neuron activations [..., H] (the input of ffn_out_proj) from the residual x [..., d]."""
        h = self.ffn_norm(layer, x)
        return self.ffn_from_pre(layer, self.pre_activation_module(layer)(h), h)

    ffn_out_affine = True  # ffn_out is affine in the neurons: kn.attribution's one-leaf-per-layer shortcut holds

    def ffn_out(self, layer: int, a: torch.Tensor) -> torch.Tensor:
        """What layer ``layer``'s FFN adds to the residual stream [..., d], given its neuron activations a [..., H]."""
        return self.ffn_out_proj(layer)(a)

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The final norm [..., d] of the residual stream x [..., d] after the last layer."""
        raise NotImplementedError

    def lm_head(self) -> nn.Module:
        """The output head: an nn.Linear with weight [vocab, d] (tied to the input embeddings in SmolLM2, GPT-2)."""
        return self.model.get_output_embeddings()

    @property
    def logit_softcapping(self) -> float | None:
        """c where the model maps its logits z to c * tanh(z / c) (Gemma's final_logit_softcapping), else None."""
        return None

    def final_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Next-token logits [..., vocab] from the residual stream x [..., d] after the last layer."""
        logits = self.lm_head()(self.final_norm(x))
        cap = self.logit_softcapping
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def _natural_state(self, base: nn.Module, prompts: list[torch.Tensor], mid_module, kv_heads: int, head_dim: int,
                       cache=None):
        """Run the prompts through ``base`` (the model without its head) as one right-padded batch, with a cache and
        hooks. Right padding needs no attention mask: in a causal model a real token never sees the padding after it.

        mid_module(layer) is the module whose input is the residual stream just before the FFN (the FFN's norm).
        cache: the transformers cache to fill (default: the model's own choice).
        Returns (kv per layer [P, kv_heads, T, hd] with T = the longest prefix, mask [P, T] or None, mids [L, P, d],
        acts [L, P, H], positions [P] = the last token's position)."""
        L = self.n_layers
        device = self.input_embeddings().device
        prompts = [torch.as_tensor(ids, device=device).reshape(-1) for ids in prompts]
        lengths = torch.tensor([ids.numel() for ids in prompts], device=device)
        if int(lengths.min()) == 0:
            raise ValueError("empty prompt: need at least one token")
        P, T = len(prompts), int(lengths.max())
        batch = torch.zeros(P, T, dtype=torch.long, device=device)
        for i, ids in enumerate(prompts):
            batch[i, : ids.numel()] = ids
        rows, last = torch.arange(P, device=device), lengths - 1
        mids, acts = [None] * L, [None] * L

        def keeper(store, layer):
            def hook(module, args):
                store[layer] = args[0][rows, last].detach()
            return hook

        pre = [(mid_module(layer), keeper(mids, layer)) for layer in range(L)]
        pre += [(self.ffn_out_proj(layer), keeper(acts, layer)) for layer in range(L)]
        with hooked(pre=pre), torch.no_grad():
            cache = _forward_with_cache(base, batch, cache)
        kv = []
        for layer in range(L):
            K, V = _cache_kv(cache, layer)
            kv.append((K[:, :, : T - 1].contiguous(), V[:, :, : T - 1].contiguous()))  # prefixes only
        mask = None
        if int(lengths.min()) != T:
            t = torch.arange(T - 1, device=device)
            mask = torch.zeros(P, T - 1, device=device, dtype=torch.float32)
            mask.masked_fill_(t[None, :] >= last[:, None], float("-inf"))  # beyond this prompt's prefix
        return kv, mask, torch.stack(mids), torch.stack(acts), last

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
