"""kn.neurons: neuron sets, Knowledge-Neurons refining and LAND overlap metrics.

A neuron is (layer, index); a neuron *set* is a frozenset of flat ids ``layer * n_neurons + index``
(the row-major position in a [layer, neuron] score array).

API
    flat_id(layer, index, n_neurons) -> int;  layer_index(flat, n_neurons) -> (layer, index)
    to_flat_set(pairs, n_neurons) -> frozenset[int];  to_pairs(ids, n_neurons) -> sorted list[(layer, index)]
    coarse_set(scores [L, H], t) -> frozenset          # score > t * max(scores); empty if max <= 0
    coarse_set_sparse(flat_ids [k], values [k], max_score, t) -> frozenset   # same, from stored sparse scores
    refine_fact(sets, p) -> frozenset                  # neurons in more than a fraction p of the prompt sets
    refine_relation(fact_sets, p0=.7, step=.05, lo=2, hi=5) -> ({fact: set}, p_used)   # KN's adaptive p
    fact_overlap(sets) -> FactOverlap                  # LAND Sec. 3.3 metrics for one fact
    overlap_table(fact_sets) -> DataFrame (row per fact);  summarize_overlap(df) -> Series (means over facts)
    pair_intersections(refined, relation_of, n_pairs=10_000, seed=0) -> dict   # mean |A & B| intra/inter relation
    layer_histogram(sets, n_neurons, n_layers) -> ndarray [L]
    pair_jaccards(sets) -> ndarray [pairs];  union_ratios(sets) -> ndarray [prompts]   # Fig. 1 distributions
    (overlap across facts, the control of within-fact overlap: kn.detectors.overlap_by_fact)
    refine_relations(fact_sets, relation_of, *, p0, step, lo, hi) -> ({fact: refined set}, DataFrame per relation)
    fact_pair_intersections(refined, relation_of) -> DataFrame per fact: intra, inter (mean |A & B|)
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

NeuronSet = frozenset  # of int flat ids

__all__ = [
    "flat_id",
    "layer_index",
    "to_flat_set",
    "to_pairs",
    "coarse_set",
    "coarse_set_sparse",
    "refine_fact",
    "refine_relation",
    "FactOverlap",
    "fact_overlap",
    "overlap_table",
    "summarize_overlap",
    "pair_intersections",
    "layer_histogram",
    "pair_jaccards",
    "union_ratios",
    "refine_relations",
    "fact_pair_intersections",
]


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


# --------------------------------------------------------------------------- LAND overlap metrics


@dataclass(frozen=True)
class FactOverlap:
    """LAND (Sec. 3.3) overlap metrics of one fact with prompt sets A_1..A_n and union U.

    n_prompts: n.
    N_s: mean_i |A_i|.               N_u: |U|.
    N_so: mean over pairs i<j of |A_i & A_j|  (nan if n < 2).
    R_so: mean over pairs of Jaccard |A_i & A_j| / |A_i | A_j|; a pair of two empty sets has Jaccard
          nan and is skipped (nan if no pair has a non-empty union).
    N_uo: mean_i |A_i & U_-i|, U_-i the union of the fact's OTHER prompts' sets: how much of one prompt's set
          the other paraphrases also find (nan if n < 2). Overlap with U itself would be |A_i| = N_s by
          construction, so the paper's N_uo (21.88 against N_s 23.79 for GPT-2) cannot mean that.
    R_uo: mean_i |A_i & U_-i| / |U|, the Jaccard of A_i with U_-i (A_i | U_-i = U); nan if U is empty or n < 2.
    R_uo_eq5: N_s / N_u of this fact, the paper's Eq. 5 read per fact (nan if U is empty).
    Ratios are fractions in [0, 1], not percent.
    """

    n_prompts: int
    N_s: float
    N_u: int
    N_so: float
    R_so: float
    N_uo: float
    R_uo: float
    R_uo_eq5: float


def fact_overlap(sets: Sequence[frozenset]) -> FactOverlap:
    """Overlap metrics of one fact (see :class:`FactOverlap`).

    Args:
        sets: the fact's prompt sets A_1..A_n (frozensets of flat ids; empty sets allowed; n may be 0 or 1).
    """
    sets = [frozenset(s) for s in sets]
    n = len(sets)
    nan = float("nan")
    union = frozenset().union(*sets)
    n_u = len(union)
    sizes = [len(s) for s in sets]
    n_s = float(np.mean(sizes)) if n else nan
    inters, jaccards = [], []
    for i in range(n):
        for j in range(i + 1, n):
            inter = len(sets[i] & sets[j])
            uni = len(sets[i] | sets[j])
            inters.append(inter)
            if uni:
                jaccards.append(inter / uni)
    n_so = float(np.mean(inters)) if inters else nan
    r_so = float(np.mean(jaccards)) if jaccards else nan
    with_others = [len(s & frozenset().union(*(sets[:i] + sets[i + 1:]))) for i, s in enumerate(sets)]
    n_uo = float(np.mean(with_others)) if n >= 2 else nan
    r_uo = float(np.mean(with_others)) / n_u if (n >= 2 and n_u) else nan
    r_eq5 = n_s / n_u if (n and n_u) else nan
    return FactOverlap(n, n_s, n_u, n_so, r_so, n_uo, r_uo, r_eq5)


def overlap_table(fact_sets: Mapping[Hashable, Sequence[frozenset]]) -> pd.DataFrame:
    """One row of :class:`FactOverlap` metrics per fact.

    Args:
        fact_sets: {fact_id: list of prompt sets}.

    Returns a DataFrame indexed by fact id (index name ``"fact"``, dict order) with the FactOverlap
    fields as columns.
    """
    cols = [f.name for f in fields(FactOverlap)]
    rows = [asdict(fact_overlap(s)) for s in fact_sets.values()]
    df = pd.DataFrame(rows, columns=cols, index=pd.Index(list(fact_sets), name="fact"))
    df["n_prompts"] = df["n_prompts"].astype(int)
    df["N_u"] = df["N_u"].astype(int)
    return df


def summarize_overlap(df: pd.DataFrame) -> pd.Series:
    """Means over facts (nan-skipping) of every metric column of an :func:`overlap_table`.

    Returns a Series indexed by the FactOverlap field names (n_prompts is the mean prompt count),
    plus ``n_facts`` (number of rows) and ``R_uo_eq5_pooled`` = mean(N_s) / mean(N_u) over the facts with
    a non-empty union: the paper's Eq. 5 applied to the averaged N_s and N_u. R values are fractions.
    """
    cols = [f.name for f in fields(FactOverlap) if f.name in df.columns]
    out = df[cols].astype(float).mean(skipna=True)
    out["n_facts"] = float(len(df))
    ok = df[(df["N_u"] > 0) & df["N_s"].notna()]
    out["R_uo_eq5_pooled"] = float(ok["N_s"].mean() / ok["N_u"].mean()) if len(ok) else float("nan")
    return out


# --------------------------------------------------------------------------- intersections across facts


def pair_intersections(
    refined: Mapping[Hashable, frozenset],
    relation_of: Mapping[Hashable, str],
    *,
    n_pairs: int = 10_000,
    seed: int = 0,
) -> dict:
    """Mean |A & B| over pairs of distinct facts, within a relation ("intra") and across ("inter").

    Args:
        refined: {fact_id: refined neuron set}; every fact here must be in ``relation_of``.
        relation_of: {fact_id: relation name}.
        n_pairs: if a kind of pair (intra or inter) has at most n_pairs unordered pairs, all are
            enumerated; otherwise n_pairs pairs are drawn uniformly WITH replacement from all pairs of
            that kind, using ``numpy.random.default_rng(seed)`` (intra drawn first, then inter).
        seed: seed of the Generator.

    Sampling: facts are grouped by relation (relations in sorted order, facts in ``refined`` order).
    An intra pair picks a relation with weight C(n_r, 2) and then two distinct facts of it uniformly;
    an inter pair picks fact a with weight N - n_rel(a), then b uniformly among facts of other
    relations. Both are uniform over unordered pairs. Results are deterministic given seed and the
    iteration order of ``refined``.

    Returns {"intra": mean or nan, "inter": mean or nan, "n_intra": pairs used, "n_inter": pairs used,
    "intra_sampled": bool, "inter_sampled": bool, "n_intra_total": int, "n_inter_total": int}.
    """
    by_rel: dict[str, list] = {}
    for f in refined:
        by_rel.setdefault(relation_of[f], []).append(f)
    rels = sorted(by_rel)
    facts = [f for r in rels for f in by_rel[r]]
    sets = [refined[f] for f in facts]
    sizes = np.array([len(by_rel[r]) for r in rels], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    N = len(facts)
    intra_total = int((sizes * (sizes - 1) // 2).sum())
    inter_total = N * (N - 1) // 2 - intra_total
    rng = np.random.default_rng(seed)

    def mean_inter(pairs) -> float:
        vals = [len(sets[i] & sets[j]) for i, j in pairs]
        return float(np.mean(vals)) if vals else float("nan")

    # intra
    intra_sampled = intra_total > n_pairs
    if not intra_sampled:
        pairs = [
            (s + a, s + b)
            for s, n in zip(starts.tolist(), sizes.tolist())
            for a in range(n)
            for b in range(a + 1, n)
        ]
    else:
        w = (sizes * (sizes - 1) / 2).astype(float)
        r = rng.choice(len(rels), size=n_pairs, p=w / w.sum())
        n_r = sizes[r]
        i = rng.integers(0, n_r)
        j = rng.integers(0, n_r - 1)
        j = j + (j >= i)
        pairs = list(zip((starts[r] + i).tolist(), (starts[r] + j).tolist()))
    intra, n_intra = mean_inter(pairs), len(pairs)

    # inter
    inter_sampled = inter_total > n_pairs
    rel_idx = np.repeat(np.arange(len(rels)), sizes)
    if not inter_sampled:
        pairs = [(a, b) for a in range(N) for b in range(a + 1, N) if rel_idx[a] != rel_idx[b]]
    else:
        w = (N - sizes[rel_idx]).astype(float)
        a = rng.choice(N, size=n_pairs, p=w / w.sum())
        ra = rel_idx[a]
        u = rng.integers(0, N - sizes[ra])
        b = np.where(u < starts[ra], u, u + sizes[ra])
        pairs = list(zip(a.tolist(), b.tolist()))
    inter, n_inter = mean_inter(pairs), len(pairs)

    return {
        "intra": intra,
        "inter": inter,
        "n_intra": n_intra,
        "n_inter": n_inter,
        "intra_sampled": bool(intra_sampled),
        "inter_sampled": bool(inter_sampled),
        "n_intra_total": intra_total,
        "n_inter_total": inter_total,
    }


# --------------------------------------------------------------------------- layers


def layer_histogram(sets, n_neurons: int, n_layers: int) -> np.ndarray:
    """Neuron count per layer, summed over ``sets``.

    Args:
        sets: an iterable of neuron sets (frozensets of flat ids), or a single set.
        n_neurons: neurons per layer (H). n_layers: number of layers (L).

    Returns an int64 array [n_layers]; a neuron in k of the sets counts k times.
    Raises ValueError for ids outside [0, n_layers * n_neurons).
    """
    if isinstance(sets, (set, frozenset)):
        sets = [sets]
    ids = np.fromiter((f for s in sets for f in s), dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n_layers * n_neurons):
        raise ValueError("neuron id outside [0, n_layers * n_neurons)")
    return np.bincount(ids // n_neurons, minlength=n_layers).astype(np.int64)


def pair_jaccards(sets: Sequence[frozenset]) -> np.ndarray:
    """Jaccard |A & B| / |A | B| of every unordered pair of one fact's prompt sets: [n*(n-1)/2].

    Pairs of two empty sets are left out (their Jaccard is undefined), as in ``fact_overlap``'s R_so."""
    out = []
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            union = len(sets[i] | sets[j])
            if union:
                out.append(len(sets[i] & sets[j]) / union)
    return np.asarray(out, dtype=np.float64)


def union_ratios(sets: Sequence[frozenset]) -> np.ndarray:
    """|A_i| / |U| for each prompt set of one fact, U the union of all of them: [n]; empty when U is empty."""
    union = frozenset().union(*sets) if sets else frozenset()
    if not union:
        return np.zeros(0)
    return np.asarray([len(s) / len(union) for s in sets], dtype=np.float64)


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


def fact_pair_intersections(refined: Mapping[Hashable, frozenset], relation_of: Mapping[Hashable, str]) -> pd.DataFrame:
    """Per fact, the mean |A & B| with every other fact's refined set of the same relation (``intra``) and of other
    relations (``inter``); nan where there is no such fact. One row per fact (sorted), for a paired comparison of
    intra against inter over facts (Dai et al.'s Table 2 gives only the two means)."""
    facts = sorted(refined, key=str)
    rows = {}
    for f in facts:
        same = [len(refined[f] & refined[g]) for g in facts if g != f and relation_of[g] == relation_of[f]]
        other = [len(refined[f] & refined[g]) for g in facts if relation_of[g] != relation_of[f]]
        rows[f] = {"intra": float(np.mean(same)) if same else float("nan"),
                   "inter": float(np.mean(other)) if other else float("nan")}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["intra", "inter"]).rename_axis("fact")
