"""kn.figures: the book's figures, one function each, returning (fig, caption) with the caption computed from what the
figure draws, so that a caption cannot claim what its figure does not show. Where a number has an interval the figure
draws it, and where a paper reports the number the figure marks the paper's value (kn.paper).

API
  Figure data
    TrainingLosses(epochs, after, trivial)   chapter 4: per-epoch loss, the trained detector's loss on the train and
        the test prompts, and the losses of answers that ignore the prompt (kn.land's loss: MSE over all L x H elements)
    land_losses(study, prompts, coarse, *, max_prompts=5000) -> TrainingLosses   from what chapter 4 holds
        (kn.land_study.LandStudy and the training's own targets)
    relation_change(results, methods, *, n_boot, seed) -> DataFrame [(action, relation) x method] of kn.stats.Interval
        mean change rate on the Same prompt per relation, bootstrapped over the relation's facts
    land_paper_values(table) -> {"LAND, <model>": DataFrame [method x condition]}   LAND's Table 9 or 10, by model
    dai_paper_values(action) -> {"Dai et al., BERT-base": DataFrame}   Dai et al.'s average change (KN-refined, Same)
  Figures, each -> (matplotlib Figure, caption)
    overlap_distributions(pairs, ratios)       chapter 3, Figure 1: Jaccard of paraphrase pairs; one set / the union
    threshold_overlap(sweep)                   chapter 3: R_so and R_uo against the coarse threshold t
    layer_shares(coarse_hist, refined_hist)    chapter 3: coarse and refined neurons by layer
    validation_sweep(sweep, chosen, min_size)  chapter 4: LAND's overlaps and set size against P, validation facts
    land_training(losses)                      chapter 4: loss per epoch against the answers that ignore the prompt
    learning_curve(curve)                      chapter 4: LAND on test facts against the number of training prompts
    method_rates(table, *, quantity, paper=None, percent=False, title="")
                                               chapters 5 and 6: each method's mean with its interval per condition,
                                               the papers' values as markers
    relation_bars(frame, *, factors, reference=None)   chapter 5: per relation (Dai et al.'s Figures 4 and 5)
    claims_forest(frame, title)                the results page: one family of claims, each claim's estimate per run
                                               with its interval, zero and the paper's figure marked
  Checks
    tick_label_overlaps(fig) -> [str]          visible tick labels whose boxes overlap (tests/test_figures.py)
    VERDICT_COLOURS                            "holds", "does not hold", "not distinguishable", "differs" -> colour
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import paper
from .stats import Interval, bootstrap_mean

__all__ = ["TrainingLosses", "land_losses", "relation_change", "land_paper_values", "dai_paper_values",
           "overlap_distributions", "threshold_overlap",
           "layer_shares", "validation_sweep", "land_training", "learning_curve", "method_rates", "relation_bars",
           "claims_forest", "tick_label_overlaps", "VERDICT_COLOURS"]

VERDICT_COLOURS = {"holds": "#1b7837", "does not hold": "#b2182b", "not distinguishable": "#7f7f7f",
                   "differs": "#2166ac"}
# The papers' markers, one per source, the same on every figure.
_PAPER_MARKERS = {"GPT-2": ("D", "#000000"), "Llama-3.2-1B": ("^", "#8c510a"), "BERT-base": ("s", "#542788")}


# --------------------------------------------------------------------------- checks and axis helpers


def _drawn_tick_labels(axis) -> list:
    """The tick labels the renderer draws on ``axis``: ticks inside the view, visible, with text."""
    try:
        ticks = axis._update_ticks()  # the ticks the last draw placed (inside the view interval)
    except AttributeError:  # a future matplotlib without it: every labelled tick
        ticks = axis.get_major_ticks() + axis.get_minor_ticks()
    labels = []
    for tick in ticks:
        for label in (tick.label1, tick.label2):
            if label.get_visible() and label.get_text().strip():
                labels.append(label)
    return labels


def tick_label_overlaps(fig, *, gap_px: float = 2.0) -> list[str]:
    """Every pair of visible tick labels whose drawn boxes overlap, as "<axes title> x: '0.3' and '0.4'": on one
    axis, or on two axes of the figure (the last label of one panel against the first of the next) closer than
    ``gap_px``. The figure is drawn first, so the boxes are those a reader sees."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = []
    for number, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        name = ax.get_title() or ax.get_xlabel() or ax.get_ylabel() or f"axes {number}"
        for which, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            for label in _drawn_tick_labels(axis):
                labels.append((number, which, name, label.get_text(), label.get_window_extent(renderer)))
    problems = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            (ax_a, which_a, name, text_a, box_a), (ax_b, which_b, other, text_b, box_b) = labels[i], labels[j]
            if ax_a == ax_b and which_a == which_b:
                if box_a.expanded(0.98, 0.98).overlaps(box_b.expanded(0.98, 0.98)):
                    problems.append(f"{name} {which_a}: {text_a!r} and {text_b!r} overlap")
            elif ax_a != ax_b and box_a.padded(gap_px / 2).overlaps(box_b.padded(gap_px / 2)):
                problems.append(f"{name} {which_a} {text_a!r} and {other} {which_b} {text_b!r} touch")
    return problems


def _thin_tick_labels(fig) -> None:
    """Hide, axis by axis, each tick label that would overlap the last one kept (in drawing order), so that no
    figure leaves the book with labels printed on top of each other, whatever its data's range."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        for which, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            labels = _drawn_tick_labels(axis)
            position = (lambda b: b.x0) if which == "x" else (lambda b: b.y0)
            boxes = sorted(((label.get_window_extent(renderer), label) for label in labels),
                           key=lambda pair: position(pair[0]))
            kept = None
            for box, label in boxes:
                if kept is not None and box.expanded(0.98, 0.98).overlaps(kept):
                    label.set_visible(False)
                else:
                    kept = box


def _log_axis(ax, values, which: str = "x") -> None:
    """A log axis whose ticks are the data's own values, printed plainly ("0.25", "1", "250"), no minor labels: the
    default log formatter labels minor ticks when the range is under a decade, and they collide."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    ticks = sorted({float(v) for v in values if v is not None and float(v) > 0 and math.isfinite(float(v))})
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 100 else f"{v:g}"))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def _percent_axis(ax, which: str = "x") -> None:
    """Fractions shown as percents with as many decimals as the tick step needs ("10%", "2.5%", "0.25%")."""
    from matplotlib.ticker import Formatter, MaxNLocator

    class Percent(Formatter):
        def __call__(self, x, pos=None):
            ticks = np.sort(np.asarray(self.axis.get_majorticklocs(), float))
            step = float(np.min(np.diff(ticks))) if len(ticks) > 1 else 1.0
            decimals = 0 if step <= 0 else max(0, int(math.ceil(-math.log10(step * 100) - 1e-9)))
            text = f"{100 * x:.{decimals}f}%"
            return "0%" if float(text[:-1]) == 0 else text

    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(Percent())
    axis.set_major_locator(MaxNLocator(nbins=5))


def _done(fig, caption: str):
    _thin_tick_labels(fig)
    return fig, caption


def _new(nrows: int = 1, ncols: int = 1, *, figsize, **kwargs):
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, figsize=figsize, layout="constrained", squeeze=False, **kwargs)


def _relative(value: float, reference: float, *, word_below: str = "below", word_above: str = "above") -> str:
    """"12% below" / "3% above" / "equal to" (within 0.5%) ``reference``."""
    if not (math.isfinite(value) and math.isfinite(reference)) or reference == 0:
        return "not comparable with"
    change = value / reference - 1
    if abs(change) < 0.005:
        return "equal to"
    return f"{abs(change):.0%} {word_below if change < 0 else word_above}"


def _interval_text(i: Interval, percent: bool) -> str:
    return i.format("{:.0%}" if percent else "{:.2f}")


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
    from matplotlib.ticker import MaxNLocator

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


# --------------------------------------------------------------------------- chapter 4


def validation_sweep(sweep: pd.DataFrame, chosen: float, min_size: float = 0.0):
    """LAND's sets on the validation facts at each P of the grid: within-fact and same-relation overlap (their gap is
    the fact-specific overlap P is chosen on), and the mean set size against the size floor."""
    sweep = sweep.sort_index()
    P = sweep.index.to_numpy(float)
    fig, axes = _new(1, 2, figsize=(10, 3.2))
    ax, size_ax = axes[0, 0], axes[0, 1]
    ax.plot(P, sweep["within"], "o-", label="within fact (paraphrases)")
    ax.plot(P, sweep["across_same_relation"], "s--", label="other fact, same relation")
    ax.fill_between(P, sweep["across_same_relation"], sweep["within"], color="C0", alpha=0.12,
                    label="gap: fact-specific overlap")
    size_ax.plot(P, sweep["size"], "o-", color="C2", label="mean LAND set size")
    if min_size > 0:
        size_ax.axhline(min_size, color="C3", ls=":", label=f"size floor {min_size:g}")
    for a in (ax, size_ax):
        a.axvline(chosen, color="k", lw=1, ls=":", label=f"P used = {chosen:.3g}")
        _log_axis(a, P)
        a.set(xlabel="P (count scale, log)")
    ax.set(title="Overlap of LAND sets, validation facts", ylabel="Jaccard overlap")
    _percent_axis(ax, "y")
    size_ax.set(title="Size of LAND sets, validation facts", ylabel="neurons per set")
    ax.legend(fontsize="small")
    size_ax.legend(fontsize="small")
    specific = sweep["fact_specific"].dropna()
    if specific.empty:
        return _done(fig, "The fact-specific overlap is undefined at every P of the grid here (no two validation "
                          "facts of one relation have non-empty sets).")
    best = float(specific.idxmax())
    at = sweep.loc[chosen] if chosen in sweep.index else None
    caption = (f"Over the grid, the gap between the curves (fact-specific overlap) is widest at P = {best:g}: "
               f"{specific.max():.1%}, with sets of {sweep.loc[best, 'size']:.1f} neurons. ")
    if at is None:
        lower, upper = sweep.index[sweep.index < chosen], sweep.index[sweep.index > chosen]
        between = (f"between the grid's {lower.max():g} and {upper.min():g}" if len(lower) and len(upper) else
                   "outside the grid")
        caption += f"The P used, {chosen:.3g}, is not one of the grid's values: it lies {between} (dotted line)."
    elif chosen == best:
        caption += "That is the P used."
    else:
        enough = sweep[sweep["size"] >= min_size].index
        caption += (f"The P used, {chosen:.3g}, gives {at['fact_specific']:.1%} with sets of {at['size']:.1f} neurons"
                    + (f": the sets at P = {best:g} hold fewer than {min_size:g} neurons, and {len(enough)} of the "
                       f"{len(sweep)} values of P meet that floor." if sweep.loc[best, "size"] < min_size <= at["size"]
                       else "."))
    return _done(fig, caption)


@dataclass
class TrainingLosses:
    """Chapter 4's losses, all kn.land's MSE over the L x H elements, averaged over prompts.

    epochs: [epoch 1..E] "train" (the mean of the epoch's steps, weights moving) and "validation" (held-out facts at
        the epoch's end; nan where the training did not record it)
    after: {"train", "test"}: the trained detector on the train prompts and on the test facts' prompts (held out)
    trivial: [answer x ("train", "test")]: answers that ignore the prompt, fitted on the train prompts
    """
    epochs: pd.DataFrame
    after: dict
    trivial: pd.DataFrame


_TRIVIAL = {"zeros": "all-zero output", "mean": "one output for every prompt (mean train target)",
            "relation": "one output per relation (its mean train target)"}
_SHORT = dict(zip(_TRIVIAL.values(), ("the all-zero output", "the mean train target given to every prompt",
                                      "the relation's mean train target")))


def _sparse_mean(targets: list, n: int) -> np.ndarray:
    """The mean of sparse targets [(ids, counts)] as a dense vector of length n."""
    total = np.zeros(n, np.float64)
    for ids, counts in targets:
        np.add.at(total, np.asarray(ids, np.int64), np.asarray(counts, np.float64))
    return total / max(len(targets), 1)


def _squared_distance(target, centre: np.ndarray, centre_norm: float) -> float:
    """||y - c||^2 for a sparse y = (ids, counts) and a dense c (whose squared norm is given)."""
    ids, counts = np.asarray(target[0], np.int64), np.asarray(target[1], np.float64)
    return float(counts @ counts - 2 * counts @ centre[ids] + centre_norm)


def land_losses(study, prompts: pd.DataFrame, coarse: dict, *, max_prompts: int = 5000) -> TrainingLosses:
    """The losses of chapter 4's detector (``study``: kn.land_study.LandStudy) beside those of answers that ignore
    the prompt: all zeros (what a detector outputting nothing scores, small because targets are sparse), the mean
    train target (the best single output for every prompt: the constant set's answer) and the relation's mean train
    target (the relation prior's). Targets are the training's own (kn.land_study.training_data under the study's
    counter-example rule), on the train split and, drawn the same way within it, on the test split, which takes part
    in no fit here. The detector's loss is measured on at most ``max_prompts`` seeded prompts of each split."""
    import torch

    from . import land_study

    hp, model = study.hp, study.detector
    L, H = model.n_layers, model.n_neurons
    n = L * H
    steps = np.asarray(study.losses, float)
    per_epoch = steps.reshape(hp.epochs, -1) if hp.epochs and len(steps) % hp.epochs == 0 else steps[None, :]
    history = getattr(study, "history", None)  # per-epoch held-out loss, where the training records it
    epochs = pd.DataFrame({"train": per_epoch.mean(axis=1)}, index=pd.RangeIndex(1, len(per_epoch) + 1, name="epoch"))
    epochs["validation"] = (np.asarray(history["validation"], float) if history is not None
                            and "validation" in history else np.nan)

    def split_pairs(split: str):
        """[(coarse set, target, relation)] of the split's prompts, in row order (training_data's order)."""
        part = prompts[prompts["split"] == split]
        if part.empty:
            return []
        pairs, targets, _ = land_study.training_data(prompts, coarse, hp, split=split)
        return [(s, targets[key], relation) for (s, key), relation in zip(pairs, part["relation"])]

    train, test = split_pairs("train"), split_pairs("test")
    mean = _sparse_mean([t for _, t, _ in train], n)
    by_relation = {r: _sparse_mean([t for _, t, rel in train if rel == r], n) for r in {rel for _, _, rel in train}}
    norms = {"mean": float(mean @ mean)} | {r: float(c @ c) for r, c in by_relation.items()}

    def trivial(pairs) -> dict:
        if not pairs:
            return {key: np.nan for key in _TRIVIAL}
        zeros = [float(np.square(np.asarray(t[1], np.float64)).sum()) for _, t, _ in pairs]
        means = [_squared_distance(t, mean, norms["mean"]) for _, t, _ in pairs]
        relations = [_squared_distance(t, by_relation[r], norms[r]) if r in by_relation else
                     _squared_distance(t, mean, norms["mean"]) for _, t, r in pairs]
        return {key: float(np.mean(v)) / n for key, v in zip(_TRIVIAL, (zeros, means, relations))}

    device = next(model.parameters()).device

    @torch.no_grad()
    def detector_loss(pairs, batch: int = 64) -> float:
        if not pairs:
            return float("nan")
        if len(pairs) > max_prompts:
            keep = np.random.default_rng(hp.seed).choice(len(pairs), max_prompts, replace=False)
            pairs = [pairs[i] for i in sorted(keep)]
        total = 0.0
        for start in range(0, len(pairs), batch):
            chunk = pairs[start:start + batch]
            x = torch.zeros(len(chunk), n)
            y = torch.zeros(len(chunk), n)
            for i, (inputs, (ids, counts), _) in enumerate(chunk):
                x[i, list(inputs)] = 1.0
                y[i, torch.as_tensor(np.asarray(ids, np.int64))] = torch.as_tensor(np.asarray(counts, np.float32))
            out = model(x.view(-1, L, H).to(device)).reshape(len(chunk), -1).cpu()
            total += float(((out - y) ** 2).mean(dim=1).sum())
        return total / len(pairs)

    after = {"train": detector_loss(train), "test": detector_loss(test)}
    table = pd.DataFrame({"train": trivial(train), "test": trivial(test)})
    table.index = [_TRIVIAL[k] for k in table.index]
    return TrainingLosses(epochs, after, table)


def land_training(losses: TrainingLosses):
    """The loss per epoch, the trained detector's loss on the train and test prompts, and the loss of the answers
    that ignore the prompt (lines): whether LAND learned more than the trivial answer."""
    epochs, after, trivial = losses.epochs, losses.after, losses.trivial
    E = len(epochs)
    fig, axes = _new(figsize=(9, 4.4))
    ax = axes[0, 0]
    ax.plot(epochs.index, epochs["train"], "o-", color="C0", label="LAND, train: each epoch's steps")
    if epochs["validation"].notna().any():
        ax.plot(epochs.index, epochs["validation"], "s-", color="C1", label="LAND, validation: each epoch's end")
    ax.plot([E], [after["train"]], "o", color="C0", ms=10, mfc="white", mew=2, label="LAND, train: after training")
    ax.plot([E], [after["test"]], "s", color="C3", ms=10, mfc="white", mew=2, label="LAND, test: after training")
    for (name, row), colour in zip(trivial.iterrows(), ("0.35", "C2", "C4")):
        short = _SHORT[name].removeprefix("the ")
        ax.axhline(row["train"], color=colour, lw=1.3, label=f"{short}: train")
        if math.isfinite(row["test"]):
            ax.axhline(row["test"], color=colour, lw=1.3, ls="--", label=f"{short}: test")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title="LAND's loss against answers that ignore the prompt", xlabel="epoch",
           ylabel="mean squared error per element", xlim=(0.5, E + 0.5))
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    fig.legend(loc="outside lower center", ncols=3, fontsize="x-small")
    first, last = float(epochs["train"].iloc[0]), float(epochs["train"].iloc[-1])
    if E < 2:
        trend = f"The training loss of its one epoch is {first:.3g}."
    elif last < first * 0.995:
        trend = (f"The training loss fell by {1 - last / first:.0%} from the first to the last epoch ({first:.3g} to "
                 f"{last:.3g}).")
    elif last > first * 1.005:
        trend = (f"The training loss rose by {last / first - 1:.0%} from the first to the last epoch ({first:.3g} to "
                 f"{last:.3g}).")
    else:
        trend = f"The training loss did not fall from the first to the last epoch ({first:.3g} to {last:.3g})."
    zeros, relation = _TRIVIAL["zeros"], _TRIVIAL["relation"]
    parts = [trend]
    for split, words in (("train", "on the train prompts"), ("test", "on the held-out test facts")):
        value = after[split]
        if not math.isfinite(value):
            continue
        z, r = trivial.loc[zeros, split], trivial.loc[relation, split]
        parts.append(f"After training, its loss {words} is {value:.3g}: {_relative(value, z)} the all-zero output's "
                     f"({z:.3g}) and {_relative(value, r)} the relation's mean target's ({r:.3g}).")
    best_test = trivial["test"].min()
    if math.isfinite(after["test"]) and math.isfinite(best_test):
        parts.append("On new facts the detector does better than every answer that ignores the prompt."
                     if after["test"] < best_test else
                     f"On new facts it does no better than the best answer that ignores the prompt, "
                     f"{_SHORT[trivial['test'].idxmin()]}.")
    if epochs["validation"].isna().all():
        parts.append("The training records no held-out loss per epoch; the test facts' loss is measured once, after "
                     "training.")
    return _done(fig, " ".join(parts))


def learning_curve(curve: pd.DataFrame):
    """LAND on test facts (within-fact and fact-specific overlap) against the number of training prompts, for each
    optimiser setting, with LAND's GPT-2 within-fact figure marked; where ``curve`` holds the spread over seeds
    (columns <metric>_sd), each point carries it (one standard deviation)."""
    fig, axes = _new(1, 2, figsize=(10, 3.4), sharex=True)
    sentences = []
    for ax, metric, label in ((axes[0, 0], "within", "within-fact overlap"),
                              (axes[0, 1], "fact_specific", "fact-specific overlap")):
        for setting, part in curve.groupby("setting", sort=False):
            part = part.sort_values("n_train_prompts")
            spread = part[f"{metric}_sd"] if f"{metric}_sd" in part else None  # over seeds, where there are several
            ax.errorbar(part["n_train_prompts"], part[metric], yerr=spread, fmt="o-", capsize=3, label=setting)
        _log_axis(ax, curve["n_train_prompts"])
        ax.set(xlabel="training prompts (log scale)", ylabel=label, title=label.capitalize())
        _percent_axis(ax, "y")
    axes[0, 0].axhline(paper.LAND_OVERLAP_CLAIM, color="k", ls=":", label=f"LAND's GPT-2 figure "
                                                                          f"({paper.LAND_OVERLAP_CLAIM:.2%})")
    axes[0, 0].legend(fontsize="small")
    fig.suptitle("LAND on test facts against the amount of training data")
    for setting, part in curve.groupby("setting", sort=False):
        part = part.sort_values("n_train_prompts")
        optimiser = setting if "optimiser" in setting else f"{setting} optimiser"
        optimiser = f"{'the ' if optimiser.startswith('paper') else ''}{optimiser}"
        measured = part[part["within"].notna() & part["fact_specific"].notna()]
        if measured.empty:  # every set empty (or single): nothing to overlap
            sentences.append(f"with {optimiser}, LAND's test sets are empty at every size from "
                             f"{int(part['n_train_prompts'].iloc[0]):,} to {int(part['n_train_prompts'].iloc[-1]):,} "
                             "training prompts, so there is no overlap to draw")
            continue
        a, b = measured.iloc[0], measured.iloc[-1]
        sentences.append(f"with {optimiser}, from {int(a['n_train_prompts']):,} to "
                         f"{int(b['n_train_prompts']):,} training prompts, within-fact overlap moves from "
                         f"{a['within']:.1%} to {b['within']:.1%} and fact-specific overlap from "
                         f"{a['fact_specific']:.1%} to {b['fact_specific']:.1%}")
    seeds = "within_sd" in curve and curve["within_sd"].notna().any()
    if seeds:
        sentences[-1] += " (each point a mean over seeds, its bar one standard deviation)"
    top = curve["within"].max()
    if not math.isfinite(top):
        return _done(fig, "On the test facts, " + "; ".join(sentences) + ".")
    caption = ("On the test facts, " + "; ".join(sentences) + ". "
               + (f"Every point lies below LAND's {paper.LAND_OVERLAP_CLAIM:.2%} (GPT-2, about 250,000 training "
                  f"prompts); the highest is {top:.1%}." if top < paper.LAND_OVERLAP_CLAIM else
                  f"The highest within-fact overlap, {top:.1%}, reaches LAND's {paper.LAND_OVERLAP_CLAIM:.2%}."))
    return _done(fig, caption)


# --------------------------------------------------------------------------- chapters 5 and 6


def _is_random(method: str) -> bool:
    return method.startswith("Random (")


def _base(method: str) -> str:
    """The method a random control is matched to ("Random (LAND)" -> "LAND"); a method is its own base."""
    return method[len("Random ("):-1] if _is_random(method) else method


def _control(method: str) -> str:
    return f"Random ({method})"


def method_rates(table: pd.DataFrame, *, quantity: str, paper_values: dict | None = None, percent: bool = False,
                 title: str = "", lower_is_better=("Unrelated",), direction: str = "up"):
    """One panel per condition (columns of ``table``: Same, Related, Unrelated), one horizontal bar per method (rows)
    with its 95% interval; random controls lighter. ``paper_values``: {source: DataFrame [method x condition] of
    floats}, drawn as markers on the methods they name. ``quantity`` names the number in the caption ("success
    rate"); ``direction`` "down" where the methods are meant to lower it (suppression): the caption then names the
    lowest method and counts those below their random control."""
    down = direction == "down"
    conditions = list(table.columns)
    methods = list(table.index)
    fig, axes = _new(1, len(conditions), figsize=(11, 0.9 + 0.3 * len(methods)), sharey=True)
    y = np.arange(len(methods))
    paper_values = paper_values or {}
    covered, compared = 0, 0
    for ax, condition in zip(axes[0], conditions):
        cells = [table.loc[m, condition] for m in methods]
        means = np.array([c.mean for c in cells])
        # a percentile interval may sit beside its mean when the means are skewed: no negative bar
        err = np.clip(np.array([[c.mean - c.lo for c in cells], [c.hi - c.mean for c in cells]]), 0, None)
        colours = ["C7" if m == "Before" else ("C0" if not _is_random(m) else "#9ecae1") for m in methods]
        ax.barh(y, means, xerr=np.nan_to_num(err), color=colours, error_kw={"elinewidth": 1.2, "capsize": 3})
        ax.axvline(0, color="k", lw=0.8)
        for source, values in paper_values.items():
            marker, colour = _PAPER_MARKERS.get(source.split(", ")[-1], ("o", "k"))
            rows = [(k, values.loc[m, condition]) for k, m in enumerate(methods)
                    if m in values.index and condition in values.columns]
            if rows:
                ax.plot([v for _, v in rows], [k for k, _ in rows], marker, color=colour, mfc="none", mew=1.5,
                        ls="none", ms=7, label=source)
            for k, v in rows:
                compared += 1
                covered += table.loc[methods[k], condition].covers(v)
        better = " (lower is better)" if condition in lower_is_better else ""
        ax.set(title=f"{condition}{better}", xlabel=quantity)
        if percent:
            _percent_axis(ax)
    axes[0, 0].set_yticks(y, methods)
    axes[0, 0].invert_yaxis()
    handles = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:  # below the panels, where it hides no bar
        fig.legend(handles.values(), handles.keys(), fontsize="small", loc="outside lower center",
                   ncols=len(handles))
    fig.get_layout_engine().set(wspace=0.08)  # the last tick label of a panel clear of the next one's first
    if title:
        fig.suptitle(title)
    identified = [m for m in methods if not _is_random(m) and m != "Before"]
    sentences = []
    for condition in conditions:
        column = table[condition]
        defined = [m for m in identified if math.isfinite(column[m].mean)]
        if not defined:
            continue
        if condition in lower_is_better:
            worst = max(defined, key=lambda m: column[m].mean)
            sentences.append(f"on {condition} prompts, where lower is better, {worst} is highest "
                             f"({_interval_text(column[worst], percent)})")
            continue
        best = (min if down else max)(defined, key=lambda m: column[m].mean)
        with_control = [m for m in defined if _control(m) in column.index]
        beyond = [m for m in with_control if (column[m].hi < column[_control(m)].lo if down else
                                              column[m].lo > column[_control(m)].hi)]
        sentences.append(f"on {condition} prompts {best} is {'lowest' if down else 'highest'} "
                         f"({_interval_text(column[best], percent)}), and {len(beyond)} of {len(with_control)} methods "
                         f"lie {'below' if down else 'above'} their random control with intervals apart"
                         + (f" ({', '.join(beyond)})" if beyond else ""))
    caption = f"The {quantity} of each method, mean over facts with its 95% interval: " + "; ".join(sentences) + "."
    if compared:
        caption += (f" The papers' values (markers) fall inside our interval in {covered} of {compared} "
                    f"case{'s' if compared != 1 else ''}.")
    return _done(fig, caption[0].upper() + caption[1:])


def land_paper_values(table: pd.DataFrame) -> dict:
    """LAND's Table 9 or 10 (kn.paper) as {"LAND, <model>": [method x condition]} for method_rates' markers."""
    conditions = [c for c in ("Same", "Related", "Unrelated") if c in table.columns]
    return {f"LAND, {model}": part.set_index("method")[conditions]
            for model, part in table.groupby("model", sort=False)}


def dai_paper_values(action: str) -> dict:
    """Dai et al.'s average relative change of P(answer) for ``action`` ("suppress" / "amplify"), on their refined
    neurons and the prompt that found them: {"Dai et al., BERT-base": [KN-refined x Same]}."""
    return {"Dai et al., BERT-base": pd.DataFrame({"Same": {"KN-refined": paper.DAI_SUPPRESS_AMPLIFY[action]}})}


def relation_change(results: pd.DataFrame, methods, *, n_boot: int, seed: int) -> pd.DataFrame:
    """[(action, relation) x method] of Interval: the mean change rate on the Same prompt over the relation's facts."""
    same = results[(results["condition"] == "Same") & results["method"].isin(methods)]
    rows = {}
    for (action, relation, method), part in same.groupby(["action", "relation", "method"]):
        rows.setdefault((action, relation), {})[method] = bootstrap_mean(part["change_rate"].to_numpy(float),
                                                                         n_boot=n_boot, seed=seed)
    frame = pd.DataFrame.from_dict(rows, orient="index")[list(methods)]
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["action", "relation"])
    return frame


def relation_bars(frame: pd.DataFrame, *, factors: dict, reference: dict | None = None):
    """Dai et al.'s Figures 4 and 5: per relation, each method's mean change of P(answer) on the Same prompt with its
    interval over the relation's facts; one panel per action (``factors``: {action: factor}); ``reference``: {action:
    Dai et al.'s average} drawn as a line."""
    actions = [a for a in factors if a in frame.index.get_level_values("action")]
    methods = list(frame.columns)
    fig, axes = _new(1, len(actions), figsize=(11, 3.6))
    width = 0.8 / max(len(methods), 1)
    sentences = []
    for ax, action in zip(axes[0], actions):
        part = frame.loc[action]
        x = np.arange(len(part))
        bases = list(dict.fromkeys(_base(m) for m in methods))
        for k, method in enumerate(methods):
            cells = part[method].tolist()
            means = np.array([c.mean for c in cells])
            err = np.clip(np.nan_to_num(np.array([[c.mean - c.lo for c in cells], [c.hi - c.mean for c in cells]])),
                          0, None)
            ax.bar(x - 0.4 + width * (k + 0.5), means, width, yerr=err, label=method,
                   color=f"C{bases.index(_base(method))}", alpha=1.0 if not _is_random(method) else 0.45,
                   error_kw={"elinewidth": 1, "capsize": 2})
        if reference and action in reference:
            ax.axhline(reference[action], color="k", ls="--", lw=1,
                       label=f"Dai et al., BERT ({reference[action]:+.0%})")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(x, list(part.index), rotation=90 if len(part) > 6 else 0)
        ax.set(title=f"{action.capitalize()} (x{factors[action]:g})", xlabel="relation",
               ylabel="change of P(answer)")
        _percent_axis(ax, "y")
        for method in [m for m in methods if not _is_random(m)]:
            if _control(method) not in part:
                continue
            mine, control = part[method], part[_control(method)]
            apart = sum((m.hi < c.lo) if action == "suppress" else (m.lo > c.hi) for m, c in zip(mine, control))
            mean = np.nanmean([m.mean for m in mine])
            sentences.append(f"{action}ing with {method} changes P(answer) by {mean:+.0%} on average over relations, "
                             f"{'below' if action == 'suppress' else 'above'} its random control with intervals apart "
                             f"in {apart} of {len(part)} relations")
    handles = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    axes[0, -1].legend(handles.values(), handles.keys(), fontsize="x-small", loc="center left",
                       bbox_to_anchor=(1.01, 0.5))
    fig.suptitle("Same prompt, per relation (mean over the relation's facts, 95% interval)")
    caption = "; ".join(sentences) + "." if sentences else "No relation has a method with its random control here."
    if reference:
        caption += " Dai et al. report " + " and ".join(f"{v:+.0%} ({a})" for a, v in reference.items()) + " for BERT."
    return _done(fig, caption[0].upper() + caption[1:])


# --------------------------------------------------------------------------- the results page


def _forest_row(ax, k: int, row, counts: dict) -> None:
    colour = VERDICT_COLOURS[row["verdict"]]
    counts[row["verdict"]] += 1
    ax.plot([row["lo"], row["hi"]], [k, k], color=colour, lw=2.5, solid_capstyle="butt")
    ax.plot([row["mean"]], [k], "o", color=colour, ms=7)


def _forest_papers(ax, values: dict, ys) -> None:
    for source, value in (values or {}).items():
        marker, colour = _PAPER_MARKERS.get(source.split(", ")[-1], ("o", "k"))
        ax.plot([value] * len(ys), list(ys), marker, color=colour, mfc="none", mew=1.5, ms=8, ls="none")


def _p_label(p) -> str:
    return "" if p is None or not math.isfinite(float(p)) else f"  (Holm p = {float(p):.2g})"


def claims_forest(frame: pd.DataFrame, title: str):
    """One family of claims (rows of kn.results.forest_data for one family): each claim's estimate per run with its
    95% interval, coloured by verdict; zero (solid), a claim's own bound (grey dashes) and the papers' value of the
    same quantity (open markers) marked. A family whose claims share one unit (a declared family of contrasts) is one
    forest on one axis, a row per claim and run; a family of different quantities gets a panel per claim."""
    import matplotlib.lines as mlines
    from matplotlib.ticker import MaxNLocator

    claims = list(dict.fromkeys(frame["claim"]))
    n_runs = frame["run"].nunique()
    counts = {verdict: 0 for verdict in VERDICT_COLOURS}
    shared = frame["unit"].nunique() == 1 and len(claims) > 1
    if shared:
        fig, axes = _new(figsize=(9, 1.3 + 0.3 * len(frame)))
        ax = axes[0, 0]
        rows = frame.reset_index(drop=True)
        labels = []
        for k, row in rows.iterrows():
            _forest_row(ax, k, row, counts)
            _forest_papers(ax, row["paper"], [k])
            labels.append(row["claim"] + (f", {row['run']}" if n_runs > 1 else "") + _p_label(row["p_holm"]))
        ax.axvline(0, color="k", lw=1)
        ax.set_yticks(range(len(rows)), labels, fontsize="small")
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlabel(rows["unit"].iloc[0])
        ax.grid(axis="y", visible=False)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
        if bool(rows["percent"].iloc[0]):
            _percent_axis(ax)
        panels = [ax]
    else:
        lines = [len(textwrap.wrap(f"{c}: {frame.loc[frame['claim'] == c, 'axis'].iloc[0]}", 95)) for c in claims]
        heights = [0.55 + 0.2 * n + 0.32 * int((frame["claim"] == c).sum()) for c, n in zip(claims, lines)]
        fig, axes = _new(len(claims), 1, figsize=(9, sum(heights) + 0.4), gridspec_kw={"height_ratios": heights})
        panels = list(axes[:, 0])
        for ax, claim in zip(panels, claims):
            rows = frame[frame["claim"] == claim].reset_index(drop=True)
            for k, row in rows.iterrows():
                _forest_row(ax, k, row, counts)
            ax.axvline(0, color="k", lw=1)
            bound = rows["bound"].iloc[0]
            if bound is not None and math.isfinite(bound):
                ax.axvline(bound, color="0.5", lw=1, ls="--")
            _forest_papers(ax, rows["paper"].iloc[0], range(len(rows)))
            ax.set_yticks(range(len(rows)), [run + _p_label(p) for run, p in zip(rows["run"], rows["p_holm"])])
            ax.set_ylim(len(rows) - 0.5, -0.5)
            # a long claim name wraps inside the panel's width instead of widening the figure
            ax.set_title(textwrap.fill(f"{claim}: {rows['axis'].iloc[0]}", 95), loc="left", fontsize="medium")
            ax.grid(axis="y", visible=False)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
            if bool(rows["percent"].iloc[0]):
                _percent_axis(ax)
    handles = [mlines.Line2D([], [], color=c, marker="o", lw=2.5, label=v) for v, c in VERDICT_COLOURS.items()
               if counts[v]]
    handles.append(mlines.Line2D([], [], color="k", lw=1, label="zero"))
    sources = {src for values in frame["paper"] if values for src in values}
    for source in sorted(sources):
        marker, colour = _PAPER_MARKERS.get(source.split(", ")[-1], ("o", "k"))
        handles.append(mlines.Line2D([], [], color=colour, marker=marker, mfc="none", ls="none", label=source))
    if frame["bound"].notna().any() and not shared:
        handles.append(mlines.Line2D([], [], color="0.5", ls="--", label="the claim's bound"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize="small")
    fig.suptitle(title)
    words = {"holds": ("holds", "hold"), "does not hold": ("does not hold", "do not hold"),
             "not distinguishable": ("is not distinguishable here", "are not distinguishable here"),
             "differs": ("differs from zero", "differ from zero")}
    tally = ", ".join(f"{n} {words[v][n != 1]}" for v, n in counts.items() if n)
    estimates = "the one estimate" if len(frame) == 1 else f"the {len(frame)} estimates"
    caption = (f"{len(claims)} claim{'s' if len(claims) != 1 else ''} with an interval, on {n_runs} "
               f"run{'s' if n_runs != 1 else ''}: of {estimates}, {tally}.")
    if frame["primary"].any() if "primary" in frame else False:
        apart = int(((frame["verdict"] == "not distinguishable") & ((frame["lo"] > 0) | (frame["hi"] < 0))).sum())
        caption += (" Verdicts are Holm-corrected within the family" + (
            f": {apart} interval{'s' if apart != 1 else ''} that miss{'es' if apart == 1 else ''} zero "
            "stay not distinguishable after the correction." if apart else "."))
    with_paper = [c for c in claims if any(frame.loc[frame["claim"] == c, "paper"])]
    if with_paper:
        covered = sum(any(row["lo"] <= v <= row["hi"] for _, row in frame[frame["claim"] == c].iterrows()
                          for v in (row["paper"] or {}).values()) for c in with_paper)
        caption += (f" The papers report the same quantity for {len(with_paper)} of the claims; our interval covers "
                    f"their figure for {covered} of them.")
    else:
        caption += " The papers report none of these quantities."
    return _done(fig, caption)
