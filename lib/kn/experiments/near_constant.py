"""kn.experiments.near_constant: how much of a LAND read-out is the same for every input (chapter 4's near-constant test).

API
    generic_neurons(sets) -> frozenset             neurons in more than half of the given coarse sets
    near_constant_test(read, prompts, coarse, *, train, constant, seed) -> DataFrame [test fact]: generic_jaccard,
                                   constant_jaccard, across_other_relation, size
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from kn.base.neurons import jaccard
from kn.experiments.land_operating import _nanmean
from kn.methods import detectors


def generic_neurons(sets) -> frozenset:
    """The neurons in more than half of ``sets`` (an iterable of coarse sets, e.g. the train prompts'): what every
    input tends to carry, whatever its fact."""
    sets = list(sets)
    counts: dict = {}
    for s in sets:
        for i in s:
            counts[i] = counts.get(i, 0) + 1
    return frozenset(i for i, c in counts.items() if c > len(sets) / 2)


_GENERIC = "__generic_input__"


def near_constant_test(read: Callable, prompts: pd.DataFrame, coarse: dict, *, train: pd.DataFrame,
                       constant: frozenset, seed: int) -> pd.DataFrame:
    """How much of a detector's output is the same for every input.

    read: {prompt_id: coarse set} -> {prompt_id: set} (:func:`read_out`); prompts: the test prompts (columns
    prompt_id, fact_id, relation); train: the train prompts, whose coarse sets give the generic input (the neurons of
    :func:`generic_neurons`); constant: the constant set of the same size (kn.methods.counterexamples.top_k_constant_set).
    Per test fact, means over its prompts p (pairs of two empty sets skipped):
        generic_jaccard: Jaccard of read(p) and read(generic input), the output for an input that holds no fact;
        constant_jaccard: Jaccard of read(p) and ``constant``;
        across_other_relation: kn.methods.detectors.overlap_by_fact's, of the read sets;
        size: mean |read(p)|.
    A constant detector gives 1 in the first two columns (with the matching constant) and across_other_relation 1.
    Returns a DataFrame indexed by fact_id; attrs generic_input_size, generic_output_size, constant_size."""
    generic = generic_neurons(coarse[p] for p in train["prompt_id"])
    ids = prompts["prompt_id"].tolist()
    out = read({**{p: coarse[p] for p in ids}, _GENERIC: generic})
    generic_out = out.pop(_GENERIC)
    overlap = detectors.overlap_by_fact(prompts, out, seed=seed)
    per_fact: dict = {}
    for p, f in zip(prompts["prompt_id"], prompts["fact_id"]):
        per_fact.setdefault(f, []).append((jaccard(out[p], generic_out), jaccard(out[p], constant), len(out[p])))
    rows = {f: {"generic_jaccard": _nanmean([v[0] for v in values]),
                "constant_jaccard": _nanmean([v[1] for v in values]),
                "across_other_relation": float(overlap.loc[f, "across_other_relation"]),
                "size": float(np.mean([v[2] for v in values]))} for f, values in per_fact.items()}
    frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis("fact_id").sort_index(key=lambda i: i.astype(str))
    frame.attrs.update(generic_input_size=len(generic), generic_output_size=len(generic_out),
                       constant_size=len(constant))
    return frame
