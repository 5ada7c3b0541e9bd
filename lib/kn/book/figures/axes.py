"""kn.book.figures.axes: the book's figures, one function each, returning (fig, caption) with the caption computed from what the
figure draws, so that a caption cannot claim what its figure does not show. Where a number has an interval the figure
draws it, and where a paper reports the number the figure marks the paper's value (kn.base.paper).

API
  Figure data
    tick_label_overlaps(fig) -> [str]          visible tick labels whose boxes overlap (tests/book/test_figures.py)
"""

from __future__ import annotations

import math

import numpy as np

from kn.base.stats import Interval

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
    from matplotlib.ticker import (  # plotting only inside a chapter's kernel
        FixedLocator,
        FuncFormatter,
        NullFormatter,
        NullLocator,
    )

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    ticks = sorted({float(v) for v in values if v is not None and float(v) > 0 and math.isfinite(float(v))})
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 100 else f"{v:g}"))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def _percent_axis(ax, which: str = "x") -> None:
    """Fractions shown as percents with as many decimals as the tick step needs ("10%", "2.5%", "0.25%")."""
    from matplotlib.ticker import (  # plotting only inside a chapter's kernel
        Formatter,
        MaxNLocator,
    )

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
    import matplotlib.pyplot as plt  # plotting only inside a chapter's kernel

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
