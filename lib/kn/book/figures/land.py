"""kn.book.figures.land: chapter 4: the validation sweep of P, LAND's training against the trivial answers, and the
learning curve over seeds.

API
    TrainingLosses(epochs, after, trivial)   chapter 4: per-epoch loss, the trained detector's loss on the train and
        the test prompts, and the losses of answers that ignore the prompt (kn.methods.land's loss: MSE over all L x H elements)
    land_losses(study, prompts, coarse, *, max_prompts=5000) -> TrainingLosses   from what chapter 4 holds
        (kn.experiments.land_operating.LandStudy and the training's own targets)
    validation_sweep(sweep, chosen, min_size)  chapter 4: LAND's overlaps and set size against P, validation facts
    land_training(losses)                      chapter 4: loss per epoch against the answers that ignore the prompt
    learning_curve(curve)                      chapter 4: LAND on test facts against the number of training prompts
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kn.base import paper
from kn.book.figures.axes import _done, _log_axis, _new, _percent_axis, _relative
from kn.methods import counterexamples

# --------------------------------------------------------------------------- chapter 4


def validation_sweep(sweep: pd.DataFrame, chosen: float | None, min_size: float = 0.0):
    """LAND's sets on the validation facts at each P of the grid: within-fact and same-relation overlap (their gap is
    the fact-specific overlap rule (c) chooses P on), and the mean set size against the size floor. ``chosen``: the P
    of the main sets, or None where they use the ratio read-out (no P)."""
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
        if chosen is not None:
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
    caption = (f"Over the grid, the gap between the curves (fact-specific overlap) is widest at P = {best:g}: "
               f"{specific.max():.1%}, with sets of {sweep.loc[best, 'size']:.1f} neurons. ")
    if chosen is None:
        return _done(fig, caption + "The main sets use no P: each prompt's top scores, as many as the paper's ratio "
                                    "times its coarse set; the grid serves read-outs (b) and (c).")
    at = sweep.loc[chosen] if chosen in sweep.index else None
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
    """Chapter 4's losses, all kn.methods.land's MSE over the L x H elements, averaged over prompts.

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
    """The losses of chapter 4's detector (``study``: kn.experiments.land_operating.LandStudy) beside those of answers that ignore
    the prompt: all zeros (what a detector outputting nothing scores, small because targets are sparse), the mean
    train target (the best single output for every prompt: the constant set's answer) and the relation's mean train
    target (the relation prior's). Targets are the training's own (kn.experiments.land_operating.training_data under the study's
    counter-example rule), on the train split and, drawn the same way within it, on the test split, which takes part
    in no fit here. The detector's loss is measured on at most ``max_prompts`` seeded prompts of each split."""
    import torch  # torch only where tensors are made: importing this module stays cheap


    hp, model = study.hp, study.detector
    L, H = model.n_layers, model.n_neurons
    n = L * H
    steps = np.asarray(study.losses, float)
    per_epoch = steps.reshape(hp.epochs, -1) if hp.epochs and len(steps) % hp.epochs == 0 else steps[None, :]
    history = getattr(study, "history", None)  # the fit run's per-epoch train and validation losses
    if history is not None and len(history):
        epochs = history[["train", "validation"]].astype(float)
    else:  # a study from before the history was recorded: the final run's train loss only
        epochs = pd.DataFrame({"train": per_epoch.mean(axis=1), "validation": np.nan},
                              index=pd.RangeIndex(1, len(per_epoch) + 1, name="epoch"))

    def split_pairs(split: str):
        """[(coarse set, target, relation)] of the split's prompts, in row order (training_data's order)."""
        part = prompts[prompts["split"] == split]
        if part.empty:
            return []
        pairs, targets, _ = counterexamples.training_data(prompts, coarse, hp, split=split)
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
        ax.plot(epochs.index, epochs["validation"], "s-", color="C1", label="LAND, validation facts: each epoch's end")
    ax.plot([E], [after["train"]], "o", color="C0", ms=10, mfc="white", mew=2, label="LAND, train: after training")
    ax.plot([E], [after["test"]], "s", color="C3", ms=10, mfc="white", mew=2, label="LAND, test: after training")
    for (name, row), colour in zip(trivial.iterrows(), ("0.35", "C2", "C4")):
        short = _SHORT[name].removeprefix("the ")
        ax.axhline(row["train"], color=colour, lw=1.3, label=f"{short}: train")
        if math.isfinite(row["test"]):
            ax.axhline(row["test"], color=colour, lw=1.3, ls="--", label=f"{short}: test")
    from matplotlib.ticker import MaxNLocator  # plotting only inside a chapter's kernel

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
    else:
        v_first, v_last = float(epochs["validation"].iloc[0]), float(epochs["validation"].iloc[-1])
        z = trivial.loc[zeros, "train"]
        moved = ("fell" if v_last < v_first * 0.995 else "rose" if v_last > v_first * 1.005 else "did not move")
        parts.insert(1, f"On the validation facts (held out of this fit; the per-epoch curves are those of the "
                        f"detector fitted without them, whose read-out is chosen there) the loss {moved} from "
                        f"{v_first:.3g} to {v_last:.3g}, {_relative(v_last, z)} the all-zero output's ({z:.3g}) "
                        f"on the train prompts.")
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
