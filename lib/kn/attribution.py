"""kn.attribution: integrated-gradients attribution to FFN neurons (Knowledge Neurons, Dai et al. 2022).

A neuron (l, i) is input i of layer l's FFN output projection (``adapter.ffn_out_proj(l)``). For a prompt and a
target token, P(w) is the softmax probability of the target at the last position when layer l's neurons at the
last position are set to w (everything else natural). With w_bar the natural activations of layer l there,

    Attr_i = w_bar_i * (1/m) * sum_k dP(alpha_k * w_bar) / dw_i,
    alpha_k = k/m for k = 1..m (rule "right", default) or k = 0..m-1 (rule "left"), m = steps.

API
    integrated_gradients(loaded, input_ids, target_ids, *, steps=20, rule="right", dtype=torch.float32,
                         layers=None, progress=False, batch_prompts=None) -> IGResult   # fast (else the reference)
    reference_integrated_gradients(loaded, input_ids, target_ids, *, steps=20, rule="right", layers=None,
                                   progress=False) -> IGResult                          # the definition, slow
    IGResult(scores [prompt, layer, neuron], p_full [prompt, layer], p_zero [prompt, layer], target_ids [prompt],
             steps, rule, layers)
    alphas(steps, rule) -> [steps] float64 tensor of the scaling factors
    ig_flops(n_layers, d_model, n_neurons, vocab, *, steps, seq, ...) -> float   # the fast kernel's FLOP count
    model_flops(loaded, *, steps=20, seq=1) -> float                          # the same for a loaded model

The fast kernel uses that, in a causal model, an intervention at the last position changes the last position only.
The prompts run once (no grad; one right-padded batch), keeping each layer's prefix K/V and, at the last token,
the residual stream just before each FFN and the neurons w_bar. Then every (layer l, alpha) pair becomes one row:
the last token, re-entering the network at layer l with alpha * w_bar as its neurons there, and running through
layers l+1..L-1 alone, attending to its prompt's cached prefix and to itself. All layers' rows go in one batch,
ordered by layer, so the batch grows as layers come up (m*L*(L+1)/2 row-layers rather than m*L*L); the LM head and
softmax run once over all rows, with a hand-written backward, and one backward gives every gradient. A few prompts
share a batch (batch_prompts). The model-specific pieces are methods of the adapters (kn.adapters:
last_token_state, attention_last, ffn_in, ffn_out, final_norm, lm_head); attribution.py names no submodule.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["IGResult", "integrated_gradients", "reference_integrated_gradients", "alphas", "ig_flops", "model_flops"]

RULES = ("right", "left")


@dataclass
class IGResult:
    """Integrated-gradients scores for a batch of prompts.

    scores: float32 [prompt, layer, neuron]; Attr of each neuron (layer axis: ``layers``, all layers by default)
    p_full: float32 [prompt, layer]; P(w_bar), the target probability with the layer's natural activations
    p_zero: float32 [prompt, layer]; P(0), with the layer's activations at the last position set to zero
    target_ids: int64 [prompt]
    steps, rule: the Riemann sum used; layers: the layer index of each entry of the layer axis.
    Completeness: scores.sum(-1) ~ p_full - p_zero as steps grows."""

    scores: torch.Tensor
    p_full: torch.Tensor
    p_zero: torch.Tensor
    target_ids: torch.Tensor
    steps: int
    rule: str
    layers: list[int] = field(default_factory=list)


def alphas(steps: int, rule: str = "right") -> torch.Tensor:
    """The scaling factors alpha_k: k/m for k = 1..m ("right") or k = 0..m-1 ("left"). Returns [steps] float64."""
    if rule not in RULES:
        raise ValueError(f"rule {rule!r}: use one of {RULES}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    k = torch.arange(1, steps + 1) if rule == "right" else torch.arange(0, steps)
    return k.double() / steps


def _prompts(input_ids, device) -> list[torch.Tensor]:
    """Normalise ``input_ids`` (a [seq] tensor, a [prompt, seq] tensor, or a list of [seq] tensors / int lists)."""
    if isinstance(input_ids, torch.Tensor):
        if input_ids.dim() == 1:
            input_ids = [input_ids]
        elif input_ids.dim() == 2:
            input_ids = list(input_ids)
        else:
            raise ValueError(f"input_ids: expected [seq] or [prompt, seq], got shape {tuple(input_ids.shape)}")
    out = []
    for ids in input_ids:
        t = torch.as_tensor(ids, dtype=torch.long, device=device).reshape(-1)
        if t.numel() == 0:
            raise ValueError("input_ids: empty prompt")
        out.append(t)
    return out


def _targets(target_ids, n: int) -> torch.Tensor:
    t = torch.as_tensor(target_ids, dtype=torch.long).reshape(-1).cpu()
    if t.numel() != n:
        raise ValueError(f"{t.numel()} target ids for {n} prompts")
    return t


def _layers(layers, n_layers: int) -> list[int]:
    if layers is None:
        return list(range(n_layers))
    out = sorted({int(l) for l in layers})
    if not out or out[0] < 0 or out[-1] >= n_layers:
        raise ValueError(f"layers {layers!r}: need indices in 0..{n_layers - 1}")
    return out


def _target_prob(logits: torch.Tensor, target: int) -> torch.Tensor:  # the reference's: plain autograd
    """softmax(logits)[..., target] computed in float32 (float64 stays): [...]"""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return torch.exp(logits[..., target] - torch.logsumexp(logits, dim=-1))


def _progress(it, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc)


# --------------------------------------------------------------------------------------------------------------
# reference: the definition
# --------------------------------------------------------------------------------------------------------------


def reference_integrated_gradients(loaded, input_ids, target_ids, *, steps: int = 20, rule: str = "right",
                                   layers: Sequence[int] | None = None, progress: bool = False) -> IGResult:
    """Integrated gradients by the definition: for each prompt and layer, the whole model on the whole sequence.

    loaded: kn.models.LoadedModel (any family kn.adapters supports).
    input_ids: list of [seq] LongTensors (or int lists), or one [seq] / [prompt, seq] LongTensor; prompts may differ
        in length; seq >= 1.
    target_ids: [prompt] LongTensor or list of ints: the token whose probability at the last position is attributed.
    steps: m, the number of Riemann-sum points; rule: "right" (alpha = 1/m..1) or "left" (alpha = 0..(m-1)/m).
    layers: layer indices to attribute (default all); the result's layer axis follows them in increasing order.
    Returns IGResult (scores [prompt, layer, neuron] float32, p_full / p_zero [prompt, layer]).

    Per prompt and layer l: one batch of m + 1 copies of the sequence whose layer-l neurons at the last position are
    alpha_k * w_bar (a leaf requiring grad, put in by a forward pre-hook on ffn_out_proj(l)); one backward."""
    model, adapter = loaded.model, loaded.adapter
    device = loaded.device
    prompts = _prompts(input_ids, device)
    targets = _targets(target_ids, len(prompts))
    layer_list = _layers(layers, adapter.n_layers)
    row_alphas, grad_rows = _row_alphas(steps, rule)  # m + 1 alphas from 0 to 1
    n_rows = row_alphas.numel()

    scores = torch.zeros(len(prompts), len(layer_list), adapter.n_neurons)
    p_full = torch.zeros(len(prompts), len(layer_list))
    p_zero = torch.zeros(len(prompts), len(layer_list))
    for p, ids in enumerate(_progress(prompts, progress, "reference IG")):
        target = int(targets[p])
        # natural activations of every layer at the last position
        w_bar: dict[int, torch.Tensor] = {}
        handles = []
        for l in layer_list:
            def grab(module, args, l=l):
                w_bar[l] = args[0][0, -1].detach().clone()
            handles.append(adapter.ffn_out_proj(l).register_forward_pre_hook(grab))
        try:
            with torch.no_grad():
                model(input_ids=ids[None], use_cache=False)
        finally:
            for h in handles:
                h.remove()

        batch = ids[None].expand(n_rows, -1)
        # All positions' logits, although only the last one's are used: with transformers' logits_to_keep=1 the
        # reference is ~1.6x faster but its float32 gradients are ~1e-4 off (the LM head's backward on the strided
        # slice hidden[:, -1:] loses precision in torch 2.13 on CPU), and the reference is the yardstick.
        for j, l in enumerate(layer_list):
            a = row_alphas.to(device=device, dtype=w_bar[l].dtype)
            leaf = (a[:, None] * w_bar[l][None]).requires_grad_(True)  # [m + 1, H]

            def put(module, args, leaf=leaf):
                x = args[0]
                return (torch.cat([x[:, :-1], leaf[:, None].to(x.dtype)], dim=1), *args[1:])

            handle = adapter.ffn_out_proj(l).register_forward_pre_hook(put)
            try:
                with torch.enable_grad():
                    logits = model(input_ids=batch, use_cache=False).logits[:, -1]
                    prob = _target_prob(logits, target)  # [m + 1]
                    # the extra row (alpha 0 under "right", 1 under "left") is not part of the sum
                    (grad,) = torch.autograd.grad(prob[grad_rows].sum(), leaf)
            finally:
                handle.remove()
            grad = grad[grad_rows].float()
            scores[p, j] = (w_bar[l].float() * grad.mean(0)).cpu()
            p_full[p, j] = prob[-1].detach().float().cpu()  # alpha = 1
            p_zero[p, j] = prob[0].detach().float().cpu()  # alpha = 0
    return IGResult(scores, p_full, p_zero, targets, int(steps), rule, layer_list)


# --------------------------------------------------------------------------------------------------------------
# fast kernel
# --------------------------------------------------------------------------------------------------------------

_CAST_COPIES: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()
_LOW_PRECISION = (torch.bfloat16, torch.float16)


def _compute_in(loaded, dtype: torch.dtype):
    """(adapter, autocast context) that computes in ``dtype``.

    The model's own dtype: the model as it is. A lower precision (bfloat16 / float16 for a float32 model): autocast
    (matrix products in ``dtype``, norms, softmax and the residual stream in float32). On the 2-core CPU autocast and
    a bfloat16 copy of the weights take the same time (both ~40x slower than float32: no native bfloat16), and
    autocast is 4x closer to float32 (max relative difference of the scores 0.9% against 3.7%). Anything else (a
    float32 or float64 run of a lower-precision model): a cast copy of the model, made once and cached while the model
    lives."""
    model = loaded.model
    model_dtype = next(model.parameters()).dtype
    if dtype == model_dtype:
        return loaded.adapter, contextlib.nullcontext()
    if dtype in _LOW_PRECISION and model_dtype.is_floating_point and torch.finfo(model_dtype).bits > 16:
        return loaded.adapter, torch.autocast(loaded.device.type, dtype=dtype)
    per_model = _CAST_COPIES.setdefault(model, {})
    if dtype not in per_model:
        from .adapters import adapter_for

        twin = copy.deepcopy(model).to(dtype).eval()
        for param in twin.parameters():
            param.requires_grad_(False)
        per_model[dtype] = adapter_for(twin)
    return per_model[dtype], contextlib.nullcontext()


class _TargetProb(torch.autograd.Function):
    """softmax(h @ W.T + b)[row, target[row]] for every row, with a hand-written backward.

    h: [N, d] (after the final norm); weight: [vocab, d]; bias: [vocab] or None; target: [N] LongTensor; buffer: None
    or a float32 [>= N, vocab] tensor to hold the logits and then, in place, their exponentials (a large fresh
    allocation costs a page fault per 4 KiB on CPU: as much time as the softmax itself). Returns [N] float32 (float64
    for a float64 model).
    Forward: one [N, d] x [d, vocab] matmul, then in place E = exp(z - max z), the row sums s and p = E[target] / s.
    Backward (input gradient only): dp/dh = p * (W[target] - (E @ W) / s), one [N, vocab] x [vocab, d] matmul;
    autograd through logsumexp and a select would add several passes over [N, vocab] and a zero-filled gradient.
    The softmax is by hand because torch.softmax's fast CPU exp is off by ~2e-5 relative; torch.exp is not."""

    @staticmethod
    def forward(ctx, h, weight, bias, target, buffer):
        if buffer is not None and h.dtype == torch.float32 and weight.dtype == torch.float32:
            z = torch.matmul(h, weight.t(), out=buffer[: h.shape[0]])
            if bias is not None:
                z.add_(bias)
        else:
            z = torch.nn.functional.linear(h, weight, bias)
            z = z.to(torch.promote_types(z.dtype, torch.float32))
        z.sub_(z.amax(dim=-1, keepdim=True)).exp_()
        total = z.sum(dim=-1)  # [N]
        p = z.gather(1, target[:, None])[:, 0] / total
        ctx.save_for_backward(z, total, weight, p, target)
        return p

    @staticmethod
    def backward(ctx, grad_p):
        e, total, weight, p, target = ctx.saved_tensors
        c = (grad_p.to(p.dtype) * p)[:, None]  # [N, 1]
        sw = torch.matmul(e.to(weight.dtype), weight).to(p.dtype) / total[:, None]  # S @ W: [N, d]
        grad_h = c * (weight[target].to(p.dtype) - sw)
        return grad_h.to(weight.dtype), None, None, None, None


def _target_prob_head(adapter, x: torch.Tensor, target: torch.Tensor, buffer: torch.Tensor | None = None):
    """Target probability [N] (float32 or wider) from the residual stream x [N, d] after the last layer.

    target: [N] LongTensor, one target id per row."""
    head = adapter.lm_head()
    if not isinstance(head, torch.nn.Linear):  # an unusual head: plain autograd
        logits = adapter.final_logits(x)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        return torch.softmax(logits, -1).gather(1, target[:, None])[:, 0]
    return _TargetProb.apply(adapter.final_norm(x), head.weight, head.bias, target, buffer)


def _row_alphas(steps: int, rule: str) -> tuple[torch.Tensor, slice]:
    """The alphas of one layer's rows: m + 1 of them, from 0 to 1, and which m enter the gradient sum.

    "right": [0, 1/m, ..., 1], gradient rows 1..m; "left": [0, ..., (m-1)/m, 1], gradient rows 0..m-1.
    Row 0 (alpha 0) gives P(0) and row m (alpha 1) gives P(w_bar), as in the reference."""
    a = alphas(steps, rule)
    if rule == "right":
        return torch.cat([a.new_zeros(1), a]), slice(1, steps + 1)
    return torch.cat([a, a.new_ones(1)]), slice(0, steps)


def _fast_group(adapter, prompts: list[torch.Tensor], targets: torch.Tensor, steps: int, rule: str,
                layer_list: list[int], buffer: torch.Tensor | None):
    """A group of P prompts at once. prompts: P [seq] LongTensors; targets: [P].

    Returns (scores [P, n, H], p_full [P, n], p_zero [P, n]) float32, n = len(layer_list).

    P depends on layer l's neurons w only through the residual stream x = mid_l + ffn_out(w), and ffn_out is affine,
    so dP/dw = J_l^T dP/dx with J_l its (constant) matrix, and the Riemann sum needs only the sum over the rows of
    dP/dx: Attr_l = w_bar * J_l^T (sum_k dP/dx(alpha_k)) / m. The leaf is therefore one [n, P, d] tensor added to the
    gradient rows' residual stream at their entry layer (its gradient is that sum), and J_l^T is applied once per
    layer afterwards (a vector-Jacobian product through ffn_out), not to every row."""
    n = len(layer_list)
    row_alphas, grad_rows = _row_alphas(steps, rule)
    r = row_alphas.numel()
    with torch.no_grad():
        state = adapter.last_token_state(prompts)
        P = len(prompts)
        w_bar = state.acts[layer_list]  # [n, P, H]
        dtype, device = w_bar.dtype, w_bar.device
        a = row_alphas.to(device=device, dtype=dtype)[:, None]  # [r, 1]
        entries = []  # per layer: the rows' residual stream after the FFN of their entry layer, [P, r, d]
        for i, l in enumerate(layer_list):
            out_0 = adapter.ffn_out(l, torch.zeros_like(w_bar[i]))  # the bias, or zeros: [P, d]
            out_1 = adapter.ffn_out(l, w_bar[i])
            entries.append(state.mids[l][:, None, :] + out_0[:, None, :] + a * (out_1 - out_0)[:, None, :])
        in_sum = torch.zeros(r, 1, device=device, dtype=dtype)
        in_sum[grad_rows] = 1.0  # which rows the leaf reaches
        row_targets = targets.to(device).repeat_interleave(n * r)  # rows are ordered (prompt, layer, alpha)
        leaf = torch.zeros(n, P, 1, adapter.d_model, device=device, dtype=dtype)

    with torch.enable_grad():
        leaf.requires_grad_(True)
        per_layer = leaf.unbind(0)  # views; their gradients come back as one stack
        # Rows re-enter the network at their layer and run to the end. Ordered by layer along dim 1, so at layer j the
        # active rows (entry layer <= j) are everything built so far; the rows of layer j join at the end.
        rows = None  # [P, active rows, d]
        k = 0
        for j in range(layer_list[0], adapter.n_layers):
            if rows is not None:
                rows = adapter.attention_last(j, rows, state)
                rows = rows + adapter.ffn_out(j, adapter.ffn_in(j, rows))
            if k < n and layer_list[k] == j:
                new = entries[k] + per_layer[k] * in_sum  # [P, r, d]
                rows = new if rows is None else torch.cat([rows, new], dim=1)
                k += 1
        prob = _target_prob_head(adapter, rows.reshape(P * n * r, -1), row_targets, buffer).view(P, n, r)
        (grad_x,) = torch.autograd.grad(prob[:, :, grad_rows].sum(), leaf)  # [n, P, 1, d]: sum_k dP/dx
    scores = torch.empty(P, n, adapter.n_neurons)
    with torch.enable_grad():
        for i, l in enumerate(layer_list):  # J_l^T, through the FFN output projection itself
            w = w_bar[i].clone().requires_grad_(True)
            (grad_w,) = torch.autograd.grad(adapter.ffn_out(l, w), w, grad_outputs=grad_x[i, :, 0])
            scores[:, i] = (w_bar[i].float() * grad_w.float() / steps).cpu()
    prob = prob.detach().float()
    return scores, prob[:, :, -1], prob[:, :, 0]


def integrated_gradients(loaded, input_ids, target_ids, *, steps: int = 20, rule: str = "right",
                         dtype: torch.dtype = torch.float32, layers: Sequence[int] | None = None,
                         progress: bool = False, batch_prompts: int | None = None) -> IGResult:
    """Integrated gradients over every FFN neuron, fast: same results as ``reference_integrated_gradients``.

    loaded: kn.models.LoadedModel. Families with the adapters' last-token methods (GPT-2, Llama / Qwen2 / Mistral)
        take the fast path on the model's device; others fall back to the reference.
    input_ids: list of [seq] LongTensors (or int lists), or one [seq] / [prompt, seq] LongTensor; prompts may differ
        in length; seq >= 1.
    target_ids: [prompt] LongTensor or list of ints.
    steps: m; rule: "right" (alpha = 1/m..1) or "left" (alpha = 0..(m-1)/m).
    dtype: compute dtype: torch.float32 (default), or torch.bfloat16 / torch.float16 by autocast (matrix products in
        that dtype, norms, softmax and the residual stream in float32; on CPUs without native bfloat16 it is ~40x
        slower than float32); a float32 run of a bfloat16 model uses a float32 copy of it, cached while the model
        lives. Results are float32 whatever the compute dtype.
    layers: layer indices to attribute (default all); the result's layer axis follows them in increasing order.
    progress: a tqdm bar over prompt groups.
    batch_prompts: prompts per batch (default 2 on CPU, 8 on CUDA); their prefixes are padded and masked. On the
        2-core CPU, 2 prompts per batch are ~12% faster per prompt than 1 and 4 no faster than 2.
    Returns IGResult: scores [prompt, layer, neuron], p_full / p_zero [prompt, layer], target_ids [prompt].

    Work: m + 1 rows per layer (alpha 0 for P(0) besides the m gradient points, or alpha 1 for P(w_bar) under "left"),
    m*L*(L+1)/2 last-token row-layers, one LM head + softmax over all rows, one backward. See ``ig_flops``."""
    if isinstance(dtype, str):
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
                 "float64": torch.float64}[dtype]
    if not getattr(loaded.adapter, "supports_last_token", False):
        return reference_integrated_gradients(loaded, input_ids, target_ids, steps=steps, rule=rule, layers=layers,
                                              progress=progress)
    _row_alphas(steps, rule)  # validates steps and rule
    adapter, context = _compute_in(loaded, dtype)
    device = loaded.device
    prompts = _prompts(input_ids, device)
    targets = _targets(target_ids, len(prompts))
    vocab = adapter.input_embeddings().shape[0]
    if targets.numel() and not (0 <= int(targets.min()) and int(targets.max()) < vocab):
        raise ValueError(f"target ids must lie in 0..{vocab - 1}")
    layer_list = _layers(layers, adapter.n_layers)
    if batch_prompts is None:
        batch_prompts = 8 if device.type == "cuda" else 2
    batch_prompts = max(1, int(batch_prompts))

    scores = torch.zeros(len(prompts), len(layer_list), adapter.n_neurons)
    p_full = torch.zeros(len(prompts), len(layer_list))
    p_zero = torch.zeros(len(prompts), len(layer_list))
    buffer = None
    head = adapter.lm_head()
    if dtype == torch.float32 and isinstance(head, torch.nn.Linear) and head.weight.dtype == torch.float32:
        rows = min(batch_prompts, len(prompts)) * len(layer_list) * (int(steps) + 1)
        buffer = torch.empty(rows, head.weight.shape[0], device=head.weight.device, dtype=torch.float32)
    starts = range(0, len(prompts), batch_prompts)
    for start in _progress(starts, progress, "IG"):
        group = slice(start, start + batch_prompts)
        with context:
            s, pf, pz = _fast_group(adapter, prompts[group], targets[group], int(steps), rule, layer_list, buffer)
        scores[group], p_full[group], p_zero[group] = s.cpu(), pf.cpu(), pz.cpu()
    return IGResult(scores, p_full, p_zero, targets, int(steps), rule, layer_list)


def ig_flops(n_layers: int, d_model: int, n_neurons: int, vocab: int, *, steps: int = 20, seq: int = 1,
             q_dim: int | None = None, kv_dim: int | None = None, gated: bool = True) -> float:
    """FLOPs of ``integrated_gradients`` for one prompt of ``seq`` tokens, all layers: matrix products only (2 per
    multiply-add); norms, activations, the softmax and other elementwise work are left out.

    Per last-token row and layer: attention projections 2*d*(2*q_dim + 2*kv_dim) (q and o: q_dim wide; k and v:
    kv_dim), attention scores and values over the prefix and itself 4*q_dim*seq, FFN 2*d*H*(3 if gated else 2):
    call it C. A batch of r rows per layer, entering at their layer (output projection there, 2*H*d), running through
    the later layers (L*(L-1)/2 row-layers per alpha) and the LM head (2*d*vocab):
        F(r) = r * (L*2*H*d + L*(L-1)/2 * C + L*2*d*vocab).
    The kernel runs r = steps + 1 rows per layer (the extra row gives P(0), or P(w_bar) under "left"), forward and
    backward; the backward computes input gradients only (no weight gradients), as many FLOPs as the forward.
    The no-grad pass over the prompt (seq tokens, no LM head) adds about seq * L * C.
    Total: 2 F(steps + 1) + seq * L * C. SmolLM2-135M, steps 20, 5 tokens: ~204 GFLOP, 72 of them in the LM head."""
    q_dim = d_model if q_dim is None else q_dim
    kv_dim = d_model if kv_dim is None else kv_dim
    L, d, H = n_layers, d_model, n_neurons
    per_layer = 2 * d * (2 * q_dim + 2 * kv_dim) + 4 * q_dim * seq + 2 * d * H * (3 if gated else 2)
    r = steps + 1
    forward = r * (L * 2 * H * d + L * (L - 1) / 2 * per_layer + L * 2 * d * vocab)
    return 2 * forward + seq * L * per_layer


def model_flops(loaded, *, steps: int = 20, seq: int = 1) -> float:
    """``ig_flops`` with the sizes of ``loaded`` (a kn.models.LoadedModel)."""
    cfg, adapter = loaded.model.config, loaded.adapter
    heads = getattr(cfg, "num_attention_heads", None) or cfg.n_head
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or adapter.d_model // heads
    return ig_flops(adapter.n_layers, adapter.d_model, adapter.n_neurons, adapter.lm_head().weight.shape[0],
                    steps=steps, seq=seq, q_dim=heads * head_dim, kv_dim=kv_heads * head_dim,
                    gated=adapter.family == "llama")
