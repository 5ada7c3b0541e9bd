"""kn.attribution.common: what the kernel and the reference share: their results, input checks and the hooks that read a layer's neurons.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from kn.attribution.quadrature import quadrature

NEURON_DEFINITIONS = ("ffn_out_input", "pre_activation")


@dataclass
class IGResult:
    """Integrated-gradients scores for a batch of prompts.

    scores: float32 [prompt, layer, neuron]; Attr of each neuron (layer axis: ``layers``, all layers by default)
    p_full: float32 [prompt, layer]; P(q_bar), the target probability with the layer's natural activations
    p_zero: float32 [prompt, layer]; P(0), with the layer's attributed quantity at the last position set to zero
    target_ids: int64 [prompt]
    steps, rule: the quadrature used; layers: the layer index of each entry of the layer axis; neuron: which quantity.
    Completeness: scores.sum(-1) ~ p_full - p_zero as steps grows."""

    scores: torch.Tensor
    p_full: torch.Tensor
    p_zero: torch.Tensor
    target_ids: torch.Tensor
    steps: int
    rule: str
    layers: list[int] = field(default_factory=list)
    neuron: str = "ffn_out_input"


@dataclass
class IntegrandResult:
    """The integrand of integrated gradients at given alphas, for one prompt.

    grads: float32 [n_alpha, layer, neuron]; dP/dq_i with layer l's attributed quantity set to alpha * q_bar (the
        other layers natural)
    q_bar: float32 [layer, neuron]; the natural attributed quantity at the last position
    p: float32 [n_alpha, layer]; the target probability at each alpha
    alphas: float64 [n_alpha]; layers: the layer index of each entry of the layer axis; target_id; neuron.
    A rule's scores: q_bar * (weights[:, None, None] * grads).sum(0) with (alphas, weights) = quadrature(rule, m)."""

    grads: torch.Tensor
    q_bar: torch.Tensor
    p: torch.Tensor
    alphas: torch.Tensor
    layers: list[int]
    target_id: int
    neuron: str = "ffn_out_input"


def _check_neuron(neuron: str) -> None:
    if neuron not in NEURON_DEFINITIONS:
        raise ValueError(f"neuron {neuron!r}: use one of {NEURON_DEFINITIONS}")


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


def _one_prompt(input_ids, device) -> torch.Tensor:
    """One prompt: a [seq] LongTensor or int list (or a [1, seq] tensor)."""
    ids = torch.as_tensor(input_ids, dtype=torch.long, device=device)
    if ids.dim() == 2 and ids.shape[0] == 1:
        ids = ids[0]
    if ids.dim() != 1 or ids.numel() == 0:
        raise ValueError(f"input_ids: one non-empty prompt [seq] expected, got shape {tuple(ids.shape)}")
    return ids


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


def _integrand_alphas(values) -> torch.Tensor:
    a = torch.as_tensor(values, dtype=torch.float64).reshape(-1).cpu()
    if a.numel() == 0 or not bool(torch.isfinite(a).all()):
        raise ValueError("alphas: need at least one finite value")
    return a


def _target_prob(logits: torch.Tensor, target) -> torch.Tensor:  # the reference's: plain autograd
    """softmax(logits)[..., target] computed in float32 (float64 stays): [...]. target: an int, or a LongTensor
    [...] of one target per row."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    picked = logits[..., target] if isinstance(target, int) else logits.gather(-1, target[..., None])[..., 0]
    return torch.exp(picked - torch.logsumexp(logits, dim=-1))


def _progress(it, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm.auto import (
        tqdm,  # the bar's kind (notebook or terminal) is chosen when one is drawn
    )

    return tqdm(it, desc=desc)


def _row_alphas(steps: int, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The alphas of one layer's rows and their weights, float64 [r]: the rule's nodes, plus alpha 0 first and alpha 1
    last where the rule lacks them (weight 0: they give P(0) and P(q_bar) and are not part of the sum).

    "right": [0, 1/m, ..., 1] (r = m + 1); "left": [0, ..., (m-1)/m, 1] (r = m + 1); "gauss_legendre": [0, nodes,
    1] (r = m + 2). Row 0 is always alpha 0 and row r - 1 alpha 1."""
    a, w = quadrature(rule, steps)
    zero = a.new_zeros(1)
    if float(a[0]) != 0.0:
        a, w = torch.cat([zero, a]), torch.cat([zero, w])
    if float(a[-1]) != 1.0:
        a, w = torch.cat([a, zero + 1.0]), torch.cat([w, zero])
    return a, w


def _attributed_hooks(adapter, fns: dict, neuron: str) -> dict:
    """kn.core.hooks.hooked's arguments that apply fns[layer](x) to each layer's attributed quantity x [batch, seq, H] (fn
    returns a replacement for x, or None). "ffn_out_input": a forward pre-hook on ffn_out_proj (x its input);
    "pre_activation": a forward hook on pre_activation_module (x its output)."""
    if neuron == "ffn_out_input":
        def pre(fn):
            def hook(module, args):
                new = fn(args[0])
                return None if new is None else (new, *args[1:])
            return hook

        return {"pre": [(adapter.ffn_out_proj(l), pre(fn)) for l, fn in fns.items()]}
    return {"post": [(adapter.pre_activation_module(l), lambda module, args, out, fn=fn: fn(out))
                     for l, fn in fns.items()]}
