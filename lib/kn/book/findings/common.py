"""kn.book.findings.common: what each chapter concludes from its own numbers: its summary record (kn.book.summaries) with its claims.

The chapters and the results page use these functions and nothing else to word a verdict, so a chapter's closing
paragraph and the results page always agree. Every comparison quotes an interval (kn.base.stats) and says "not
distinguishable here" when it covers zero; every threshold is the paper's own figure (kn.base.paper).

API
    interval_table(frame, columns, *, clusters=None, n_boot, seed) -> {column: Interval}   means over facts (rows),
        resampled by cluster (relations, merged where they share prompts), then fact
    clusters_for(frame, cluster_of) -> [cluster of each row's fact (the frame's index)]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kn.base.clustered import cluster_column
from kn.base.stats import Interval, bootstrap_mean, cluster_bootstrap_mean


def clusters_for(frame: pd.DataFrame, cluster_of: dict) -> np.ndarray:
    """The cluster of each row of a per-fact frame indexed by fact_id (``cluster_of``: {fact_id: cluster})."""
    return np.array([cluster_of[f] for f in frame.index], dtype=object)


def interval_table(frame: pd.DataFrame, columns, *, clusters=None, n_boot: int = 1000,
                   seed: int = 0) -> dict[str, Interval]:
    """{column: mean over the rows (facts) with its interval} for each of ``columns``: the two-stage cluster bootstrap
    over ``clusters`` (else the frame's cluster or relation column); the plain bootstrap over rows only for a frame
    that has neither (no clusters known)."""
    if clusters is None and ("cluster" in frame or "relation" in frame):
        clusters = cluster_column(frame).to_numpy()
    if clusters is None:
        return {c: bootstrap_mean(frame[c].to_numpy(float), n_boot=n_boot, seed=seed) for c in columns}
    return {c: cluster_bootstrap_mean(frame[c].to_numpy(float), clusters, n_boot=n_boot, seed=seed) for c in columns}


def _holds(interval: Interval, positive_is_claim: bool = True) -> bool | None:
    """True / False where the interval excludes 0 on the claimed / the other side, from two clusters or more; None
    (not distinguishable) otherwise."""
    if not interval.excludes_zero or not interval.decidable:
        return None
    return (interval.mean > 0) == positive_is_claim


# --------------------------------------------------------------------------- chapter 3

_T4 = ["N_s", "N_u", "N_so", "R_so", "N_uo", "R_uo", "R_uo_eq5"]


# --------------------------------------------------------------------------- chapters 5 and 6: the primary family

PRIMARY_FAMILY_5 = "chapter 5: amplification, log change of P(answer)"
PRIMARY_FAMILY_6 = "chapter 6: edit success"
