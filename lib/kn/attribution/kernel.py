"""kn.attribution.kernel: integrated-gradients attribution to FFN neurons (Knowledge Neurons, Dai et al. 2022).

A neuron (l, i) is input i of layer l's FFN output projection (``adapter.ffn_out_proj(l)``): the papers' definition,
``neuron="ffn_out_input"``. For a prompt and a target token, P(q) is the softmax probability of the target at the last
position when layer l's attributed quantity at the last position is set to q (everything else natural). With q_bar
its natural value there and a quadrature rule (nodes alpha_k in [0, 1], weights c_k summing to 1, m = steps),

    Attr_i = q_bar_i * sum_k c_k * dP(alpha_k * q_bar) / dq_i.

Rules (``quadrature``): "right" (default; the paper's formula): alpha_k = k/m, k = 1..m, c_k = 1/m; "left" (Dai et
al.'s code): k = 0..m-1, c_k = 1/m; "gauss_legendre": the m-node Gauss-Legendre rule on [0, 1] (exact for
polynomials of degree 2m - 1 in alpha). Which quantity (``neuron``, NEURON_DEFINITIONS): "ffn_out_input", the
neurons w themselves; or "pre_activation", what the EleutherAI and EasyEdit forks attribute: the FFN pre-activation
(GPT-2 mlp.c_fc output h, so w = gelu(alpha * h); Llama / Gemma mlp.gate_proj output g, so w = act(alpha * g) * up).

API
    integrated_gradients(loaded, input_ids, target_ids, *, steps=20, rule="right", dtype=torch.float32,
                         layers=None, progress=False, batch_prompts=None, neuron="ffn_out_input") -> IGResult  # fast
    IGResult(scores [prompt, layer, neuron], p_full [prompt, layer], p_zero [prompt, layer], target_ids [prompt],
             steps, rule, layers, neuron)
    integrand(loaded, input_ids [seq], target_id, alphas [n], *, layers=None, neuron="ffn_out_input",
              batch_rows=None) -> IntegrandResult        # dP/dq at any alphas, one prompt, fast and chunked
    IntegrandResult(grads [n_alpha, layer, neuron], q_bar [layer, neuron], p [n_alpha, layer], alphas [n_alpha],
                    layers, target_id, neuron)
        # any rule's scores: q_bar * (weights[:, None, None] * grads).sum(0)
    ig_flops(n_layers, d_model, n_neurons, vocab, *, steps, seq, ..., rule="right") -> float  # the fast kernel's FLOPs
    model_flops(loaded, *, steps=20, seq=1, rule="right") -> float              # the same for a loaded model

The fast kernel uses that, in a causal model, an intervention at the last position changes the last position only.
The prompts run once (no grad; one right-padded batch), keeping each layer's prefix K/V and, at the last token,
the residual stream just before each FFN and the neurons w_bar. Then every (layer l, alpha) pair becomes one row:
the last token, re-entering the network at layer l with alpha * q_bar as its attributed quantity there, and running
through layers l+1..L-1 alone, attending to its prompt's cached prefix and to itself. All layers' rows go in one
batch, ordered by layer, so the batch grows as layers come up (m*L*(L+1)/2 row-layers rather than m*L*L); the LM head
and softmax run once over all rows, with a hand-written backward, and one backward gives every gradient. A few
prompts share a batch (batch_prompts). Two ways to take the gradient:
- affine (the papers' neurons in GPT-2 and the Llama family): the residual stream after layer l is mid_l + ffn_out(w),
  affine in w, so one leaf per layer added to the residual stream collects sum_k c_k dP/dx, and one vector-Jacobian
  product through ffn_out per layer gives the scores;
- per row (pre_activation, and Gemma 3 whose ffn_out ends in a norm): each row has its own leaf q = alpha * q_bar and
  enters as mid_l + ffn_out(f(q)) (f: identity, or the activation times up), computed with grad.
The model-specific pieces are methods of the adapters (kn.core.adapters.base: last_token_state, attention_last, ffn_in,
ffn_norm, ffn_from_pre, ffn_out, final_norm, lm_head); attribution.py names no submodule.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections.abc import Sequence

import torch

from kn.attribution.common import (
    IGResult,
    IntegrandResult,
    _check_neuron,
    _integrand_alphas,
    _layers,
    _one_prompt,
    _progress,
    _prompts,
    _row_alphas,
    _target_prob,
    _targets,
)
from kn.attribution.reference import reference_integrand, reference_integrated_gradients
from kn.core.adapters import adapter_for
from kn.core.models import torch_dtype


def _check_vocab(adapter, targets: torch.Tensor) -> None:
    vocab = adapter.input_embeddings().shape[0]
    if targets.numel() and not (0 <= int(targets.min()) and int(targets.max()) < vocab):
        raise ValueError(f"target ids must lie in 0..{vocab - 1}")














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


def _plain_head(adapter) -> bool:
    """Whether the logits are lm_head()(final_norm(x)) with an nn.Linear head and nothing after (no softcapping)."""
    return isinstance(adapter.lm_head(), torch.nn.Linear) and adapter.logit_softcapping is None


def _target_prob_head(adapter, x: torch.Tensor, target: torch.Tensor, buffer: torch.Tensor | None = None):
    """Target probability [N] (float32 or wider) from the residual stream x [N, d] after the last layer.

    target: [N] LongTensor, one target id per row."""
    if not _plain_head(adapter):  # an unusual head, or Gemma's logit softcapping: plain autograd
        return _target_prob(adapter.final_logits(x), target)
    head = adapter.lm_head()
    return _TargetProb.apply(adapter.final_norm(x), head.weight, head.bias, target, buffer)


def _head_buffer(adapter, rows: int, dtype: torch.dtype) -> torch.Tensor | None:
    """A float32 [rows, vocab] buffer for _TargetProb's logits, or None where it does not apply."""
    head = adapter.lm_head()
    if dtype != torch.float32 or not _plain_head(adapter) or head.weight.dtype != torch.float32:
        return None
    return torch.empty(rows, head.weight.shape[0], device=head.weight.device, dtype=torch.float32)


def _natural_quantity(adapter, state, layer_list: list[int], neuron: str) -> torch.Tensor:
    """q_bar [n, P, H]: the attributed quantity at the last tokens of ``state`` (no grad)."""
    if neuron == "ffn_out_input":
        return state.acts[layer_list]
    return torch.stack([adapter.pre_activation_module(l)(adapter.ffn_norm(l, state.mids[l])) for l in layer_list])


def _run_rows(adapter, state, layer_list: list[int], entry, targets: torch.Tensor, buffer) -> torch.Tensor:
    """Every (layer, alpha) row through the network and the LM head: the target probability [P, n, r].

    entry(i, l) -> [P, r, d]: the residual stream, after the FFN of layer l = layer_list[i], of the rows entering
    there. Rows are ordered by layer along dim 1, so at layer j the active rows (entry layer <= j) are everything built
    so far; the rows of layer j join at the end. targets: [P] (one per prompt)."""
    n, P = len(layer_list), state.mids.shape[1]
    rows = None  # [P, active rows, d]
    k = 0
    for j in range(layer_list[0], adapter.n_layers):
        if rows is not None:
            rows = adapter.attention_last(j, rows, state)
            rows = rows + adapter.ffn_out(j, adapter.ffn_in(j, rows))
        if k < n and layer_list[k] == j:
            new = entry(k, j)
            rows = new if rows is None else torch.cat([rows, new], dim=1)
            k += 1
    r = rows.shape[1] // n
    row_targets = targets.to(rows.device).repeat_interleave(n * r)  # rows are ordered (prompt, layer, alpha)
    return _target_prob_head(adapter, rows.reshape(P * n * r, -1), row_targets, buffer).view(P, n, r)


def _affine_group(adapter, state, targets: torch.Tensor, layer_list: list[int], row_alphas: torch.Tensor,
                  row_weights: torch.Tensor, buffer):
    """The papers' neurons where ffn_out is affine. Returns (scores [P, n, H] float32, prob [P, n, r]).

    P depends on layer l's neurons w only through the residual stream x = mid_l + ffn_out(w), and ffn_out is affine,
    so dP/dw = J_l^T dP/dx with J_l its (constant) matrix, and the quadrature needs only the weighted sum over the rows
    of dP/dx: Attr_l = w_bar * J_l^T (sum_k c_k dP/dx(alpha_k)). The leaf is therefore one [n, P, d] tensor added,
    times c_k, to the rows' residual stream at their entry layer (its gradient is that sum), and J_l^T is applied once
    per layer afterwards (a vector-Jacobian product through ffn_out), not to every row."""
    n, P = len(layer_list), state.mids.shape[1]
    with torch.no_grad():
        w_bar = state.acts[layer_list]  # [n, P, H]
        dtype, device = w_bar.dtype, w_bar.device
        a = row_alphas.to(device=device, dtype=dtype)[:, None]  # [r, 1]
        entries = []  # per layer: the rows' residual stream after the FFN of their entry layer, [P, r, d]
        for i, l in enumerate(layer_list):
            out_0 = adapter.ffn_out(l, torch.zeros_like(w_bar[i]))  # the bias, or zeros: [P, d]
            out_1 = adapter.ffn_out(l, w_bar[i])
            entries.append(state.mids[l][:, None, :] + out_0[:, None, :] + a * (out_1 - out_0)[:, None, :])
        weight = row_weights.to(device=device, dtype=dtype)[:, None]  # [r, 1]: c_k, 0 on the extra rows
        leaf = torch.zeros(n, P, 1, adapter.d_model, device=device, dtype=dtype)

    with torch.enable_grad():
        leaf.requires_grad_(True)
        per_layer = leaf.unbind(0)  # views; their gradients come back as one stack
        prob = _run_rows(adapter, state, layer_list, lambda i, l: entries[i] + per_layer[i] * weight, targets, buffer)
        (grad_x,) = torch.autograd.grad(prob.sum(), leaf)  # [n, P, 1, d]: sum_k c_k dP/dx
    scores = torch.empty(P, n, adapter.n_neurons)
    with torch.enable_grad():
        for i, l in enumerate(layer_list):  # J_l^T, through the FFN output projection itself
            w = w_bar[i].clone().requires_grad_(True)
            (grad_w,) = torch.autograd.grad(adapter.ffn_out(l, w), w, grad_outputs=grad_x[i, :, 0])
            scores[:, i] = (w_bar[i].float() * grad_w.float()).cpu()
    return scores, prob.detach()


def _row_gradients(adapter, state, targets: torch.Tensor, layer_list: list[int], neuron: str, q_bar: torch.Tensor,
                   row_alphas: torch.Tensor, row_weights: torch.Tensor | None, buffer):
    """Each (layer, alpha) row with its own leaf q = alpha * q_bar on the attributed quantity, entering as
    mid_l + ffn_out(f(q)) (f: identity for "ffn_out_input"; for "pre_activation" the activation times up, with up
    from the natural normed FFN input); one backward.

    q_bar: [n, P, H]; row_alphas: [r]; row_weights: [r] or None (all 1). Returns (grad [n, P, r, H] = c_k * dP/dq at
    each row, prob [P, n, r]), in the compute dtype on the device."""
    with torch.no_grad():
        leaf = row_alphas.to(device=q_bar.device, dtype=q_bar.dtype)[None, None, :, None] * q_bar[:, :, None, :]
        x_normed = None
        if neuron == "pre_activation":  # [P, 1, d] per layer: broadcasts over the rows in ffn_from_pre
            x_normed = [adapter.ffn_norm(l, state.mids[l])[:, None, :] for l in layer_list]

    with torch.enable_grad():
        leaf.requires_grad_(True)
        per_layer = leaf.unbind(0)

        def entry(i, l):
            q = per_layer[i]
            w = q if x_normed is None else adapter.ffn_from_pre(l, q, x_normed[i])
            return state.mids[l][:, None, :] + adapter.ffn_out(l, w)

        prob = _run_rows(adapter, state, layer_list, entry, targets, buffer)
        objective = prob.sum() if row_weights is None else (prob * row_weights.to(prob)).sum()
        (grad,) = torch.autograd.grad(objective, leaf)
    return grad, prob.detach()


def _fast_group(adapter, prompts: list[torch.Tensor], targets: torch.Tensor, steps: int, rule: str,
                layer_list: list[int], buffer: torch.Tensor | None, neuron: str = "ffn_out_input"):
    """A group of P prompts at once. prompts: P [seq] LongTensors; targets: [P].

    Returns (scores [P, n, H], p_full [P, n], p_zero [P, n]) float32, n = len(layer_list). The affine shortcut
    (_affine_group) where it holds, else one leaf per row (_row_gradients)."""
    row_alphas, row_weights = _row_alphas(steps, rule)
    with torch.no_grad():
        state = adapter.last_token_state(prompts)
    if neuron == "ffn_out_input" and adapter.ffn_out_affine:
        scores, prob = _affine_group(adapter, state, targets, layer_list, row_alphas, row_weights, buffer)
    else:
        with torch.no_grad():
            q_bar = _natural_quantity(adapter, state, layer_list, neuron)
        grad, prob = _row_gradients(adapter, state, targets, layer_list, neuron, q_bar, row_alphas, row_weights, buffer)
        scores = (q_bar.float() * grad.float().sum(2)).transpose(0, 1).cpu()  # [P, n, H]
    prob = prob.float()
    return scores, prob[:, :, -1], prob[:, :, 0]


def integrated_gradients(loaded, input_ids, target_ids, *, steps: int = 20, rule: str = "right",
                         dtype: torch.dtype = torch.float32, layers: Sequence[int] | None = None,
                         progress: bool = False, batch_prompts: int | None = None,
                         neuron: str = "ffn_out_input") -> IGResult:
    """Integrated gradients over every FFN neuron, fast: same results as ``reference_integrated_gradients``.

    loaded: kn.core.models.LoadedModel. Families with the adapters' last-token methods (GPT-2, Llama / Qwen2 / Mistral,
        Gemma 3) take the fast path on the model's device; others fall back to the reference.
    input_ids: list of [seq] LongTensors (or int lists), or one [seq] / [prompt, seq] LongTensor; prompts may differ
        in length; seq >= 1.
    target_ids: [prompt] LongTensor or list of ints.
    steps: m; rule: "right" (alpha = 1/m..1), "left" (alpha = 0..(m-1)/m) or "gauss_legendre" (see ``quadrature``).
    dtype: compute dtype: torch.float32 (default), or torch.bfloat16 / torch.float16 by autocast (matrix products in
        that dtype, norms, softmax and the residual stream in float32; on CPUs without native bfloat16 it is ~40x
        slower than float32); a float32 run of a bfloat16 model uses a float32 copy of it, cached while the model
        lives. Results are float32 whatever the compute dtype.
    layers: layer indices to attribute (default all); the result's layer axis follows them in increasing order.
    progress: a tqdm bar over prompt groups.
    batch_prompts: prompts per batch (default 2 on CPU, 8 on CUDA); their prefixes are padded and masked. On the
        2-core CPU, 2 prompts per batch are ~12% faster per prompt than 1 and 4 no faster than 2.
    neuron: "ffn_out_input" (the papers' neurons, default) or "pre_activation" (the forks'); see the module docstring.
    Returns IGResult: scores [prompt, layer, neuron], p_full / p_zero [prompt, layer], target_ids [prompt].

    Work: r rows per layer (the m nodes, plus alpha 0 for P(0) and / or alpha 1 for P(q_bar) where the rule lacks
    them: r = m + 1, or m + 2 for Gauss-Legendre), m*L*(L+1)/2 last-token row-layers, one LM head + softmax over all
    rows, one backward. See ``ig_flops``."""
    if isinstance(dtype, str):

        dtype = torch_dtype(dtype)
    _check_neuron(neuron)
    if not loaded.adapter.supports_last_token:
        return reference_integrated_gradients(loaded, input_ids, target_ids, steps=steps, rule=rule, layers=layers,
                                              progress=progress, neuron=neuron)
    r = _row_alphas(steps, rule)[0].numel()  # validates steps and rule
    adapter, context = _compute_in(loaded, dtype)
    device = loaded.device
    prompts = _prompts(input_ids, device)
    targets = _targets(target_ids, len(prompts))
    _check_vocab(adapter, targets)
    layer_list = _layers(layers, adapter.n_layers)
    if batch_prompts is None:
        batch_prompts = 8 if device.type == "cuda" else 2
    batch_prompts = max(1, int(batch_prompts))

    scores = torch.zeros(len(prompts), len(layer_list), adapter.n_neurons)
    p_full = torch.zeros(len(prompts), len(layer_list))
    p_zero = torch.zeros(len(prompts), len(layer_list))
    buffer = _head_buffer(adapter, min(batch_prompts, len(prompts)) * len(layer_list) * r, dtype)
    starts = range(0, len(prompts), batch_prompts)
    for start in _progress(starts, progress, "IG"):
        group = slice(start, start + batch_prompts)
        with context:
            s, pf, pz = _fast_group(adapter, prompts[group], targets[group], int(steps), rule, layer_list, buffer,
                                    neuron)
        scores[group], p_full[group], p_zero[group] = s.cpu(), pf.cpu(), pz.cpu()
    return IGResult(scores, p_full, p_zero, targets, int(steps), rule, layer_list, neuron)


def integrand(loaded, input_ids, target_id: int, alphas, *, layers: Sequence[int] | None = None,
              neuron: str = "ffn_out_input", batch_rows: int | None = None) -> IntegrandResult:
    """The integrand dP/dq at any alphas for ONE prompt, fast: the kernel's last-token rows, one leaf per row.

    input_ids: one [seq] LongTensor or int list; target_id: int; alphas: [n] floats (any values, usually in [0, 1];
        repeats allowed). layers: as in integrated_gradients; neuron: one of NEURON_DEFINITIONS.
    batch_rows: at most this many (layer, alpha) rows per forward + backward (default 1024 on CPU, 4096 on CUDA):
        the alphas go in chunks of max(1, batch_rows // n_layers), and only the returned gradients accumulate, so
        thousands of alphas fit (SmolLM2-135M, 2,001 alphas: a [2001, 30, 1536] float32 result, 370 MB, plus one
        chunk's activations and its [batch_rows, vocab] float32 logits).
    Returns IntegrandResult (grads [n_alpha, layer, neuron], q_bar [layer, neuron], p [n_alpha, layer]) on the CPU;
    q_bar * (weights[:, None, None] * grads).sum(0) is any quadrature's scores. Computes in the model's dtype.
    Families without the last-token methods fall back to ``reference_integrand``."""
    _check_neuron(neuron)
    if not loaded.adapter.supports_last_token:
        return reference_integrand(loaded, input_ids, target_id, alphas, layers=layers, neuron=neuron)
    adapter, device = loaded.adapter, loaded.device
    ids = _one_prompt(input_ids, device)
    a = _integrand_alphas(alphas)
    targets = _targets([int(target_id)], 1)
    _check_vocab(adapter, targets)
    layer_list = _layers(layers, adapter.n_layers)
    n = len(layer_list)
    if batch_rows is None:
        batch_rows = 4096 if device.type == "cuda" else 1024
    chunk = max(1, int(batch_rows) // n)

    with torch.no_grad():
        state = adapter.last_token_state([ids])
        q_bar = _natural_quantity(adapter, state, layer_list, neuron)  # [n, 1, H]
    buffer = _head_buffer(adapter, min(chunk, a.numel()) * n, next(loaded.model.parameters()).dtype)
    grads = torch.empty(a.numel(), n, adapter.n_neurons)
    p = torch.empty(a.numel(), n)
    for start in range(0, a.numel(), chunk):
        part = slice(start, start + chunk)
        grad, prob = _row_gradients(adapter, state, targets, layer_list, neuron, q_bar, a[part], None, buffer)
        grads[part] = grad[:, 0].transpose(0, 1).float().cpu()  # [n, c, H] -> [c, n, H]
        p[part] = prob[0].T.float().cpu()
    return IntegrandResult(grads, q_bar[:, 0].float().cpu(), p, a, layer_list, int(target_id), neuron)


def ig_flops(n_layers: int, d_model: int, n_neurons: int, vocab: int, *, steps: int = 20, seq: int = 1,
             q_dim: int | None = None, kv_dim: int | None = None, gated: bool = True, rule: str = "right") -> float:
    """FLOPs of ``integrated_gradients`` for one prompt of ``seq`` tokens, all layers: matrix products only (2 per
    multiply-add); norms, activations, the softmax and other elementwise work are left out.

    Per last-token row and layer: attention projections 2*d*(2*q_dim + 2*kv_dim) (q and o: q_dim wide; k and v:
    kv_dim), attention scores and values over the prefix and itself 4*q_dim*seq, FFN 2*d*H*(3 if gated else 2):
    call it C. A batch of r rows per layer, entering at their layer (output projection there, 2*H*d), running through
    the later layers (L*(L-1)/2 row-layers per alpha) and the LM head (2*d*vocab):
        F(r) = r * (L*2*H*d + L*(L-1)/2 * C + L*2*d*vocab).
    The kernel runs r = steps + 1 rows per layer (the extra row gives P(0), or P(w_bar) under "left"; r = steps + 2
    under "gauss_legendre", whose nodes include neither end), forward and backward; the backward computes input
    gradients only (no weight gradients), as many FLOPs as the forward. The no-grad pass over the prompt (seq tokens,
    no LM head) adds about seq * L * C. The per-row gradient path (pre_activation neurons, Gemma 3) adds the
    pre-activation's up projection per layer and a VJP through ffn_out per row: counted with the row's output
    projection above, it is a small part.
    Total: 2 F(r) + seq * L * C. SmolLM2-135M, steps 20, 5 tokens: ~204 GFLOP, 72 of them in the LM head."""
    q_dim = d_model if q_dim is None else q_dim
    kv_dim = d_model if kv_dim is None else kv_dim
    L, d, H = n_layers, d_model, n_neurons
    per_layer = 2 * d * (2 * q_dim + 2 * kv_dim) + 4 * q_dim * seq + 2 * d * H * (3 if gated else 2)
    r = _row_alphas(steps, rule)[0].numel()
    forward = r * (L * 2 * H * d + L * (L - 1) / 2 * per_layer + L * 2 * d * vocab)
    return 2 * forward + seq * L * per_layer


def model_flops(loaded, *, steps: int = 20, seq: int = 1, rule: str = "right") -> float:
    """``ig_flops`` with the sizes of ``loaded`` (a kn.core.models.LoadedModel)."""
    cfg, adapter = loaded.adapter.config, loaded.adapter
    heads = getattr(cfg, "num_attention_heads", None) or cfg.n_head
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or adapter.d_model // heads
    return ig_flops(adapter.n_layers, adapter.d_model, adapter.n_neurons, adapter.lm_head().weight.shape[0],
                    steps=steps, seq=seq, q_dim=heads * head_dim, kv_dim=kv_heads * head_dim,
                    gated=adapter.family != "gpt2", rule=rule)
