"""kn.methods.interventions: amplify or suppress knowledge neurons at the last prompt position (LAND Table 9, Dai Figs 4-5).

A neuron (l, i) is input i of layer l's FFN output projection; a neuron set is a frozenset of flat ids
``l * H + i`` (H = adapter.n_neurons), as in kn.base.neurons.

API
    scale_neurons(loaded, neuron_sets, factor, last_positions)      # context manager: forward pre-hooks
        neuron_sets: one frozenset for every row, or a list with one set per batch row
        last_positions: LongTensor [batch], each row's last real position (right padding)
    answer_probabilities(loaded, input_ids, target_ids, neuron_sets, factor, *, batch_size=32)
        -> (p_before [prompt], p_after [prompt]) float64
    change_rate(p_before, p_after) -> ndarray      # (after - before) / before; nan where before == 0
    (intervals: kn.base.stats)
    (batching: kn.core.scoring.length_batches and pad_right, shared with scoring and editing)

Batching: prompts are right-padded (so real tokens never attend to pads and each row's logits at its last real
position equal an unpadded forward) and sorted by length to keep padding small; results come back in the
caller's order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch

from kn.core.hooks import hooked
from kn.core.scoring import length_batches, pad_right

# --------------------------------------------------------------------------- scaling hooks


def _layer_masks(adapter, sets: list[frozenset], factor: float, dtype, device) -> dict[int, torch.Tensor]:
    """Per layer that any set touches: a [batch, H] tensor, ``factor`` at the rows' selected neurons, 1 elsewhere."""
    H, L = adapter.n_neurons, adapter.n_layers
    rows: dict[int, list[int]] = {}
    cols: dict[int, list[int]] = {}
    for r, s in enumerate(sets):
        for flat in s:
            layer, index = divmod(int(flat), H)
            if not 0 <= layer < L or flat < 0:
                raise IndexError(f"neuron id {flat} outside 0..{L * H - 1} (L={L}, H={H})")
            rows.setdefault(layer, []).append(r)
            cols.setdefault(layer, []).append(index)
    masks = {}
    for layer in sorted(rows):
        m = torch.ones(len(sets), H, dtype=dtype)
        m[torch.tensor(rows[layer]), torch.tensor(cols[layer])] = factor
        masks[layer] = m.to(device)
    return masks


@contextlib.contextmanager
def scale_neurons(loaded, neuron_sets, factor: float, last_positions):
    """Multiply the given neurons' activations by ``factor`` at each row's last real position, while inside.

    neuron_sets: a frozenset of flat ids applied to every row, or a list with one set per batch row.
    last_positions: [batch] LongTensor (or sequence) of each row's last real position; the forwards run inside the
    block must have exactly this batch size. One forward pre-hook per touched layer's FFN output projection
    multiplies its input at [row, last_positions[row], :] by a per-layer [batch, H] mask (built once here);
    every other position is left untouched. Hooks are removed on exit, also when the block raises.

    factor == 1 or no neurons at all registers nothing, so the model is bitwise unchanged; rows whose set misses
    a hooked layer are multiplied by exactly 1.0 there, which is exact in IEEE arithmetic."""
    adapter = loaded.adapter
    last = torch.as_tensor(last_positions, dtype=torch.long).reshape(-1)
    batch = last.numel()
    if isinstance(neuron_sets, (set, frozenset)):
        sets = [frozenset(neuron_sets)] * batch
    else:
        sets = [frozenset(s) for s in neuron_sets]
        if len(sets) != batch:
            raise ValueError(f"{len(sets)} neuron sets for a batch of {batch} last positions")
    pre = []
    if float(factor) != 1.0 and any(sets):
        weight = adapter.ffn_out_proj(0).weight
        masks = _layer_masks(adapter, sets, float(factor), weight.dtype, weight.device)
        rows = torch.arange(batch, device=weight.device)
        last_dev = last.to(weight.device)
        pre = [(adapter.ffn_out_proj(layer), _make_hook(mask, rows, last_dev, layer)) for layer, mask in masks.items()]
    with hooked(pre=pre):
        yield


def _make_hook(mask: torch.Tensor, rows: torch.Tensor, last: torch.Tensor, layer: int):
    def hook(module, args):
        x = args[0]
        if x.dim() != 3 or x.shape[0] != mask.shape[0]:
            raise ValueError(f"scale_neurons (layer {layer}): expected input [batch={mask.shape[0]}, seq, H], "
                             f"got {tuple(x.shape)}")
        if int(last.max()) >= x.shape[1]:
            raise ValueError(f"scale_neurons (layer {layer}): last position {int(last.max())} outside a sequence "
                             f"of {x.shape[1]}")
        m = mask if mask.dtype == x.dtype else mask.to(x.dtype)
        x = x.clone()
        x[rows, last] = x[rows, last] * m
        return (x,) + tuple(args[1:])

    return hook


# --------------------------------------------------------------------------- probabilities


@torch.no_grad()
def answer_probabilities(loaded, input_ids: Sequence[torch.Tensor], target_ids, neuron_sets, factor: float, *,
                         batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Probability of each prompt's target token before and with its neurons scaled by ``factor``.

    input_ids: list of [seq] LongTensors; target_ids: [prompt]; neuron_sets: list with one frozenset per prompt
    (a single frozenset is used for all). Probabilities are the float64 softmax of the logits at each prompt's
    last real position. Returns (p_before, p_after), float64 arrays [prompt] in the caller's order."""
    n = len(input_ids)
    targets = torch.as_tensor(np.asarray(target_ids, dtype=np.int64).reshape(-1))
    if targets.numel() != n:
        raise ValueError(f"{targets.numel()} targets for {n} prompts")
    if isinstance(neuron_sets, (set, frozenset)):
        neuron_sets = [frozenset(neuron_sets)] * n
    if len(neuron_sets) != n:
        raise ValueError(f"{len(neuron_sets)} neuron sets for {n} prompts")
    device = loaded.device
    before = np.zeros(n, dtype=np.float64)
    after = np.zeros(n, dtype=np.float64)
    for rows in length_batches(input_ids, batch_size):
        ids, mask, last = pad_right(input_ids, rows)
        ids, mask, last_d = ids.to(device), mask.to(device), last.to(device)
        ar = torch.arange(len(rows), device=device)
        tgt = targets[rows].to(device)[:, None]

        def p_target():
            logits = loaded.model(input_ids=ids, attention_mask=mask).logits[ar, last_d]
            return logits.double().softmax(-1).gather(1, tgt)[:, 0].cpu().numpy()

        before[rows] = p_target()
        with scale_neurons(loaded, [neuron_sets[i] for i in rows], factor, last):
            after[rows] = p_target()
    return before, after


# --------------------------------------------------------------------------- statistics


def change_rate(p_before, p_after) -> np.ndarray:
    """Relative change (after - before) / before, elementwise, float64. A before of 0 gives nan (undefined rate)."""
    b = np.asarray(p_before, dtype=np.float64)
    a = np.asarray(p_after, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = (a - b) / b
    return np.where(b == 0, np.nan, rate)
