"""kn.report: how a chapter presents itself: its parameters, tables, figures with captions, and its conclusion.

API
    open_chapter(chapter, namespace) -> Chapter   first call of every chapter: resolves its parameters (kn.params),
        sends progress to the runner's file, sets the book's plotting style, opens the run folder, shows the
        "Parameters of this run" table
    Chapter(name, params, origin, run, started);  .seconds() -> float;  .record(summary) writes it and the params
    parameters_table(params, origin, chapter) -> DataFrame   value and source of each of the chapter's keys
    show_table(frame, formats=None, *, caption=None)          numbers formatted per column, "–" for missing
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
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .environment import current_environment
from .params import CHAPTER_KEYS, StudyParams, project_root, resolve_notebook_params
from .stats import Interval
from .store import RunFolder

__all__ = ["open_chapter", "Chapter", "parameters_table", "show_table", "fmt", "figure", "conclusion",
           "relative_path", "STYLE", "LibraryLog"]

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

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def record(self, summary) -> None:
        """Write the chapter's summary record and the parameters it ran with (and where each came from)."""
        summary.write(self.run)
        self.run.record_params(self.params, self.name, self.origin)
        environment = current_environment()
        self.run.update_json("environment", lambda records: {**(records or {}), self.name: environment})


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
        """The stderr this log replaced: kn.progress writes our own bars there (they are not library output)."""
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
    """Keep logs out of the page: progress goes to the terminal (kn.progress), library output to the run folder."""
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
    from IPython.display import display

    params, origin = resolve_notebook_params(namespace)
    if namespace.get("progress_file"):  # set by the kn command; run by hand, bars stay in the notebook
        from . import progress

        progress.use_file(namespace["progress_file"])
    run = RunFolder(params.resolved_run_dir())
    _quiet_page(run.path / "logs" / f"{chapter}.log")
    import matplotlib
    import seaborn as sns

    matplotlib.rcParams["figure.dpi"] = 100
    sns.set_theme(**STYLE)
    if chapter != _FIRST:
        run.check_params(params)
    display(_styled(parameters_table(params, origin, chapter), caption="Parameters of this run"))
    return Chapter(chapter, params, origin, run, time.perf_counter())


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


def _styled(frame: pd.DataFrame, caption: str | None = None):
    style = frame.style.format(escape="html")  # cells such as "runs/<model>" are text, not markup
    if caption:
        style = style.set_caption(caption)
    return style


def show_table(frame: pd.DataFrame, formats: dict | str | None = None, *, caption: str | None = None) -> None:
    """Display ``frame`` with each column formatted by ``formats`` ({column: spec} or one spec for all; default
    "{:.2f}"); Intervals become "mean [lo, hi]" and missing values "–"."""
    from IPython.display import display

    specs = formats if isinstance(formats, dict) else {}
    default = formats if isinstance(formats, str) else "{:.2f}"
    shown = frame.copy().astype(object)
    if pd.api.types.is_float_dtype(frame.index):
        shown.index = [f"{i:g}" for i in frame.index]
        shown.index.name = frame.index.name
    for column in shown.columns:
        spec = specs.get(column, default)
        shown[column] = [fmt(v, spec) for v in frame[column]]
    display(_styled(shown, caption))


def figure(fig, caption: str) -> None:
    """Show ``fig`` as an HTML figure whose caption says what to look for, then close it (a figure left open would
    be drawn a second time by the inline backend)."""
    import matplotlib.pyplot as plt
    from IPython.display import HTML, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    display(HTML(f'<figure class="kn-figure"><img src="data:image/png;base64,{data}" alt="{_escape(caption)}"/>'
                 f"<figcaption>{_escape(caption)}</figcaption></figure>"))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def conclusion(claims, *, title: str = "What this run shows") -> None:
    """The chapter's verdicts (kn.summaries.Claim), each one sentence with its interval, under a heading."""
    from IPython.display import Markdown, display

    lines = [f"## {title}", ""] + [f"- {c.sentence}" for c in claims]
    kept = _LOG.summary() if _LOG is not None else None
    if kept:
        lines += ["", f"*{kept}*"]
    display(Markdown("\n".join(lines)))
