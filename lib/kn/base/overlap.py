"""kn.base.overlap: LAND's overlap metrics (Sec. 3.3) over neuron sets: per fact, over pairs of facts, by layer.

API
    fact_overlap(sets) -> FactOverlap                  # LAND Sec. 3.3 metrics for one fact
    overlap_table(fact_sets) -> DataFrame (row per fact);  summarize_overlap(df) -> Series (means over facts)
    pair_intersections(refined, relation_of, n_pairs=10_000, seed=0) -> dict   # mean |A & B| intra/inter relation
    layer_histogram(sets, n_neurons, n_layers) -> ndarray [L]
    pair_jaccards(sets) -> ndarray [pairs];  union_ratios(sets) -> ndarray [prompts]   # Fig. 1 distributions
    fact_pair_intersections(refined, relation_of) -> DataFrame per fact: intra, inter (mean |A & B|)
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

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
