"""kn.book.figures.consistency: chapter 4: the consistency scores of the facts on half A of their templates (our reading
of Chen et al., kn.experiments.consistency_split), with the thresholds that class them.

API
    consistency_distributions(split) -> (fig, caption)   chapter 4: per score, the half-A scores of the test and the
        train facts, Otsu's threshold (fitted on the train facts) and the fixed ones marked
"""

from __future__ import annotations

import numpy as np

from kn.book.figures.axes import _done, _new
from kn.methods.consistency import CONSISTENCY_SCORES

_SCORE_WORDS = {"intersection_over_union": "intersection over union", "mean_pairwise_jaccard": "mean pairwise Jaccard"}


def _share(shares, score: str, rule: str, threshold: float | None = None):
    part = shares[(shares["score"] == score) & (shares["rule"] == rule)]
    if threshold is not None:
        part = part[np.isclose(part["threshold"], threshold)]
    return part.iloc[0] if len(part) else None


def consistency_distributions(split):
    """Chapter 4: one panel per consistency score, the histogram of the test facts' half-A scores (filled) and the train
    facts' (outline), Otsu's threshold on the train facts (solid) and the fixed thresholds (dotted). The caption reads
    the main score: how many test facts score 0, where Otsu's cut falls and the shares it and the fixed ones give."""
    scores, shares = split.scores, split.shares
    names = list(CONSISTENCY_SCORES)
    fig, axes = _new(1, len(names), figsize=(10, 3.2), sharey=False)
    bins = np.linspace(0.0, 1.0, 26)
    for ax, name in zip(axes[0], names):
        test = scores.loc[scores["split"] == "test", name].dropna().to_numpy(float)
        train = scores.loc[scores["split"] == "train", name].dropna().to_numpy(float)
        ax.hist(test, bins=bins, color="C0", alpha=0.7, label=f"test facts ({len(test)})")
        ax.hist(train, bins=bins, histtype="step", color="C1", lw=1.5, label=f"train facts ({len(train)})")
        marked = False
        for t in split.thresholds.loc[(split.thresholds["score"] == name) & (split.thresholds["rule"] == "fixed"),
                                      "threshold"]:
            ax.axvline(t, color="0.4", lw=1, ls=":", label=None if marked else "fixed thresholds")
            marked = True
        otsu = split.thresholds.loc[(split.thresholds["score"] == name) & (split.thresholds["rule"] == "otsu"),
                                    "threshold"]
        if len(otsu):
            ax.axvline(float(otsu.iloc[0]), color="C3", lw=1.5, label=f"Otsu on train facts: {otsu.iloc[0]:.3g}")
        words = _SCORE_WORDS.get(name, name)
        ax.set(xlim=(0, 1), xlabel=f"{words} of the half-A coarse sets", ylabel="facts",
               title=words + (" (main)" if name == split.score else ""))
        ax.legend(fontsize="small")
    fig.suptitle("Consistency of a fact's paraphrases (our reading of Chen et al.), half A of the templates")
    test = scores.loc[scores["split"] == "test", split.score].dropna()
    words = _SCORE_WORDS.get(split.score, split.score)
    if test.empty:
        return _done(fig, f"No test fact has two half-A prompts with coarse sets here: no {words} to draw.")
    zero = float((test == 0).mean())
    caption = (f"On {words}, {zero:.0%} of the {len(test)} test facts score exactly 0 on half A of their templates "
               f"(median {test.median():.3g}).")
    otsu = _share(shares, split.score, "otsu")
    if otsu is not None:
        below = test[test <= otsu["threshold"]]
        caption += (f" Otsu's threshold on the train facts, {otsu['threshold']:.3g}, classes "
                    f"{otsu['share'].format('{:.0%}')} of the test facts inconsistent"
                    + ("; every one of them scores 0, so the cut separates zero from non-zero." if len(below) and
                       (below == 0).all() else "."))
    fixed = shares[(shares["score"] == split.score) & (shares["rule"] == "fixed")].sort_values("threshold")
    if len(fixed):
        first, last = fixed.iloc[0], fixed.iloc[-1]
        caption += (f" At the fixed thresholds {first['threshold']:g} to {last['threshold']:g} the share runs from "
                    f"{first['share'].format('{:.0%}')} to {last['share'].format('{:.0%}')}.")
    caption += (" The rule is our reading of Chen et al., on coarse sets alone; they combine three localisation "
                "methods, so these shares are not comparable with theirs.")
    return _done(fig, caption)
