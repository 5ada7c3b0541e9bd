"""kn.attribution.reference: integrated gradients by their definition, one layer at a time with plain autograd on the
whole model: slow, and the yardstick the fast kernel (kn.attribution.kernel) is tested against.

API
    reference_integrated_gradients(loaded, input_ids, target_ids, *, steps=20, rule="right", layers=None,
                                   progress=False, neuron="ffn_out_input") -> IGResult   # the definition, slow
    reference_integrand(loaded, input_ids [seq], target_id, alphas [n], *, layers=None,
                        neuron="ffn_out_input") -> IntegrandResult                    # the same by the definition
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kn.attribution.common import (
    IGResult,
    IntegrandResult,
    _attributed_hooks,
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
from kn.core.hooks import hooked

# --------------------------------------------------------------------------------------------------------------
# reference: the definition
# --------------------------------------------------------------------------------------------------------------


def _reference_prompt(loaded, ids: torch.Tensor, target: int, layer_list: list[int], row_alphas: torch.Tensor,
                      neuron: str):
    """dP/dq at every alpha of ``row_alphas`` [r] and every layer of ``layer_list`` (n) for one prompt ids [seq], by
    the definition: per layer one batch of r copies of the whole sequence whose attributed quantity at the last
    position is alpha * q_bar (a leaf requiring grad, put in by a hook), one backward of the summed probabilities
    (the rows are independent: each row's gradient is its own).

    Returns (q_bar [n, H], grads [r, n, H], prob [r, n]), float32 on the CPU."""
    model, adapter = loaded.model, loaded.adapter
    n, r = len(layer_list), row_alphas.numel()
    q_bar: dict[int, torch.Tensor] = {}

    def grabber(l):
        def grab(x):
            q_bar[l] = x[0, -1].detach().clone()
        return grab

    with hooked(**_attributed_hooks(adapter, {l: grabber(l) for l in layer_list}, neuron)), torch.no_grad():
        model(input_ids=ids[None], use_cache=False)

    grads = torch.zeros(r, n, adapter.n_neurons)
    prob_out = torch.zeros(r, n)
    batch = ids[None].expand(r, -1)
    # All positions' logits, although only the last one's are used: with transformers' logits_to_keep=1 the
    # reference is ~1.6x faster but its float32 gradients are ~1e-4 off (the LM head's backward on the strided
    # slice hidden[:, -1:] loses precision in torch 2.13 on CPU), and the reference is the yardstick.
    for j, l in enumerate(layer_list):
        a = row_alphas.to(device=q_bar[l].device, dtype=q_bar[l].dtype)
        leaf = (a[:, None] * q_bar[l][None]).requires_grad_(True)  # [r, H]

        def put(x, leaf=leaf):
            return torch.cat([x[:, :-1], leaf[:, None].to(x.dtype)], dim=1)

        with hooked(**_attributed_hooks(adapter, {l: put}, neuron)), torch.enable_grad():
            logits = model(input_ids=batch, use_cache=False).logits[:, -1]
            prob = _target_prob(logits, target)  # [r]
            (grad,) = torch.autograd.grad(prob.sum(), leaf)
        grads[:, j] = grad.float().cpu()
        prob_out[:, j] = prob.detach().float().cpu()
    return torch.stack([q_bar[l].float().cpu() for l in layer_list]), grads, prob_out


def reference_integrated_gradients(loaded, input_ids, target_ids, *, steps: int = 20, rule: str = "right",
                                   layers: Sequence[int] | None = None, progress: bool = False,
                                   neuron: str = "ffn_out_input") -> IGResult:
    """Integrated gradients by the definition: for each prompt and layer, the whole model on the whole sequence.

    loaded: kn.core.models.LoadedModel (any family kn.core.adapters.base supports).
    input_ids: list of [seq] LongTensors (or int lists), or one [seq] / [prompt, seq] LongTensor; prompts may differ
        in length; seq >= 1.
    target_ids: [prompt] LongTensor or list of ints: the token whose probability at the last position is attributed.
    steps: m, the number of quadrature nodes; rule: one of RULES (see ``quadrature``).
    layers: layer indices to attribute (default all); the result's layer axis follows them in increasing order.
    neuron: one of NEURON_DEFINITIONS (see the module docstring).
    Returns IGResult (scores [prompt, layer, neuron] float32, p_full / p_zero [prompt, layer]).

    Per prompt and layer l: one batch of the rule's nodes plus alpha 0 and 1 (see _row_alphas), each a copy of the
    sequence whose layer-l quantity at the last position is alpha * q_bar (a leaf requiring grad, put in by a hook on
    the adapter's module); one backward; the weighted sum of the nodes' gradients."""
    _check_neuron(neuron)
    adapter = loaded.adapter
    prompts = _prompts(input_ids, loaded.device)
    targets = _targets(target_ids, len(prompts))
    layer_list = _layers(layers, adapter.n_layers)
    row_alphas, row_weights = _row_alphas(steps, rule)

    scores = torch.zeros(len(prompts), len(layer_list), adapter.n_neurons)
    p_full = torch.zeros(len(prompts), len(layer_list))
    p_zero = torch.zeros(len(prompts), len(layer_list))
    for p, ids in enumerate(_progress(prompts, progress, "reference IG")):
        q_bar, grads, prob = _reference_prompt(loaded, ids, int(targets[p]), layer_list, row_alphas, neuron)
        scores[p] = q_bar * (row_weights[:, None, None] * grads.double()).sum(0).float()
        p_zero[p], p_full[p] = prob[0], prob[-1]
    return IGResult(scores, p_full, p_zero, targets, int(steps), rule, layer_list, neuron)


def reference_integrand(loaded, input_ids, target_id: int, alphas, *, layers: Sequence[int] | None = None,
                        neuron: str = "ffn_out_input") -> IntegrandResult:
    """``integrand`` by the definition (the whole model per layer; one batch of len(alphas) copies of the prompt).

    input_ids: one [seq] LongTensor or int list; target_id: int; alphas: [n] (any values, usually in [0, 1])."""
    _check_neuron(neuron)
    ids = _one_prompt(input_ids, loaded.device)
    a = _integrand_alphas(alphas)
    layer_list = _layers(layers, loaded.adapter.n_layers)
    q_bar, grads, prob = _reference_prompt(loaded, ids, int(target_id), layer_list, a, neuron)
    return IntegrandResult(grads, q_bar, prob, a, layer_list, int(target_id), neuron)
