"""kn.book.report: how a chapter presents itself: its parameters, tables, figures with captions, and its conclusion.

API
    open_chapter(chapter, namespace) -> Chapter   first call of every chapter: resolves its parameters (kn.base.params),
        sends progress to the runner's file, sets the book's plotting style, opens the run folder, shows the
        "Parameters of this run" table and (after chapter 1) the run's scale against the papers' (show_scale)
    show_scale(run)                 the run's facts, prompts and test facts against the papers', from chapter 1's record
    Chapter(name, params, origin, run, started, params_file="");  .seconds() -> float;  .record(summary) writes it,
        the params and what the chapter read (RunFolder.record_consumption)
    parameters_table(params, origin, chapter) -> DataFrame   value and source of each of the chapter's keys
    show_table(frame, formats=None, *, caption=None)          numbers formatted per column, "–" for missing;
        headers in words (HEADERS), numbers right-aligned on one line with their intervals, and a table too wide for
        the book's text column (TEXT_COLUMN_PX) shown as several, each repeating the row labels
    HEADERS                                                   code names of columns -> words (and the paper's symbol)
    fmt(value, spec) -> str                                   one cell: Interval, nan and plain numbers
    figure(fig, caption)                                      the figure as an HTML <figure> with its caption
    conclusion(claims, *, title="What this run shows")        the chapter's verdicts as one paragraph, then one line
                                                               counting the library output kept off the page
    LibraryLog(path)   warnings and stderr of the libraries a chapter calls, appended to <run>/logs/<chapter>.log
    relative_path(path) -> str                                paths shown relative to the project (never absolute)
    STYLE                                                     seaborn theme arguments used by every figure
"""

from __future__ import annotations

import base64
import io
import logging
import math
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kn.base import progress
from kn.base.paramfiles import resolve_notebook_params
from kn.base.params import CHAPTER_KEYS, StudyParams, project_root
from kn.base.rundir import RunFolder
from kn.base.stats import Interval
from kn.book.environment import current_environment
from kn.book.results import scale_sentence
from kn.book.summaries import DataSummary

STYLE = {"style": "whitegrid", "context": "notebook", "palette": "deep"}
_FIRST = "01_data_adaptation"


def relative_path(path) -> str:
    """``path`` relative to the project root when it lies inside it, else only its name: pages never show the
    builder's machine."""
    path = Path(path)
    path = path if path.is_absolute() else project_root() / path
    try:
        return str(path.resolve().relative_to(project_root()))
    except ValueError:
        return path.name


@dataclass
class Chapter:
    name: str
    params: StudyParams
    origin: dict
    run: RunFolder
    started: float
    params_file: str = ""  # as the refresh command names it (kn.base.lineage)

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def record(self, summary) -> None:
        """Write the chapter's summary record and the parameters it ran with (and where each came from)."""
        summary.write(self.run)
        self.run.record_params(self.params, self.name, self.origin)
        environment = current_environment()
        self.run.update_json("environment", lambda records: {**(records or {}), self.name: environment})
        self.run.record_consumption(self.params_file)


class LibraryLog:
    """Where a chapter's library output goes instead of the page: Python warnings (``warnings.showwarning``),
    anything written to ``sys.stderr`` (progress bars such as transformers' GGUF conversion, C extensions' Python-level
    messages) and transformers' logger, appended to ``path`` with the time. ``warnings`` and ``stderr_lines`` count
    them for the page's one line. ``install()`` replaces the hooks for the rest of the kernel's life (a chapter is one
    kernel); ``uninstall()`` puts them back."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.warnings = 0
        self.stderr_lines = 0
        self._saved = None

    def _append(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(text)

    # the stderr file protocol
    def write(self, text: str) -> int:
        # a progress bar redraws itself with "\r": each redraw is one line of the log, counted once
        pieces = [p for p in text.replace("\r", "\n").split("\n") if p.strip()]
        if pieces:
            self.stderr_lines += len(pieces)
            self._append("".join(f"{time.strftime('%H:%M:%S')} stderr: {p.strip()}\n" for p in pieces))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def showwarning(self, message, category, filename, lineno, file=None, line=None) -> None:
        self.warnings += 1
        where = f"{Path(filename).name}:{lineno}"  # a file name, not this machine's path
        self._append(f"{time.strftime('%H:%M:%S')} {category.__name__} ({where}): {message}\n")

    @property
    def passthrough(self):
        """The stderr this log replaced: kn.base.progress writes our own bars there (they are not library output)."""
        return self._saved[0] if self._saved else sys.__stderr__

    def install(self) -> "LibraryLog":
        handlers = _transformers_handlers()
        self._saved = (sys.stderr, warnings.showwarning, [(h, h.stream) for h in handlers])
        sys.stderr = self
        warnings.showwarning = self.showwarning
        for handler in handlers:
            handler.setStream(self)
        return self

    def uninstall(self) -> None:
        if self._saved is None:
            return
        sys.stderr, warnings.showwarning, streams = self._saved
        for handler, stream in streams:
            handler.setStream(stream)
        self._saved = None

    def summary(self) -> str | None:
        """One line for the page, or None when nothing was kept."""
        if not (self.warnings or self.stderr_lines):
            return None
        parts = []
        if self.warnings:
            parts.append(f"{self.warnings} library warning{'' if self.warnings == 1 else 's'}")
        if self.stderr_lines:
            parts.append(f"{self.stderr_lines} line{'' if self.stderr_lines == 1 else 's'} of library output")
        return f"Kept off this page: {' and '.join(parts)}, in {relative_path(self.path)}."


def _transformers_handlers() -> list:
    """The stream handlers of transformers' library logger (made at its import, bound to the stderr of that time)."""
    return [h for h in logging.getLogger("transformers").handlers if isinstance(h, logging.StreamHandler)]


_LOG: LibraryLog | None = None  # the running chapter's, counted by conclusion()


def _quiet_page(log_path: Path) -> None:
    """Keep logs out of the page: progress goes to the terminal (kn.base.progress), library output to the run folder."""
    global _LOG
    # tqdm's notebook bar needs ipywidgets, which the book does not install: its warning says nothing to a reader.
    warnings.filterwarnings("ignore", message="IProgress not found")
    # transformers draws a bar while it reads weights (a second at most): not a step a reader waits for.
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    if _LOG is not None:
        _LOG.uninstall()
    _LOG = LibraryLog(log_path).install()


def open_chapter(chapter: str, namespace) -> Chapter:
    """Resolve the chapter's parameters from its notebook globals, set up progress and style, open the run folder
    (later chapters check it was made with the same data settings) and show the parameters table."""
    from IPython.display import display  # display only inside a chapter's kernel

    params, origin = resolve_notebook_params(namespace)
    if namespace.get("progress_file"):  # set by the kn command; run by hand, bars stay in the notebook

        progress.use_file(namespace["progress_file"])
    run = RunFolder(params.resolved_run_dir(), chapter=chapter)  # what it reads and writes is recorded
    _quiet_page(run.path / "logs" / f"{chapter}.log")
    import matplotlib  # plotting only inside a chapter's kernel
    import seaborn as sns  # plotting only inside a chapter's kernel

    matplotlib.rcParams["figure.dpi"] = 100
    sns.set_theme(**STYLE)
    if chapter != _FIRST:
        run.check_params(params)
    display(_styled(parameters_table(params, origin, chapter), caption="Parameters of this run"))
    if chapter != _FIRST:
        show_scale(run)
    shown = relative_path(namespace["params_file"]) if namespace.get("params_file") else ""
    return Chapter(chapter, params, origin, run, time.perf_counter(), shown)


def show_scale(run: RunFolder) -> None:
    """The run's size against the papers' (kn.book.results.scale_sentence), from chapter 1's record; nothing before
    chapter 1 has written it."""
    from IPython.display import Markdown, display  # display only inside a chapter's kernel

    if DataSummary.exists(run):
        display(Markdown(scale_sentence(DataSummary.read(run))))


def parameters_table(params: StudyParams, origin: dict, chapter: str) -> pd.DataFrame:
    """One row per key the chapter's parameters cell lists: its value, and where it came from when it is not the
    notebook's default ("params file", "notebook cell", "override"; "" for the default)."""
    rows = []
    for key in CHAPTER_KEYS[chapter]:
        value = getattr(params, key)
        if key == "run_dir":
            value = relative_path(params.resolved_run_dir())
        elif key in ("data_dir", "facts_file", "templates_file") and value:
            value = relative_path(value)
        rows.append({"parameter": key, "value": "null" if value is None else str(value),
                     "set by": origin.get(key, ""), "meaning": StudyParams.help(key)})
    return pd.DataFrame(rows).set_index("parameter")


def fmt(value, spec: str = "{:.2f}") -> str:
    """A table cell: an Interval as "mean [lo, hi]", nan/None as "–", numbers with ``spec``."""
    if isinstance(value, Interval):
        return value.format(spec)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return spec.format(value)
    return str(value)


# Column names the library's frames carry, in words, with the papers' symbol where they have one.
HEADERS = {
    # overlap of sets (kn.methods.detectors.OVERLAP_COLUMNS) and chapter 4's tables
    "size": "set size (neurons)", "within": "within fact", "across_same_relation": "other fact, same relation",
    "across_other_relation": "other relation", "fact_specific": "fact-specific (within minus same relation)",
    "same_template_other_fact": "other fact, same template", "empty": "empty sets", "n_train_facts": "train facts",
    "n_train_prompts": "train prompts", "setting": "optimiser",
    "fraction": "share of train facts",
    # LAND's Tables 4, 6, 7 and Dai et al.'s Table 2
    "N_s": "one prompt's set, N_s", "N_u": "union of the fact's sets, N_u", "N_so": "shared by two prompts, N_so",
    "R_so": "Jaccard of two prompts, R_so", "N_uo": "shared with the others' union, N_uo",
    "R_uo": "Jaccard with the others' union, R_uo", "R_uo (Eq. 5)": "N_s / N_u (Eq. 5)",
    "N_L": "LAND set, N_L", "N_Lo": "shared by two LAND sets, N_Lo", "R_Lo": "Jaccard of two LAND sets, R_Lo",
    "L": "layers, L", "H": "neurons per layer, H", "R": "rank, R", "parameters": "parameters, L × 2 × H × R",
    "neurons_per_fact": "refined neurons per fact", "intra_relation": "shared by two facts, same relation",
    "inter_relation": "shared by two facts, two relations",
    # refining, erasing, comparisons
    "mean_size": "mean refined size", "in_range": "size in range", "ppl_before": "perplexity before",
    "ppl_after": "perplexity after", "change_erased_relation": "change, erased relation",
    "change_other_relations": "change, other relations", "difference": "difference [95% interval]",
    "A": "method A", "B": "method B",
    # chapters 1, 2 and 2b
    "prompt_id": "prompt", "fact_id": "fact", "split_mismatch": "on both sides of the split",
    "template_position": "template", "answer_n_tokens": "answer tokens", "jaccard_reference_mean":
    "Jaccard vs reference, mean", "jaccard_reference_min": "Jaccard vs reference, worst prompt",
    "jaccard_paper_mean": "Jaccard vs the paper's rule, mean", "rel_error_median": "error, median",
    "rel_error_max": "error, worst", "completeness_gap_mean": "completeness gap, mean", "max_rel_error": "largest error",
    "completeness_gap": "completeness gap",
}
# The text column of a book page at a 1300 px window (sphinx-book-theme, measured in Chromium), and the widths the
# tables' CSS (book/_static/kn.css) gives a character and a cell's padding: a table whose narrowest layout (numbers
# unbroken, text broken at spaces) exceeds the column is shown as several.
TEXT_COLUMN_PX = 700
_CHAR_PX = 7.6  # a digit at 0.8rem; letters average less
_CELL_PX = 16  # padding either side, and a border


_CODE_NAME = re.compile(r"[A-Za-z0-9]+(_[A-Za-z0-9]+)+")
_SUFFIXES = {"sd": "sd over seeds", "lo": "low", "hi": "high", "mean": "mean", "min": "min", "max": "max"}


def _header(name) -> str:
    """A column's name in words: HEADERS' own, else a code name read in parts: its longest known head (a HEADERS key,
    or the symbol P) in words, the rest with spaces ("N_L_paper_ratio" -> "LAND set, N_L, paper ratio", "within_sd"
    -> "within fact, sd over seeds"); a name that is not a code name stays as it is."""
    if not isinstance(name, str):
        return name
    if name in HEADERS or not _CODE_NAME.fullmatch(name):
        return HEADERS.get(name, name)
    parts = name.split("_")
    for cut in range(len(parts) - 1, 0, -1):
        head, rest = "_".join(parts[:cut]), parts[cut:]
        if head in HEADERS or head == "P":
            tail = _SUFFIXES.get("_".join(rest)) or " ".join(rest)
            return f"{HEADERS.get(head, head)}, {tail}"
    if parts[-1] in _SUFFIXES:
        return f"{' '.join(parts[:-1])}, {_SUFFIXES[parts[-1]]}"
    return " ".join(parts)


def _table_html(frame: pd.DataFrame, numeric: dict, caption: str | None) -> str:
    """The HTML of one table: cells already text, number columns classed ``kn-num`` (right-aligned, never broken),
    text columns ``kn-text``; inline rules scoped to the table (so a notebook opened outside the book reads the same)
    and the book's classes (kn.css)."""
    classes = pd.DataFrame({c: ["kn-num" if numeric[c] else "kn-text"] * len(frame) for c in frame.columns},
                           index=frame.index)
    style = frame.style.format(escape="html")  # cells such as "runs/<model>" are text, not markup
    style = style.set_td_classes(classes).set_table_attributes('class="kn-table"')
    rules = [{"selector": "", "props": "border-collapse: collapse; font-size: 0.8rem; margin: 0;"},
             {"selector": "th, td", "props": "padding: 0.2rem 0.5rem; vertical-align: top; "
                                             "border-bottom: 1px solid #dcdcdc;"},
             {"selector": "td.kn-num", "props": "text-align: right; white-space: nowrap; "
                                                "font-variant-numeric: tabular-nums;"},
             {"selector": "td.kn-text", "props": "text-align: left; white-space: normal;"},
             {"selector": "th.row_heading, th.index_name, th.blank", "props": "text-align: left; white-space: normal;"},
             {"selector": "caption", "props": "caption-side: top; text-align: left; font-style: italic; "
                                              "padding: 0.2rem 0;"}]
    for j, column in enumerate(frame.columns):
        rules.append({"selector": f"th.col_heading.col{j}",
                      "props": f"text-align: {'right' if numeric[column] else 'left'}; vertical-align: bottom; "
                               "white-space: normal;"})
    style = style.set_table_styles(rules)
    if caption:
        style = style.set_caption(caption)
    return f'<div class="kn-table-wrap">{style.to_html()}</div>'


def _styled(frame: pd.DataFrame, caption: str | None = None):
    """A table of text cells (the parameters table) in the book's table style."""
    from IPython.display import HTML  # display only inside a chapter's kernel

    shown = frame.astype(object).map(lambda v: "" if v is None else str(v))
    return HTML(_table_html(shown, {c: False for c in shown.columns}, caption))


# a number as a cell shows it, with its interval: "1,536", "-0.33 [-1.40, +0.45]", "41.1% [38.7%, 43.5%]", "–"
_NUMBER_TEXT = re.compile(r"[-+\u2212]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?(e[-+]?\d+)?%?( \[[^\]]+\])?|\u2013|")


def _is_number(value) -> bool:
    """A number, an Interval or a missing value, or a text that shows one (a table formatted before it came here)."""
    if isinstance(value, str):
        return _NUMBER_TEXT.fullmatch(value.strip()) is not None
    if isinstance(value, Interval) or value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool) or hasattr(value, "dtype") and \
        getattr(value, "dtype").kind in "iuf"


def _min_width(texts, numeric: bool) -> float:
    """The narrowest width (px) a column can take: its longest cell when numbers are never broken, else its longest
    word."""
    longest = max((len(t) if numeric else max((len(w) for w in str(t).split()), default=0) for t in texts),
                  default=0)
    return longest * _CHAR_PX + _CELL_PX


def _column_groups(shown: pd.DataFrame, numeric: dict, budget: float) -> list[list]:
    """The columns in runs that, with the row labels, fit ``budget`` px in their narrowest layout (at least one each)."""
    index_levels = [shown.index.get_level_values(k) for k in range(shown.index.nlevels)]
    labels = sum(_min_width(list(map(str, level)) + [str(level.name or "")], False) for level in index_levels)
    groups, current, used = [], [], labels
    for column in shown.columns:
        width = max(_min_width(shown[column], numeric[column]), _min_width([_header(column)], False))
        if current and used + width > budget:
            groups.append(current)
            current, used = [], labels
        current.append(column)
        used += width
    return groups + [current] if current else groups


def show_table(frame: pd.DataFrame, formats: dict | str | None = None, *, caption: str | None = None) -> None:
    """Display ``frame`` with each column formatted by ``formats`` ({column: spec} or one spec for all; default
    "{:.2f}"); Intervals become "mean [lo, hi]" and missing values "–". Columns of numbers are right-aligned and
    never broken; headers read in words (HEADERS); a table whose narrowest layout is wider than the book's text column
    is shown as several tables of consecutive columns, each with the row labels ("columns 1-3 of 5")."""
    from IPython.display import HTML, display  # display only inside a chapter's kernel

    specs = formats if isinstance(formats, dict) else {}
    default = formats if isinstance(formats, str) else "{:.2f}"
    shown = frame.copy().astype(object)
    if pd.api.types.is_float_dtype(frame.index):
        shown.index = [f"{i:g}" for i in frame.index]
        shown.index.name = frame.index.name
    numeric = {}
    for column in shown.columns:
        spec = specs.get(column, default)
        numeric[column] = all(_is_number(v) for v in frame[column])
        shown[column] = [fmt(v, spec) for v in frame[column]]
    groups = _column_groups(shown, numeric, TEXT_COLUMN_PX)
    for k, columns in enumerate(groups):
        part = shown[columns]
        part.columns = [_header(c) for c in columns]
        part.index = part.index.set_names([_header(n) for n in part.index.names])
        names = {_header(c): numeric[c] for c in columns}
        label = caption
        if len(groups) > 1:
            first = sum(len(g) for g in groups[:k]) + 1
            last = first + len(columns) - 1
            where = (f"column {first} of {len(shown.columns)}" if last == first else
                     f"columns {first}-{last} of {len(shown.columns)}")
            label = f"{caption} ({where})" if caption else where[0].upper() + where[1:]
        display(HTML(_table_html(part, names, label)))


def figure(fig, caption: str) -> None:
    """Show ``fig`` as an HTML figure whose caption says what to look for, then close it (a figure left open would
    be drawn a second time by the inline backend)."""
    import matplotlib.pyplot as plt  # plotting only inside a chapter's kernel
    from IPython.display import HTML, display  # display only inside a chapter's kernel

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    display(HTML(f'<figure class="kn-figure"><img src="data:image/png;base64,{data}" alt="{_escape(caption)}"/>'
                 f"<figcaption>{_escape(caption)}</figcaption></figure>"))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def conclusion(claims, *, title: str = "What this run shows") -> None:
    """The chapter's verdicts (kn.book.summaries.Claim), each one sentence with its interval, under a heading."""
    from IPython.display import (  # display only inside a chapter's kernel
        Markdown,
        display,
    )

    lines = [f"## {title}", ""] + [f"- {c.sentence}" for c in claims]
    kept = _LOG.summary() if _LOG is not None else None
    if kept:
        lines += ["", f"*{kept}*"]
    display(Markdown("\n".join(lines)))
