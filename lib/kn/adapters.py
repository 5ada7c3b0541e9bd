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

Last-token primitives (the fast integrated-gradients kernel in kn.attribution builds on these). P prompts,
each with R "rows": copies of its last token that differ only in their residual stream; d = d_model, H = n_neurons.
    Adapter.supports_last_token -> bool                # False: kn.attribution falls back to its reference
    Adapter.last_token_state(prompts: list of [seq] LongTensors) -> LastTokenState
        # one no-grad forward of the prompts (a right-padded batch, with hooks): prefix K/V (padded to the longest,
        # masked), the last token's position and embedding [P, d], its natural residual stream before each FFN
        # (mids [L, P, d]) and its neurons (acts [L, P, H], w_bar). Hooks on the shared model: not thread-safe.
    Adapter.attention_last(layer, x [P, R, d], state) -> [P, R, d]  # x + attention(norm(x)) over prefix + own K/V
    Adapter.ffn_in(layer, x [..., d]) -> [..., H]       # the layer's neurons: FFN input side including its norm
    Adapter.ffn_out(layer, a [..., H]) -> [..., d]      # ffn_out_proj(layer)(a): what the FFN adds to x
    Adapter.final_norm(x [..., d]) -> [..., d]; Adapter.lm_head() -> nn.Linear, weight [vocab, d]
    Adapter.final_logits(x [..., d]) -> [..., vocab]    # lm_head()(final_norm(x))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class UnsupportedArchitecture(ValueError):
    pass


@dataclass
class LastTokenState:
    """What the last tokens of P prompts need from the rest of them (made by Adapter.last_token_state).

    kv: per layer (K, V), each [P, kv_heads, T, head_dim], T = the longest prefix (seq - 1) of the P prompts;
        positions past a prompt's own prefix are padding. Llama family: the keys are R_t^T K, rotated back into the
        frame of the last position t (see LlamaAdapter.last_token_state).
    mask: [P, T] additive attention mask (0 on a prompt's prefix, -inf on padding), None without padding.
    positions: [P] LongTensor, the last token's position (seq - 1).
    embedding: [P, d] the last token's input to layer 0.
    mids: [L, P, d] the natural residual stream of the last token just before each layer's FFN.
    acts: [L, P, H] the natural neuron activations of the last token (input of ffn_out_proj), w_bar.
    extra: family-specific data (Llama: the rotary embedding's attention_scaling squared, see LlamaAdapter)."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor | None
    positions: torch.Tensor
    embedding: torch.Tensor
    mids: torch.Tensor
    acts: torch.Tensor
    extra: object = None


def _rows_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: LastTokenState, layer: int,
                    scaling: float, self_scaling: float | None = None) -> torch.Tensor:
    """Attention of one-token rows, each over its prompt's prefix cache plus its own key/value.

    q: [P, R, heads, hd]; k, v: [P, R, kv_heads, hd] (the rows' own); the cache is state.kv[layer]: K, V
    [P, kv_heads, T, hd] (T may be 0), state.mask [P, T] or None. The score of a row against its own key is
    scaled by ``self_scaling`` (default ``scaling``), those against the prefix by ``scaling``.
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
    if state.mask is not None:
        s_prefix = s_prefix + state.mask[:, None, None, None, :]
    self_scaling = scaling if self_scaling is None else self_scaling
    s_self = (q5 * k[:, :, :, None, :]).sum(-1).permute(0, 2, 1, 3).unsqueeze(-1) * self_scaling  # [P, nkv, R, g, 1]
    scores = torch.cat([s_prefix, s_self], dim=-1)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    out = torch.matmul(probs[..., :T].reshape(P, nkv, R * g, T), V).view(P, nkv, R, g, hd)
    out = out + probs[..., T:] * v.permute(0, 2, 1, 3).unsqueeze(3)  # own value: [P, nkv, R, 1, hd]
    return out.permute(0, 2, 1, 3, 4).reshape(P, R, nh * hd)


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

    def ffn_in(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Layer ``layer``'s neuron activations [..., H] (the input of ffn_out_proj) from the residual x [..., d]."""
        raise NotImplementedError

    def ffn_out(self, layer: int, a: torch.Tensor) -> torch.Tensor:
        """What layer ``layer``'s FFN adds to the residual stream [..., d], given its neuron activations a [..., H]."""
        return self.ffn_out_proj(layer)(a)

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The final norm [..., d] of the residual stream x [..., d] after the last layer."""
        raise NotImplementedError

    def lm_head(self) -> nn.Module:
        """The output head: an nn.Linear with weight [vocab, d] (tied to the input embeddings in SmolLM2, GPT-2)."""
        return self.model.get_output_embeddings()

    def final_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Next-token logits [..., vocab] from the residual stream x [..., d] after the last layer."""
        return self.lm_head()(self.final_norm(x))

    def _natural_state(self, base: nn.Module, prompts: list[torch.Tensor], mid_module, kv_heads: int, head_dim: int):
        """Run the prompts through ``base`` (the model without its head) as one right-padded batch, with a cache and
        hooks. Right padding needs no attention mask: in a causal model a real token never sees the padding after it.

        mid_module(layer) is the module whose input is the residual stream just before the FFN (the FFN's norm).
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

        handles = []
        for layer in range(L):
            handles.append(mid_module(layer).register_forward_pre_hook(keeper(mids, layer)))
            handles.append(self.ffn_out_proj(layer).register_forward_pre_hook(keeper(acts, layer)))
        try:
            with torch.no_grad():
                cache = base(input_ids=batch, use_cache=True).past_key_values
        finally:
            for h in handles:
                h.remove()
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

    def ffn_in(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        block = self.model.transformer.h[layer]
        return block.mlp.act(block.mlp.c_fc(block.ln_2(x)))

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.transformer.ln_f(x)


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

    # --- last-token primitives ---------------------------------------------
    supports_last_token = True

    def last_token_state(self, prompts: list[torch.Tensor]) -> LastTokenState:
        """Rotary embedding, folded into the cache: every row of a prompt sits at the same position t, rotated by the
        same R_t, so a row's query against a cached (rotated) key K_s is (R_t q) . K_s = q . (R_t^T K_s), and against
        its own key (R_t q) . (R_t k) = a^2 q . k (R_t is a rotation times the rope type's attention_scaling a). The
        cache holds R_t^T K, and the rows' queries and keys are never rotated: no rotary work per row."""
        base = self.model.model
        attn = base.layers[0].self_attn
        kv_heads = getattr(self.config, "num_key_value_heads", None) or self.config.num_attention_heads
        kv, mask, mids, acts, positions = self._natural_state(
            base, prompts, lambda l: base.layers[l].post_attention_layernorm, kv_heads, attn.head_dim)
        last = torch.stack([torch.as_tensor(ids, device=positions.device).reshape(-1)[-1] for ids in prompts])
        with torch.no_grad():
            emb = base.embed_tokens(last)  # [P, d]
            dummy = torch.zeros(1, device=emb.device, dtype=torch.float32)
            cos, sin = base.rotary_emb(dummy, positions[:, None])  # float32 [P, 1, hd] each
            cos, sin = cos[:, None], sin[:, None]  # [P, 1, 1, hd], against K [P, kv_heads, T, hd]
            half = attn.head_dim // 2
            for layer, (K, V) in enumerate(kv):
                Kf = K.float()
                rotated = Kf * cos - torch.cat([-Kf[..., half:], Kf[..., :half]], dim=-1) * sin  # R_t^T K
                kv[layer] = (rotated.to(K.dtype), V)
        a = float(getattr(base.rotary_emb, "attention_scaling", 1.0) or 1.0)
        return LastTokenState(kv=kv, mask=mask, positions=positions, embedding=emb, mids=mids, acts=acts,
                              extra=a * a)

    def attention_last(self, layer: int, x: torch.Tensor, state: LastTokenState) -> torch.Tensor:
        block = self.model.model.layers[layer]
        attn = block.self_attn
        P, R, hd = x.shape[0], x.shape[1], attn.head_dim
        h = block.input_layernorm(x)
        q = attn.q_proj(h).view(P, R, -1, hd)
        k = attn.k_proj(h).view(P, R, -1, hd)
        v = attn.v_proj(h).view(P, R, -1, hd)
        # no rotation here: the cache holds R_t^T K (see last_token_state)
        a2 = state.extra
        out = _rows_attention(q, k, v, state, layer, attn.scaling, attn.scaling * a2)
        return x + attn.o_proj(out)

    def ffn_in(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        block = self.model.model.layers[layer]
        h = block.post_attention_layernorm(x)
        return block.mlp.act_fn(block.mlp.gate_proj(h)) * block.mlp.up_proj(h)

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.model.norm(x)


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
