"""kn.book.figures.attribution: chapters 1, 2 and 2b: the data's templates and the model's accuracy, where single
prompts' coarse neurons sit, one prompt's scores, completeness per layer, coarse-set sizes, and the quadrature rules'
errors per layer with the integrand of the spikiest neuron. Every caption is computed from what is drawn.

API
    template_bars(counts, target)              chapter 1: templates per relation, PARAREL's and the project's
    accuracy_bars(accuracy, model)             chapter 1: top-1 accuracy per relation against all prompts
    coarse_layers(hist, threshold)             chapter 2: share of coarse neurons by layer
    example_scores(layer, index, scores, max_score, *, n_layers, n_neurons, prompt, answer)
                                               chapter 2: one prompt's stored neurons by (neuron, layer)
    completeness(complete)                     chapter 2: mean P(w) - P(0) against the mean sum of scores per layer
    coarse_sizes(sizes, threshold, n_total)    chapter 2: coarse-set sizes over prompts
    layer_errors(by_layer, paper_rule)         chapter 2b: median error per layer and rule (log axis)
    spiky_integrand(alphas, values, *, layer, neuron, prompt)   chapter 2b: one neuron's integrand over alpha
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kn.book.figures.axes import _done, _new, _percent_axis


def template_bars(counts: pd.DataFrame, target: int):
    """Templates per relation after adaptation: ``counts`` [relation] with columns kept (PARAREL's, [Y] last) and
    authored (the project's own); ``target`` = templates_per_relation."""
    fig, axes = _new(figsize=(10, 3))
    ax = axes[0, 0]
    counts[["kept", "authored"]].plot.bar(stacked=True, ax=ax, width=0.8)
    ax.axhline(target, color="k", lw=1, ls="--", label=f"templates_per_relation = {target}")
    ax.set(title="Templates per relation after adaptation", xlabel="relation", ylabel="templates (count)")
    ax.legend(fontsize="small")
    total = counts["kept"] + counts["authored"]
    reach = int((total >= target).sum())
    needed = counts[counts["authored"] > 0]
    share = float(counts["authored"].sum() / max(total.sum(), 1))
    caption = (f"{reach} of {len(counts)} relations reach {target} templates. "
               + (f"{len(needed)} relations needed paraphrases written for this project (orange), "
                  f"{share:.0%} of all templates; most: {needed['authored'].idxmax()} "
                  f"({int(needed['authored'].max())})." if len(needed) else
                  "Every template is PARAREL's; none had to be written for this project."))
    return _done(fig, caption)


def accuracy_bars(accuracy: pd.DataFrame, model: str):
    """Top-1 accuracy per relation (``accuracy`` [relation, plus "all"], column "top-1 accuracy", a fraction)."""
    fig, axes = _new(figsize=(10, 3))
    ax = axes[0, 0]
    per = accuracy.drop("all")["top-1 accuracy"]
    overall = float(accuracy.loc["all", "top-1 accuracy"])
    per.plot.bar(ax=ax, color="C2")
    ax.axhline(overall, color="k", lw=1, ls="--", label=f"all prompts {overall:.1%}")
    ax.set(title=f"{model}: the answer's first token is the top-1 prediction", xlabel="relation",
           ylabel="top-1 accuracy")
    _percent_axis(ax, "y")
    ax.legend(fontsize="small")
    above = int((per > overall).sum())
    caption = (f"Over all prompts the answer's first token is the model's top prediction {overall:.1%} of the time; "
               f"{above} of {len(per)} relations are above that, from {per.idxmin()} ({per.min():.1%}) to "
               f"{per.idxmax()} ({per.max():.1%}).")
    return _done(fig, caption)


def coarse_layers(hist, threshold: float):
    """The share of all coarse neurons (every prompt's coarse set pooled) in each layer."""
    hist = np.asarray(hist, float)
    share = hist / max(hist.sum(), 1)
    fig, axes = _new(figsize=(9, 3))
    ax = axes[0, 0]
    ax.bar(range(len(share)), share, color="C0")
    ax.set(title=f"Coarse neurons by layer (t = {threshold})", xlabel="layer", ylabel="share of coarse neurons")
    _percent_axis(ax, "y")
    if not hist.sum():
        return _done(fig, "No prompt has a coarse neuron here: there is nothing to draw.")
    top = [int(i) for i in np.argsort(share)[::-1][:3]]
    last_third = float(share[len(share) * 2 // 3:].sum())
    then = f", then layer{'s' if len(top) > 2 else ''} {' and '.join(map(str, top[1:]))}" if len(top) > 1 else ""
    caption = (f"The most coarse neurons sit in layer {top[0]} ({share[top[0]]:.1%}){then}; the last third of the "
               f"layers holds {last_third:.0%} of them.")
    return _done(fig, caption)


def example_scores(layer, index, scores, max_score: float, *, n_layers: int, n_neurons: int, prompt: str,
                   answer: str):
    """One prompt's stored neurons (flat positions split into ``layer`` and ``index``), coloured by score / largest."""
    relative = np.asarray(scores, float) / max_score if max_score else np.zeros(len(scores))
    fig, axes = _new(figsize=(9, 3.5))
    ax = axes[0, 0]
    points = ax.scatter(index, layer, c=relative, cmap="viridis", s=12, vmin=0, vmax=1)
    ax.set(xlim=(0, n_neurons), ylim=(-0.5, n_layers - 0.5), xlabel="neuron index", ylabel="layer",
           title=f"{prompt!r} -> {answer!r}")
    fig.colorbar(points, label="score / largest score")
    if not len(relative):
        return _done(fig, "No neuron of this prompt is stored: its largest score is not positive.")
    strong = int((relative > 0.5).sum())
    best = int(np.argmax(relative))
    caption = (f"{len(relative)} of the model's {n_layers * n_neurons:,} neurons are stored for this prompt; "
               f"{strong} score above half the largest, which sits in layer {int(np.asarray(layer)[best])} "
               f"(neuron {int(np.asarray(index)[best])}).")
    return _done(fig, caption)


def completeness(complete: pd.DataFrame):
    """Per layer: mean P(w) - P(0) and the mean sum of scores (``complete`` [layer] with columns
    p_full_minus_p_zero and sum_of_scores); IG's completeness says they are equal."""
    fig, axes = _new(figsize=(9, 3))
    ax = axes[0, 0]
    ax.plot(complete.index, complete["p_full_minus_p_zero"], "o-", label="mean P(w) - P(0)")
    ax.plot(complete.index, complete["sum_of_scores"], "x--", label="mean sum of scores")
    ax.set(title="Completeness per layer", xlabel="layer", ylabel="probability")
    ax.legend(fontsize="small")
    gap = (complete["sum_of_scores"] - complete["p_full_minus_p_zero"]).abs()
    scale = float(complete["p_full_minus_p_zero"].abs().max()) or 1.0
    worst = gap.idxmax()
    caption = (f"The mean sum of scores is within {gap.median() / scale:.1%} of the mean P(w) - P(0) on the median "
               f"layer (relative to the largest layer's); the largest gap is on layer {worst} "
               f"({gap.max() / scale:.1%}), where the quadrature integrates the layer's path worst.")
    return _done(fig, caption)


def coarse_sizes(sizes, threshold: float, n_total: int):
    """How many neurons each prompt's coarse set holds."""
    sizes = np.asarray(sizes, float)
    fig, axes = _new(figsize=(6, 3))
    ax = axes[0, 0]
    ax.hist(sizes, bins=30, color="C1")
    if len(sizes):
        ax.axvline(sizes.mean(), color="k", ls="--", label=f"mean {sizes.mean():.1f}")
        ax.legend(fontsize="small")
    ax.set(title="Coarse-set sizes", xlabel=f"neurons with score > {threshold} x largest (count)",
           ylabel="prompts (count)")
    if not len(sizes):
        return _done(fig, "No prompt is attributed here: there is nothing to draw.")
    large = float(np.mean(sizes > 2 * np.median(sizes)))
    caption = (f"A prompt's coarse set holds {np.median(sizes):.0f} neurons at the median (mean {sizes.mean():.1f}, "
               f"largest {sizes.max():.0f}) of the model's {n_total:,}; {large:.0%} of the prompts have sets more "
               f"than twice the median.")
    return _done(fig, caption)


def _decades(ax) -> None:
    """A log y axis labelled at powers of ten only (minor labels of a narrow range collide)."""
    from matplotlib.ticker import (  # plotting only inside a chapter's kernel
        LogLocator,
        NullFormatter,
    )

    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=8))
    ax.yaxis.set_minor_formatter(NullFormatter())


def layer_errors(by_layer: pd.DataFrame, paper_rule: str = "right, m = 20"):
    """Median (over prompts) of the largest error / the prompt's largest score, per layer (rows) and rule (columns,
    named "rule, m = ..."), on a log axis."""
    fig, axes = _new(figsize=(9, 3.2))
    ax = axes[0, 0]
    for column in by_layer.columns:
        style = dict(lw=2.5, color="C1") if column == paper_rule else dict(lw=1)
        ax.plot(by_layer.index, by_layer[column], marker="o", ms=3, label=column, **style)
    ax.set(yscale="log", title="Median error per layer against the reference", xlabel="layer",
           ylabel="largest error / largest score")
    _decades(ax)
    ax.legend(fontsize="x-small", ncols=2)
    if paper_rule not in by_layer:
        return _done(fig, f"The paper's rule ({paper_rule}) is not among the rules drawn.")
    paper = by_layer[paper_rule]
    finest = by_layer.columns[-1]
    caption = (f"The paper's rule ({paper_rule}, thick line) errs most on layer {paper.idxmax()} (median "
               f"{paper.max():.2g} of the prompt's largest score) and least on layer {paper.idxmin()} "
               f"({paper.min():.2g}); {finest} brings the worst layer to {by_layer[finest].max():.2g}.")
    return _done(fig, caption)


def spiky_integrand(alphas, values, *, layer: int, neuron: int, prompt: str):
    """One neuron's integrand q_bar * dP/dq(alpha q_bar) over alpha in [0, 1], alpha linear below 0.01."""
    alphas, values = np.asarray(alphas, float), np.asarray(values, float)
    fig, axes = _new(figsize=(9, 3))
    ax = axes[0, 0]
    ax.plot(alphas, values, lw=1)
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set(xlim=(0, 1), xlabel="alpha (linear below 0.01, logarithmic above)",
           ylabel="w x dP/dw at alpha w (probability)", title=f"Layer {layer}, neuron {neuron}: {prompt!r}")
    peak = int(np.argmax(np.abs(values)))
    area = np.abs(np.trapezoid(values, alphas)) or 1.0
    early = float(np.abs(np.trapezoid(values[alphas <= 0.05], alphas[alphas <= 0.05])) / area)
    caption = (f"The integrand peaks at alpha = {alphas[peak]:.3g} (value {values[peak]:.3g}); "
               f"{early:.0%} of its integral lies below alpha = 0.05, where a rule with m = 20 right points places "
               f"only one node.")
    return _done(fig, caption)
