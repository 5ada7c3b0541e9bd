"""kn.book.findings.attribution: chapter 2's findings (throughput, an example prompt, coarse-set sizes) and its summary.

API
    attribution_summary(params, stats, store, table, prompts, seconds) -> AttributionSummary
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kn.book.summaries import AttributionSummary, Claim

# --------------------------------------------------------------------------- chapter 2


def throughput_table(stats: dict, prompts: pd.DataFrame, store, table: pd.DataFrame) -> pd.DataFrame:
    """What chapter 2 scored and how fast: one column, readable rows."""
    keys = set(store.keys_for(prompts))
    values = {
        "prompt rows of the run": len(prompts),
        "distinct prompts and answers (scored once each)": len(keys),
        "stored now": int(table["key"].isin(keys).sum()),
        "computed in this execution": stats["computed"],
        "already stored before": stats["already_stored"],
    }
    last = _last_computation(stats, store)
    values |= {"seconds per prompt when computed (first call excluded)": last["seconds_per_prompt"],
               "prompts scored in that execution": last["computed"], "torch threads": last["threads"],
               "prompts per kernel call": last["batch_prompts"]}
    return pd.DataFrame({"value": {k: f"{v:,}" if isinstance(v, int) else f"{v:.2f}" for k, v in values.items()}})


def _last_computation(stats: dict, store) -> dict:
    """The stats of the last execution that scored prompts (the store's compute log), else this execution's: an
    execution that found every score stored reports how fast they were made."""
    made = store.compute_log()
    return made[-1] if made else stats


def example_prompt(prompts: pd.DataFrame, table: pd.DataFrame, store) -> pd.Series:
    """The stored row (neuron_ids, neuron_scores, max_score, prompt) of the first prompt the model answers correctly,
    or the first prompt, with its answer."""
    known = prompts[prompts["correct"]]
    row = (known if len(known) else prompts).iloc[0]
    stored = table.set_index("key").loc[store.key(row["prompt"], row["target_id"])]
    return pd.concat([stored, pd.Series({"answer": row["answer"]})])


def attribution_summary(params, stats: dict, store, table: pd.DataFrame, prompts: pd.DataFrame,
                        seconds: float) -> AttributionSummary:
    last = _last_computation(stats, store)
    stats = {**stats, **{k: last[k] for k in ("seconds_per_prompt", "threads", "batch_prompts")}}
    keys = set(store.keys_for(prompts))
    mine = table[table["key"].isin(keys)]
    sizes = np.array([len(s) for s in store.coarse_sets(params.coarse_threshold, mine).values()])
    complete = store.completeness(mine)
    gap, delta = float(complete["mean_abs_gap"].mean()), float(complete["p_full_minus_p_zero"].abs().mean())
    claims = [
        Claim("completeness", f"Per layer, the scores sum to P(w) - P(0) within {gap:.2g} on average (the mean "
                              f"|P(w) - P(0)| is {delta:.2g}) with m = {params.ig_steps}, rule {params.ig_rule}.",
              None, gap < 0.25 * delta if delta > 0 else None),
        Claim("sizes", f"A prompt's coarse set (t = {params.coarse_threshold}) holds {sizes.mean():.1f} neurons on "
                       f"average (median {np.median(sizes):.0f}); {len(mine):,} distinct prompts are stored, "
                       f"{stats['seconds_per_prompt']:.2f} s per prompt here.", None, None),
    ]
    return AttributionSummary(
        prompts=len(prompts), stored=len(mine), computed_now=stats["computed"],
        seconds_per_prompt=float(stats["seconds_per_prompt"]), threads=int(stats["threads"]),
        batch_prompts=int(stats["batch_prompts"]), rule=params.ig_rule, steps=params.ig_steps, neuron=params.ig_neuron,
        mean_coarse_size=float(sizes.mean()), median_coarse_size=float(np.median(sizes)),
        completeness_mean_abs_gap=gap, completeness_mean_delta=delta, claims=claims, seconds=seconds)
