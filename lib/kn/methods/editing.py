"""kn.methods.editing: editing facts through knowledge neurons' value vectors (LAND Table 10; Dai et al. 2022 Sec. 5).

A neuron (l, i)'s value vector v is row i of ``adapter.value_vectors(l)`` (a view into the FFN output projection's
weight); e(t) = ``adapter.embedding_row(t)`` is token t's input embedding (tied with the output head in GPT-2,
SmolLM2, Llama-3.2-1B). Every edit is a context manager that restores the touched weights bit for bit on exit,
also when the block raises.

API
    update_fact(loaded, neurons, old_token, new_token, *, lambda1=2.0, lambda2=2.0, scaled=False)  # context manager
        v <- v - lambda1 * e(old) + lambda2 * e(new) for every neuron of the set; yields {flat id: (l1, l2)},
        the lambdas actually used (scaled=True: lambda * ||v|| / ||e(token)||, per neuron and per token)
    erase_neurons(loaded, neurons)                      # context manager: value vectors zeroed (relation erasing)
    most_common_neurons(sets, k) -> frozenset           # the k neurons in most sets; ties by smaller id
    top1_success(loaded, input_ids, new_token_ids, *, batch_size=32) -> ndarray[bool]
    token_nlls(loaded, input_ids, *, batch_size=16) -> list of float64 arrays [len - 1]  # -log p(token t | < t)
    perplexity(loaded, input_ids, *, batch_size=16) -> float   # exp(mean NLL over tokens 1..n-1 of all texts)
    weights_checksum(model) -> str                      # sha256 over every state_dict tensor's bytes, in order
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from kn.core.scoring import length_batches, pad_right

# --------------------------------------------------------------------------- exact, restorable row edits


def _group(adapter, neurons: Iterable[int]) -> dict[int, list[int]]:
    """{layer: sorted neuron indices} of a set of flat ids, validated."""
    H, L = adapter.n_neurons, adapter.n_layers
    by_layer: dict[int, list[int]] = {}
    for flat in sorted(int(f) for f in neurons):
        layer, index = divmod(flat, H)
        if flat < 0 or layer >= L:
            raise IndexError(f"neuron id {flat} outside 0..{L * H - 1} (L={L}, H={H})")
        by_layer.setdefault(layer, []).append(index)
    return by_layer


@contextlib.contextmanager
def _edit_rows(loaded, neurons, new_rows: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]):
    """Replace the value vectors of ``neurons`` by ``new_rows(layer, idx, original float32 rows [k, d])`` while
    inside; copies of the original rows are written back on exit (bitwise), also on exceptions."""
    adapter = loaded.adapter
    by_layer = _group(adapter, neurons)
    saved: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (view, idx, original rows)
    with torch.no_grad():
        for layer, indices in by_layer.items():
            view = adapter.value_vectors(layer)
            idx = torch.tensor(indices, dtype=torch.long, device=view.device)
            saved.append((view, idx, view[idx].clone()))  # advanced indexing: a copy
    try:
        with torch.no_grad():
            # compute every new row from the originals first, then write: no edit sees another's result
            updates = [(view, idx, new_rows(layer, idx, orig.float()).to(view.dtype))
                       for (view, idx, orig), layer in zip(saved, by_layer)]
            for view, idx, rows in updates:
                view[idx] = rows
        yield
    finally:
        with torch.no_grad():
            for view, idx, orig in saved:
                view[idx] = orig


def _shares_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


@contextlib.contextmanager
def update_fact(loaded, neurons, old_token: int, new_token: int, *, lambda1: float = 2.0, lambda2: float = 2.0,
                scaled: bool = False):
    """Dai et al.'s fact update while inside: each neuron's value vector v becomes
    ``v - lambda1 * e(old_token) + lambda2 * e(new_token)``.

    scaled=True (Dai et al.'s variant, whose embeddings and value vectors differ in norm): each lambda is multiplied,
    per neuron and per token, by ||v|| / ||e(token)||, i.e. v - lambda1 * ||v|| * e(old)/||e(old)|| +
    lambda2 * ||v|| * e(new)/||e(new)|| (||v|| of the original v). Arithmetic is float32 (cast back to the
    weight's dtype). Yields {flat id: (lambda1 used, lambda2 used)}. On exit the touched rows are restored exactly.
    Raises ValueError if an embedding row shares storage with an edited value vector (it would be edited too)."""
    adapter = loaded.adapter
    e_old_view = adapter.embedding_row(int(old_token))
    e_new_view = adapter.embedding_row(int(new_token))
    for layer in _group(adapter, neurons):
        vv = adapter.value_vectors(layer)
        if _shares_storage(e_old_view, vv) or _shares_storage(e_new_view, vv):
            raise ValueError(f"token embeddings share storage with layer {layer}'s value vectors: "
                             "an update would edit the embeddings too")
    e_old = e_old_view.detach().float().clone()
    e_new = e_new_view.detach().float().clone()
    H = adapter.n_neurons
    used: dict[int, tuple[float, float]] = {}

    def new_rows(layer: int, idx: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        eo, en = e_old.to(v.device), e_new.to(v.device)
        l1 = torch.full((v.shape[0], 1), float(lambda1), dtype=torch.float32, device=v.device)
        l2 = torch.full((v.shape[0], 1), float(lambda2), dtype=torch.float32, device=v.device)
        if scaled:
            norm_v = v.norm(dim=1, keepdim=True)
            l1 = l1 * norm_v / eo.norm()
            l2 = l2 * norm_v / en.norm()
        for i, a, b in zip(idx.tolist(), l1[:, 0].tolist(), l2[:, 0].tolist()):
            used[layer * H + i] = (a, b)
        return v - l1 * eo + l2 * en

    with _edit_rows(loaded, neurons, new_rows):
        yield used


@contextlib.contextmanager
def erase_neurons(loaded, neurons):
    """Zero the value vectors of ``neurons`` while inside (Dai et al.'s relation erasing, given the relation's
    most common neurons); restored exactly on exit, also on exceptions."""
    with _edit_rows(loaded, neurons, lambda layer, idx, v: torch.zeros_like(v)):
        yield


def most_common_neurons(sets: Iterable[Iterable[int]], k: int) -> frozenset:
    """The ``k`` neurons present in the most sets (ties broken by smaller flat id); fewer if fewer exist."""
    counts = Counter(int(n) for s in sets for n in set(s))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return frozenset(n for n, _ in ranked[: max(0, int(k))])


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def top1_success(loaded, input_ids: Sequence[torch.Tensor], new_token_ids, *, batch_size: int = 32) -> np.ndarray:
    """Whether each prompt's top-1 next token (argmax at its last real position) is its new target. [prompt] bool"""
    n = len(input_ids)
    targets = np.asarray(new_token_ids, dtype=np.int64).reshape(-1)
    if targets.size != n:
        raise ValueError(f"{targets.size} targets for {n} prompts")
    device = loaded.device
    top1 = np.zeros(n, dtype=np.int64)
    for rows in length_batches(input_ids, batch_size):
        ids, mask, last = pad_right(input_ids, rows)
        logits = loaded.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        top1[rows] = logits[torch.arange(len(rows), device=device), last.to(device)].argmax(-1).cpu().numpy()
    return top1 == targets


@torch.no_grad()
def token_nlls(loaded, input_ids: Sequence[torch.Tensor], *, batch_size: int = 16) -> list[np.ndarray]:
    """Per text, the negative log-likelihood of tokens 1..n-1 given their prefix: float64 arrays [n - 1]
    (empty for a one-token text). Right-padded batches; pads are neither predicted nor attended by real tokens."""
    device = loaded.device
    out: list[np.ndarray] = [np.zeros(0)] * len(input_ids)
    for rows in length_batches(input_ids, batch_size):
        ids, mask, _ = pad_right(input_ids, rows)
        ids_d = ids.to(device)
        logits = loaded.model(input_ids=ids_d, attention_mask=mask.to(device)).logits[:, :-1].float()
        nll = torch.logsumexp(logits, -1) - logits.gather(-1, ids_d[:, 1:, None])[..., 0]
        nll = nll.double().cpu().numpy()
        for r, i in enumerate(rows):
            out[i] = nll[r, : len(input_ids[i]) - 1].copy()
    return out


def perplexity(loaded, input_ids: Sequence[torch.Tensor], *, batch_size: int = 16) -> float:
    """exp of the mean next-token NLL over every predicted token (1..n-1) of all texts, pooled over texts."""
    nlls = token_nlls(loaded, input_ids, batch_size=batch_size)
    total = np.concatenate(nlls) if nlls else np.zeros(0)
    if total.size == 0:
        raise ValueError("perplexity needs at least one text of two or more tokens")
    return float(np.exp(total.mean()))


def weights_checksum(model: torch.nn.Module) -> str:
    """sha256 hex digest over every state_dict entry (name, dtype, shape, raw bytes) in state_dict order."""
    h = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        t = tensor.detach()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
