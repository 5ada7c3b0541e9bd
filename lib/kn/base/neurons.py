"""kn.base.neurons: neuron sets, Knowledge-Neurons refining and LAND overlap metrics.

A neuron is (layer, index); a neuron *set* is a frozenset of flat ids ``layer * n_neurons + index``
(the row-major position in a [layer, neuron] score array).

API
    flat_id(layer, index, n_neurons) -> int;  layer_index(flat, n_neurons) -> (layer, index)
    to_flat_set(pairs, n_neurons) -> frozenset[int];  to_pairs(ids, n_neurons) -> sorted list[(layer, index)]
    coarse_set(scores [L, H], t) -> frozenset          # score > t * max(scores); empty if max <= 0
    coarse_set_sparse(flat_ids [k], values [k], max_score, t) -> frozenset   # same, from stored sparse scores
    refine_fact(sets, p) -> frozenset                  # neurons in more than a fraction p of the prompt sets
    refine_relation(fact_sets, p0=.7, step=.05, lo=2, hi=5) -> ({fact: set}, p_used)   # KN's adaptive p
    (overlap across facts, the control of within-fact overlap: kn.methods.detectors.overlap_by_fact)
    refine_relations(fact_sets, relation_of, *, p0, step, lo, hi) -> ({fact: refined set}, DataFrame per relation)
    matched_random(neurons_set, n_neurons, rng) -> frozenset   as many neurons per layer, drawn among the layer's others
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

NeuronSet = frozenset  # of int flat ids


# --------------------------------------------------------------------------- ids


def flat_id(layer: int, index: int, n_neurons: int) -> int:
    """Flat id of neuron ``index`` (0 <= index < n_neurons) in ``layer``: ``layer * n_neurons + index``."""
    if not 0 <= index < n_neurons:
        raise ValueError(f"neuron index {index} outside [0, {n_neurons})")
    return int(layer) * int(n_neurons) + int(index)


def layer_index(flat: int, n_neurons: int) -> tuple[int, int]:
    """Inverse of :func:`flat_id`: ``(layer, index)`` of flat id ``flat``."""
    layer, index = divmod(int(flat), int(n_neurons))
    return layer, index


def to_flat_set(pairs: Iterable[tuple[int, int]], n_neurons: int) -> frozenset:
    """Neuron set (frozenset of flat ids) from an iterable of ``(layer, index)`` pairs."""
    return frozenset(flat_id(l, i, n_neurons) for l, i in pairs)


def to_pairs(ids: Iterable[int], n_neurons: int) -> list[tuple[int, int]]:
    """Sorted list of ``(layer, index)`` pairs of the flat ids ``ids``."""
    return [layer_index(f, n_neurons) for f in sorted(ids)]


# --------------------------------------------------------------------------- coarse sets


def _is_tensor(x) -> bool:
    # torch is not imported here: if it was never imported, x cannot be a tensor
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _as_float64(x) -> np.ndarray:
    """numpy float64 copy of a torch tensor (any dtype, any device) or array-like."""
    if _is_tensor(x):
        x = x.detach().to("cpu", sys.modules["torch"].float64).numpy()
    return np.asarray(x, dtype=np.float64)


def coarse_set(scores, t: float) -> frozenset:
    """Coarse neuron set of one prompt: neurons with ``score > t * max(scores)`` (strict).

    Args:
        scores: integrated-gradients scores, torch tensor or array-like of shape [n_layers, n_neurons].
        t: threshold as a fraction of the prompt's maximum score (Dai et al. use 0.2).

    Returns the frozenset of flat ids ``layer * n_neurons + index``. If ``max(scores) <= 0`` (or the
    array is empty) the set is empty. Comparisons are made in float64, as in :func:`coarse_set_sparse`.
    """
    arr = _as_float64(scores)
    if arr.ndim != 2:
        raise ValueError(f"scores must be [layer, neuron], got shape {arr.shape}")
    if arr.size == 0:
        return frozenset()
    m = float(arr.max())
    if not m > 0:  # also catches nan
        return frozenset()
    thr = float(t) * m
    return frozenset(np.flatnonzero(arr.ravel() > thr).tolist())


def coarse_set_sparse(flat_ids, values, max_score: float, t: float) -> frozenset:
    """Coarse set from stored sparse scores of one prompt.

    Args:
        flat_ids: flat ids [k] of the stored neurons (those above some storage threshold t_s).
        values: their scores [k] (same order as ``flat_ids``).
        max_score: the prompt's maximum score over *all* neurons (the value ``coarse_set`` would use).
        t: threshold fraction.

    Equals ``coarse_set(dense, t)`` for every ``t >= t_s`` (given ``max_score`` is the dense maximum
    and the values are the dense values): neurons with ``value > t * max_score``; empty if
    ``max_score <= 0``.
    """
    if _is_tensor(flat_ids):
        flat_ids = flat_ids.detach().cpu().numpy()
    ids = np.asarray(flat_ids, dtype=np.int64).ravel()
    vals = _as_float64(values).ravel()
    if ids.shape != vals.shape:
        raise ValueError(f"flat_ids {ids.shape} and values {vals.shape} differ in length")
    m = float(_as_float64(max_score))
    if not m > 0 or ids.size == 0:
        return frozenset()
    thr = float(t) * m
    return frozenset(int(i) for i in ids[vals > thr])


# --------------------------------------------------------------------------- refining (Dai et al.)


def _threshold_count(p: float, n: int) -> float:
    # p * n rounded to 9 decimals so that float noise (0.29 * 100 = 28.999999999999996) cannot
    # turn "count > p * n" into a non-strict comparison at exact integers.
    return round(float(p) * n, 9)


def refine_fact(sets: Sequence[frozenset], p: float) -> frozenset:
    """Refined set of one fact: neurons present in MORE than a fraction ``p`` of its prompt sets.

    Args:
        sets: the fact's coarse prompt sets (list of frozensets of flat ids), n = len(sets).
        p: sharing fraction; a neuron is kept iff ``count > p * n`` (strict).

    An empty list gives the empty set. ``p >= 1`` always gives the empty set, ``p = 0`` the union.
    """
    n = len(sets)
    if n == 0:
        return frozenset()
    thr = _threshold_count(p, n)
    counts: dict[int, int] = {}
    for s in sets:
        for f in s:
            counts[f] = counts.get(f, 0) + 1
    return frozenset(f for f, c in counts.items() if c > thr)


def refine_relation(
    fact_sets: Mapping[Hashable, Sequence[frozenset]],
    p0: float = 0.7,
    step: float = 0.05,
    lo: float = 2.0,
    hi: float = 5.0,
    max_iter: int = 100,
    *,
    trace: list | None = None,
) -> tuple[dict, float]:
    """Knowledge-Neurons refining of one relation with the adaptive sharing fraction p.

    Args:
        fact_sets: {fact_id: list of coarse prompt sets} for the facts of ONE relation.
        p0: starting p. step: its increment. lo, hi: target interval for the mean refined set size.
        max_iter: at most this many values of p are evaluated.
        trace: if a list is given, ``(p, mean_size)`` is appended for every p evaluated.

    Returns ``({fact_id: refined set}, p_used)``.

    Rule (deterministic): p runs on the grid ``p0 + k * step`` (rounded to 10 decimals, so no drift).
    At each p the mean refined set size m over the facts is computed. If lo <= m <= hi, stop there.
    If m > hi the next p is p + step, if m < lo it is p - step. The search stops without success when
    the next p leaves [0, 1], when the direction reverses (oscillation: the interval lies between two
    neighbouring grid points), or after ``max_iter`` evaluations; then p_used is the evaluated p whose
    m is closest to [lo, hi] (distance lo - m or m - hi), ties going to the larger p, among the p that leave
    some set non-empty (m > 0): a p of 1.0 would empty every set of the relation, and refining must keep
    neurons to be of any use. Only when every evaluated p gives m = 0 is the closest of those returned.
    No facts: returns ``({}, p0)``.
    """
    if not fact_sets:
        return {}, float(p0)
    if step <= 0:
        raise ValueError("step must be > 0")
    keys = list(fact_sets)
    cache: dict[float, tuple[dict, float]] = {}

    def evaluate(p: float) -> tuple[dict, float]:
        if p not in cache:
            refined = {k: refine_fact(fact_sets[k], p) for k in keys}
            mean = float(np.mean([len(s) for s in refined.values()]))
            cache[p] = (refined, mean)
            if trace is not None:
                trace.append((p, mean))
        return cache[p]

    def distance(m: float) -> float:
        return lo - m if m < lo else (m - hi if m > hi else 0.0)

    k, direction = 0, 0
    for _ in range(max_iter):
        p = round(p0 + k * step, 10)
        refined, m = evaluate(p)
        if lo <= m <= hi:
            return refined, p
        new_dir = 1 if m > hi else -1
        if direction and new_dir != direction:
            break  # oscillation
        direction = new_dir
        nxt = round(p0 + (k + direction) * step, 10)
        if nxt < 0 or nxt > 1:
            break
        k += direction
    candidates = [q for q in cache if cache[q][1] > 0] or list(cache)
    best = min(candidates, key=lambda q: (distance(cache[q][1]), -q))
    return cache[best][0], best


# --------------------------------------------------------------------------- per relation and per fact


def refine_relations(fact_sets: Mapping[Hashable, Sequence[frozenset]], relation_of: Mapping[Hashable, str], *,
                     p0: float = 0.7, step: float = 0.05, lo: float = 2.0, hi: float = 5.0) -> tuple[dict, pd.DataFrame]:
    """Knowledge-Neurons refining of every relation (:func:`refine_relation` on each relation's facts).

    fact_sets: {fact_id: coarse sets of its prompts}; relation_of: {fact_id: relation}.
    Returns ({fact_id: refined set}, DataFrame indexed by relation with columns p (the sharing fraction used),
    facts, mean_size (mean refined set size) and in_range (lo <= mean_size <= hi))."""
    refined: dict = {}
    rows = {}
    for relation in sorted({relation_of[f] for f in fact_sets}):
        facts = {f: s for f, s in fact_sets.items() if relation_of[f] == relation}
        chosen, p = refine_relation(facts, p0=p0, step=step, lo=lo, hi=hi)
        refined.update(chosen)
        mean = float(np.mean([len(s) for s in chosen.values()]))
        rows[relation] = {"p": p, "facts": len(facts), "mean_size": mean, "in_range": bool(lo <= mean <= hi)}
    return refined, pd.DataFrame.from_dict(rows, orient="index").rename_axis("relation")


def jaccard(a, b) -> float:
    """|a & b| / |a | b| of two sets; nan when both are empty."""
    a, b = frozenset(a), frozenset(b)
    union = len(a | b)
    return len(a & b) / union if union else float("nan")


def matched_random(neurons_set: frozenset, n_neurons: int, rng: np.random.Generator) -> frozenset:
    """The random control of a set: in every layer, as many neurons as the set has there, drawn uniformly among that
    layer's neurons outside the set (among all of the layer's neurons when fewer than that lie outside). Effects grow
    with the number of neurons touched and differ by layer, so a control of the same size in other layers would not
    control for the set."""
    by_layer: dict[int, set] = {}
    for flat in neurons_set:
        layer, index = divmod(int(flat), n_neurons)
        by_layer.setdefault(layer, set()).add(index)
    out = []
    for layer in sorted(by_layer):
        taken = by_layer[layer]
        pool = np.setdiff1d(np.arange(n_neurons), np.fromiter(taken, dtype=np.int64))
        if len(pool) < len(taken):
            pool = np.arange(n_neurons)
        out.extend(layer * n_neurons + int(i) for i in rng.choice(pool, size=len(taken), replace=False))
    return frozenset(out)

