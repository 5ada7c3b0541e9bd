"""kn.book.figures.forest: the results page's forest plot, one family of claims per figure.

API
    claims_forest(frame, title)                the results page: one family of claims, each claim's estimate per run
                                               with its interval, zero and the paper's figure marked
  Checks
    VERDICT_COLOURS                            "holds", "does not hold", "not distinguishable", "differs",
                                               "favours A", "favours B" (a primary contrast "A vs B") -> colour
"""

from __future__ import annotations

import math
import textwrap

import pandas as pd

from kn.book.figures.axes import _done, _new, _percent_axis

VERDICT_COLOURS = {"holds": "#1b7837", "does not hold": "#b2182b", "not distinguishable": "#7f7f7f",
                   "differs": "#2166ac", "favours A": "#5aae61", "favours B": "#d6604d"}
# The papers' markers, one per source, the same on every figure.
_PAPER_MARKERS = {"GPT-2": ("D", "#000000"), "Llama-3.2-1B": ("^", "#8c510a"), "BERT-base": ("s", "#542788")}


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
    """One family of claims (rows of kn.book.results.forest_data for one family): each claim's estimate per run with its
    95% interval, coloured by verdict; zero (solid), a claim's own bound (grey dashes) and the papers' value of the
    same quantity (open markers) marked. A family whose claims share one unit (a declared family of contrasts) is one
    forest on one axis, a row per claim and run; a family of different quantities gets a panel per claim."""
    import matplotlib.lines as mlines  # plotting only inside a chapter's kernel
    from matplotlib.ticker import MaxNLocator  # plotting only inside a chapter's kernel

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
             "differs": ("differs from zero", "differ from zero"),
             "favours A": ("favours its first-named method (A)", "favour their first-named method (A)"),
             "favours B": ("favours its second-named method (B)", "favour their second-named method (B)")}
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
