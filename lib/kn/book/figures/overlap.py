"""kn.book.figures.overlap: chapter 3: Figure 1's overlap distributions, overlap against the coarse threshold, and the
neurons' layers.

API
    overlap_distributions(pairs, ratios)       chapter 3, Figure 1: Jaccard of paraphrase pairs; one set / the union
    threshold_overlap(sweep)                   chapter 3: R_so and R_uo against the coarse threshold t
    layer_shares(coarse_hist, refined_hist)    chapter 3: coarse and refined neurons by layer
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kn.base import paper
from kn.book.figures.axes import _done, _new, _percent_axis
from kn.book.figures.forest import _PAPER_MARKERS

# --------------------------------------------------------------------------- chapter 3


def overlap_distributions(pairs, ratios):
    """Chapter 3's Figure 1: the Jaccard of every pair of a test fact's paraphrases' coarse sets, and each prompt's
    set size over its fact's union, with LAND's reported values (R_so; N_s / N_u) marked."""
    pairs, ratios = np.asarray(pairs, float), np.asarray(ratios, float)
    fig, axes = _new(1, 2, figsize=(10, 3.2))
    t4 = paper.LAND_TABLE4
    references = ({f"LAND, {s.split(', ')[1]}": row["R_so"] for s, row in t4.iterrows()},
                  {f"LAND, {s.split(', ')[1]}": row["N_s"] / row["N_u"] for s, row in t4.iterrows()})
    for ax, values, label, marks in ((axes[0, 0], pairs, "Jaccard of two paraphrases' sets", references[0]),
                                     (axes[0, 1], ratios, "one prompt's set / the fact's union", references[1])):
        ax.hist(values, bins=25, range=(0, 1), color="C0", alpha=0.8)
        if len(values):
            ax.axvline(values.mean(), color="k", lw=1.5, label=f"our mean {values.mean():.1%}")
        for (source, value), style in zip(marks.items(), ("--", ":")):
            ax.axvline(value, color="C3", lw=1.2, ls=style, label=f"{source} {value:.1%}")
        ax.set(xlabel=label, ylabel="count", xlim=(0, 1))
        _percent_axis(ax)
        ax.legend(fontsize="small")
    fig.suptitle("Test facts: overlap of paraphrases' coarse sets")
    if not len(pairs):
        return _done(fig, "No test fact has two paraphrases with coarse sets here: there is nothing to draw.")
    below = float(np.mean(pairs < 0.5))
    caption = (f"{below:.0%} of the {len(pairs):,} pairs of paraphrases share less than half of their coarse neurons "
               f"(Jaccard below 0.5); the mean Jaccard is {pairs.mean():.1%} (LAND: "
               f"{t4['R_so'].iloc[0]:.1%} for GPT-2, {t4['R_so'].iloc[1]:.1%} for Llama-3.2-1B). One prompt's set "
               f"holds {ratios.mean():.1%} of its fact's union on average.")
    return _done(fig, caption)


def threshold_overlap(sweep: pd.DataFrame):
    """R_so and R_uo (test-fact means) against the coarse threshold t, with the set size N_s on a second panel;
    LAND's R_so at its thresholds (GPT-2 t = 0.3, Llama-3.2-1B t = 0.2) as markers."""
    sweep = sweep.sort_index()
    t = sweep.index.to_numpy(float)
    fig, axes = _new(1, 2, figsize=(10, 3.2))
    ax, size_ax = axes[0, 0], axes[0, 1]
    ax.plot(t, sweep["R_so"], "o-", label="R_so (two prompts' Jaccard)")
    ax.plot(t, sweep["R_uo"], "s-", label="R_uo (one set against the others' union)")
    for (source, row), threshold in zip(paper.LAND_TABLE4.iterrows(), (0.3, 0.2)):
        model = source.split(", ")[1]
        marker, colour = _PAPER_MARKERS[model]
        ax.plot([threshold], [row["R_so"]], marker, color=colour, ls="none",
                label=f"LAND's R_so, {model} (t = {threshold:g})")
    ax.set(title="Overlap against the coarse threshold", xlabel="t (fraction of the prompt's largest score)",
           ylabel="overlap, test facts",
           ylim=(0, max(0.6, float(np.nanmax(sweep[["R_so", "R_uo"]].to_numpy())) + 0.05)))
    _percent_axis(ax, "y")
    ax.legend(fontsize="small")
    size_ax.plot(t, sweep["N_s"], "o-", color="C2", label="N_s, one prompt's set")
    size_ax.plot(t, sweep["N_u"], "s--", color="C4", label="N_u, the fact's union")
    size_ax.set(title="Set sizes", xlabel="t (fraction of the prompt's largest score)", ylabel="neurons")
    size_ax.legend(fontsize="small")
    lo, hi = sweep.iloc[0], sweep.iloc[-1]
    peak = sweep["R_so"].idxmax()
    caption = (f"From t = {t[0]:g} to t = {t[-1]:g} a prompt's coarse set shrinks from {lo['N_s']:.1f} to "
               f"{hi['N_s']:.1f} neurons and R_so moves from {lo['R_so']:.1%} to {hi['R_so']:.1%}; its highest value, "
               f"{sweep.loc[peak, 'R_so']:.1%} at t = {peak:g}, is "
               + ("below half: at no threshold do two paraphrases share most of their neurons."
                  if sweep["R_so"].max() < 0.5 else "half or more: at that threshold paraphrases share most neurons."))
    return _done(fig, caption)


def layer_shares(coarse_hist, refined_hist):
    """The share of coarse and of refined neurons in each layer."""
    coarse_hist, refined_hist = np.asarray(coarse_hist, float), np.asarray(refined_hist, float)
    layers = np.arange(len(coarse_hist))
    coarse = coarse_hist / max(coarse_hist.sum(), 1)
    refined = refined_hist / max(refined_hist.sum(), 1)
    fig, axes = _new(figsize=(9, 3))
    ax = axes[0, 0]
    ax.bar(layers - 0.2, coarse, 0.4, label=f"coarse ({int(coarse_hist.sum()):,} neurons)")
    ax.bar(layers + 0.2, refined, 0.4, label=f"refined ({int(refined_hist.sum()):,} neurons)")
    ax.set(title="Coarse and refined neurons by layer", xlabel="layer", ylabel="share of the neurons")
    _percent_axis(ax, "y")
    from matplotlib.ticker import MaxNLocator  # plotting only inside a chapter's kernel

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")

    def top(shares):
        order = np.argsort(-shares, kind="stable")[:3]
        return ", ".join(str(int(i)) for i in sorted(order)), float(shares[order].sum())

    (c_layers, c_share), (r_layers, r_share) = top(coarse), top(refined)
    if refined_hist.sum() == 0:
        return _done(fig, f"No refined neuron is left; the coarse neurons' three largest layers ({c_layers}) hold "
                          f"{c_share:.0%} of them.")
    caption = (f"The three layers holding most coarse neurons ({c_layers}) hold {c_share:.0%} of them; the three "
               f"holding most refined neurons ({r_layers}) hold {r_share:.0%} of those. "
               + ("Refining concentrates the neurons in fewer layers." if r_share > c_share + 0.05 else
                  "Refining spreads them no less than the coarse sets." if r_share < c_share - 0.05 else
                  "Refining leaves their spread across layers about as it was."))
    return _done(fig, caption)
