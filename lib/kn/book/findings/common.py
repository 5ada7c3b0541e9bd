"""kn.book.findings.common: what each chapter concludes from its own numbers: its summary record (kn.book.summaries) with its claims.

The chapters and the results page use these functions and nothing else to word a verdict, so a chapter's closing
paragraph and the results page always agree. Every comparison quotes an interval (kn.base.stats) and says "not
distinguishable here" when it covers zero; every threshold is the paper's own figure (kn.base.paper).

API
    interval_table(frame, columns, *, n_boot, seed) -> {column: Interval}   means over facts (rows)
"""

from __future__ import annotations

import pandas as pd

from kn.base.stats import Interval, bootstrap_mean


def interval_table(frame: pd.DataFrame, columns, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Interval]:
    """{column: mean over the rows (facts) with its bootstrap interval} for each of ``columns``."""
    return {c: bootstrap_mean(frame[c].to_numpy(float), n_boot=n_boot, seed=seed) for c in columns}


def _holds(interval: Interval, positive_is_claim: bool = True) -> bool | None:
    if not interval.excludes_zero:
        return None
    return (interval.mean > 0) == positive_is_claim


# --------------------------------------------------------------------------- chapter 3

_T4 = ["N_s", "N_u", "N_so", "R_so", "N_uo", "R_uo", "R_uo_eq5"]


# --------------------------------------------------------------------------- chapters 5 and 6: the primary family

PRIMARY_FAMILY_5 = "chapter 5: amplification, log change of P(answer)"
PRIMARY_FAMILY_6 = "chapter 6: edit success"
