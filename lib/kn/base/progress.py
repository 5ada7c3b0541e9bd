"""kn.base.progress: progress of the long steps (attribution, LAND training, the experiments) on the terminal, never in a page.

API
    progress(total, desc, unit="it") -> Progress     a context manager: .update(n=1), .set_postfix(**kv), .close()
    track(iterable, total=None, desc="", unit="it")  yields the items of ``iterable``, counting them
    use_file(path)                                   a chapter's first cell: write progress to this file ("" = off)
    notice(line)                                     one line where bars write (a damaged file set aside, ...)
    format_line(desc, n, total, elapsed, unit, postfix) -> str;  interval() -> seconds between lines;  clock(s)
    ENV_FILE, ENV_SECONDS                            the environment variables below

Where a bar writes is decided when it starts:
    KN_PROGRESS_FILE set to a path   plain-text lines appended to that file; `kn` tails it onto its own terminal
    KN_PROGRESS_FILE set to ""       nothing (a chapter executed without terminal progress)
    unset, stderr a terminal         a tqdm bar on stderr (an interactive session, a script)
    unset, in a Jupyter kernel       a tqdm bar (tqdm.auto) in the cell's output
    unset, stderr a pipe or a log    plain-text lines on stderr
Plain-text lines are rate-limited so CI logs do not flood: the first line (when the bar starts), then at most one every
KN_PROGRESS_SECONDS seconds (default 20), then the last (when it closes). A line reads
    attribution: 212/640 prompts (33%), 1.42 s/prompt, 5:02 elapsed, 10:08 left
Progress never raises: a file that cannot be written turns the bar off.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

ENV_FILE = "KN_PROGRESS_FILE"
ENV_SECONDS = "KN_PROGRESS_SECONDS"
DEFAULT_SECONDS = 20.0

T = TypeVar("T")


def use_file(path) -> None:
    """Send every bar started from now on (in this process and its children) to ``path``; "" or None: no progress."""
    os.environ[ENV_FILE] = str(path) if path else ""


def interval() -> float:
    """Seconds between two plain-text lines of one bar (KN_PROGRESS_SECONDS, default 20)."""
    try:
        value = float(os.environ.get(ENV_SECONDS, DEFAULT_SECONDS))
    except ValueError:
        return DEFAULT_SECONDS
    return max(value, 0.0)


def clock(seconds: float) -> str:
    """5:02, or 1:05:02 past an hour."""
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _plural(unit: str) -> str:
    if unit == "it" or unit.endswith("s"):
        return unit
    return {"batch": "batches"}.get(unit, unit + "s")


def _value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_line(desc: str, n: int, total: int | None, elapsed: float, unit: str = "it", postfix: dict | None = None,
                *, closed: bool = False) -> str:
    """One plain-text progress line (what a file or a log receives)."""
    count = f"{n}/{total} {_plural(unit)}" if total else f"{n} {_plural(unit) if n != 1 else unit}"
    if total:
        count += f" ({100 * n // total}%)"
    parts = [f"{desc}: {count}" if desc else count]
    if n > 0 and elapsed > 0:
        per = elapsed / n
        parts.append(f"{per:.2f} s/{unit}" if per >= 1 else f"{1 / per:.1f} {_plural(unit)}/s")
    if n > 0 or closed:
        parts.append(f"{clock(elapsed)} elapsed")
    if total and 0 < n < total and not closed:
        parts.append(f"{clock((total - n) * elapsed / n)} left")
    parts += [f"{k}={_value(v)}" for k, v in (postfix or {}).items()]
    if closed and total and n < total:
        parts.append("stopped")
    return ", ".join(parts)


class _Lines:
    """Rate-limited plain-text lines to a file (appended, one write per line) or a stream."""

    def __init__(self, path: str | None = None, stream=None):
        self.path, self.stream = path, stream

    def write(self, line: str) -> bool:
        try:
            if self.path is not None:
                with open(self.path, "a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
            else:
                self.stream.write(line + "\n")
                self.stream.flush()
            return True
        except (OSError, ValueError):  # a full disk, a closed stream: progress must never stop the computation
            return False


def _stderr():
    """The stream bars write to: a chapter's kn.book.report.LibraryLog keeps library output off the page, but a bar of
    ours belongs where the reader (or the terminal) sees it, so it writes to the stream the log replaced."""
    return getattr(sys.stderr, "passthrough", sys.stderr)


def _in_jupyter_kernel() -> bool:
    return type(_stderr()).__module__.startswith("ipykernel")


def notice(line: str) -> None:
    """One line where bars write (the runner's progress file, else stderr): something the user must see now."""
    target = os.environ.get(ENV_FILE)
    if target:
        _Lines(path=target).write(line)
    elif _stderr() is not None:
        _Lines(stream=_stderr()).write(line)


class Progress:
    """One bar; see the module docstring for where it writes. Use ``progress()`` to make one."""

    def __init__(self, total: int | None, desc: str = "", unit: str = "it"):
        if total is not None and (isinstance(total, (str, bool)) or not float(total).is_integer()):
            raise TypeError(f"progress(total, desc, unit): total must be a count or None, got {total!r}")
        self.total = int(total) if total is not None else None
        self.desc, self.unit = desc, unit
        self.n = 0
        self.postfix: dict = {}
        self.closed = False
        self._started = time.monotonic()
        self._bar = None
        self._lines: _Lines | None = None
        self._interval = interval()
        self._last_time = self._started
        self._last_state = None  # (n, postfix) of the last line written
        target = os.environ.get(ENV_FILE)
        stderr = _stderr()
        if target is not None:
            self._lines = _Lines(path=target) if target else None
        elif stderr is not None and (stderr.isatty() or _in_jupyter_kernel()):
            if _in_jupyter_kernel():
                from tqdm.auto import (
                    tqdm,  # the bar's kind (notebook or terminal) is chosen when one is drawn
                )
            else:
                from tqdm import (
                    tqdm,  # the bar's kind (notebook or terminal) is chosen when one is drawn
                )
            self._bar = tqdm(total=self.total, desc=desc or None, unit=unit, file=stderr, dynamic_ncols=True)
        elif stderr is not None:
            self._lines = _Lines(stream=stderr)
        self._emit()

    # --- writing ------------------------------------------------------------------------------------------------
    def line(self) -> str:
        return format_line(self.desc, self.n, self.total, time.monotonic() - self._started, self.unit, self.postfix,
                           closed=self.closed)

    def _emit(self) -> None:
        if self._lines is None:
            return
        state = (self.n, dict(self.postfix))
        finished = self.closed and not (self.total and self.n < self.total)
        if finished and state == self._last_state:
            return  # the last update already said it all
        line = self.line()
        if not self._lines.write(line):
            self._lines = None
            return
        self._last_state = state
        self._last_time = time.monotonic()

    def _due(self) -> bool:
        return self._lines is not None and time.monotonic() - self._last_time >= self._interval

    # --- the API ------------------------------------------------------------------------------------------------
    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._due():
            self._emit()

    def set_postfix(self, **values) -> None:
        self.postfix = {k: v for k, v in values.items()}
        if self._bar is not None:
            self._bar.set_postfix({k: _value(v) for k, v in values.items()}, refresh=False)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
        else:
            self._emit()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Progress({self.line()!r})"


def progress(total: int | None, desc: str = "", unit: str = "it") -> Progress:
    """A bar over ``total`` units; use it as a context manager and call ``.update(n)`` as work finishes."""
    return Progress(total, desc, unit)


def track(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """The items of ``iterable``, counted on a bar (``total`` defaults to ``len(iterable)`` when it has one)."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with progress(total, desc, unit) as bar:
        for item in iterable:
            yield item
            bar.update()
