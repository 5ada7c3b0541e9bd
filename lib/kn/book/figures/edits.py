"""kn.book.figures.edits: chapters 5 and 6: success and change rates per method with their intervals and the papers'
values, and per relation.

API
    relation_change(results, methods, *, n_boot, seed) -> DataFrame [(action, relation) x method] of kn.base.stats.Interval
        mean change rate on the Same prompt per relation, bootstrapped over the relation's facts
    land_paper_values(table) -> {"LAND, <model>": DataFrame [method x condition]}   LAND's Table 9 or 10, by model
    dai_paper_values(action) -> {"Dai et al., BERT-base": DataFrame}   Dai et al.'s average change (KN-refined, Same)
  Figures, each -> (matplotlib Figure, caption)
    method_rates(table, *, quantity, paper_values=None, percent=False, title="")
                                               chapters 5 and 6: each method's mean with its interval per condition,
                                               the papers' values as markers
    relation_bars(frame, *, factors, reference=None)   chapter 5: per relation (Dai et al.'s Figures 4 and 5)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kn.base import paper
from kn.base.stats import bootstrap_mean
from kn.book.figures.axes import _done, _interval_text, _new, _percent_axis
from kn.book.figures.forest import _PAPER_MARKERS

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
    """LAND's Table 9 or 10 (kn.base.paper) as {"LAND, <model>": [method x condition]} for method_rates' markers."""
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
