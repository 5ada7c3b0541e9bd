"""kn.book.runner: execute the chapters for a params file with papermill, publish each completed chapter, build the book.

API
    CHAPTERS                                   notebook names in order
    execute_chapters(params_file, chapters=None, *, book_root=None, progress=True, overrides=None,
                     notebooks_dir=None) -> dict[chapter, seconds]
    check_params(params_file, overrides=None) -> StudyParams     the YAML and the overrides, validated together
    parse_overrides([(key, text), ...]) -> dict                  `-p KEY VALUE` pairs: VALUE read as YAML, key checked
    select_chapters(wanted, available=CHAPTERS) -> list[str]     "04", "4" and "04_land" all name chapter 4
    chapters_from(start, available=CHAPTERS) -> list[str]       chapter ``start`` and every one after it (kn run --from)

What a chapter receives (the contract with the notebooks): exactly three papermill parameters,
    params_file    the params YAML's absolute path (a string)
    overrides      the `-p` values, parsed and validated ({} if none)
    progress_file  where the chapter's kn.base.progress bars write ("" for no terminal progress)
and KN_PROGRESS_FILE set to progress_file in the kernel's environment. Every parameter, every chapter name and the data
folder are checked before the first notebook starts.

Where things go: each chapter executes into a staging folder. Only a chapter that completed is published: its executed
notebook (parameters cells tagged `remove-cell`, the model and the run's name in the title, paths of this machine made relative) replaces
<book_root>/book/runs/<run name>/<chapter>.ipynb atomically, its seconds go to the run folder's timings.json and its
overrides to overrides.json ({chapter: {key: value}}). A failed chapter's notebook is kept in <run_dir>/failed/ and the
page of its last good execution stays. A failure that leaves a run folder which did not exist before (or was empty)
without a completed chapter 1 removes that folder; the failed notebook then goes to <tmp>/kn-failed/<run name>/.
While a chapter runs, the lines its bars write to progress_file are printed, prefixed with the chapter's name.
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from kn.base.errors import OutOfSpace, ParameterError, UnknownChapter, bad_input_names
from kn.base.io import atomic_write
from kn.base.paramfiles import load_params, read_params_file
from kn.base.params import StudyParams, project_root
from kn.base.progress import ENV_FILE, clock
from kn.base.rundir import RunFolder
from kn.base.runlock import run_lock
from kn.book import preflight, reference_book
from kn.book.build import KERNEL_ARGUMENTS, _portable, _publish, _say, _show
from kn.data.download import resolve_data_dir

CHAPTERS = ("01_data_adaptation", "02_attribution", "02b_attribution_choices", "03_overlap", "04_land",
            "05_amplification", "06_editing")
FAILED_FOLDER = "failed"
STAGING_PREFIX = "kn-staging-"  # + PID: a folder whose process is gone is litter, removed by the next kn


class ChapterFailed(RuntimeError):
    """A chapter's notebook raised in its kernel; ``__cause__`` is papermill's PapermillExecutionError."""

    def __init__(self, chapter: str, notebook: Path | None, ename: str, evalue: str, keep_error: str | None = None):
        self.chapter, self.notebook, self.ename, self.evalue = chapter, notebook, ename, evalue
        self.keep_error = keep_error
        kept = f" (executed notebook kept at {_show(notebook)})" if notebook else ""
        lost = f"; {keep_error}" if keep_error else ""
        super().__init__(f"{chapter}: {ename}: {evalue}{kept}{lost}")

    @property
    def bad_input(self) -> bool:
        """The kernel raised an error the user can fix (a kn.base.errors.BadInput), not a bug."""
        return self.ename in bad_input_names()


# --- checking the inputs ---------------------------------------------------------------------------------------------
def available_chapters(notebooks_dir: str | Path | None = None) -> tuple[str, ...]:
    """CHAPTERS, or the `NN_name.ipynb` / `NNx_name.ipynb` notebooks of another folder (stub chapters in the tests)."""
    if notebooks_dir is None:
        return CHAPTERS
    return tuple(sorted(p.stem for p in Path(notebooks_dir).glob("*.ipynb") if re.match(r"\d\d[a-z]?_", p.stem)))


def select_chapters(wanted, available=CHAPTERS) -> list[str]:
    """The chapters named in ``wanted`` ("04", "4", "04_land", "2b"), in the order given; all of them when it is empty."""
    if not wanted:
        return list(available)
    picked = []
    for want in wanted:
        text = str(want).strip()
        numbered = re.fullmatch(r"(\d+)([a-z]?)", text)  # "4", "04", "2b": the chapter's number
        number = numbered.group(1).zfill(2) + numbered.group(2) if numbered else None
        match = [c for c in available if c == text or c.split("_")[0] == number]
        if not match:
            raise UnknownChapter(f"unknown chapter {text!r}; chapters: {', '.join(available)}")
        picked += [c for c in match if c not in picked]
    return picked


def chapters_from(start, available=CHAPTERS) -> list[str]:
    """Chapter ``start`` (named as select_chapters reads it) and every chapter after it, in order."""
    first = select_chapters([start], available)[0]
    return list(available[list(available).index(first):])


def _select(chapters) -> list[str]:  # the old name
    return select_chapters(chapters)


def parse_overrides(pairs) -> dict:
    """`-p KEY VALUE` pairs -> {key: value}: VALUE read with yaml.safe_load (2.0 a float, null None, [P36] a list,
    true a bool), KEY one of StudyParams'. Values are type-checked by check_params."""
    known = StudyParams.keys()
    overrides = {}
    for key, text in pairs or ():
        if key not in known:
            raise ParameterError(f"-p {key}: unknown parameter{_suggest(key)}")
        try:
            overrides[key] = yaml.safe_load(text) if isinstance(text, str) else text
        except yaml.YAMLError as err:
            reason = str(err).splitlines()[0]
            raise ParameterError(f"-p {key} {text!r}: not a YAML value ({reason})") from err
    return overrides


def check_params(params_file: str | Path, overrides: dict | None = None) -> StudyParams:
    """The params YAML with the overrides on top, validated like the YAML's own keys (ParameterError otherwise)."""
    base = load_params(params_file)  # a missing or bad file, an unknown key or a bad value in the YAML
    if not overrides:
        base.check_device()
        return base
    for key in overrides:
        if key not in StudyParams.keys():
            raise ParameterError(f"-p {key}: unknown parameter{_suggest(key)}")
    values = read_params_file(params_file)
    source = f"{params_file} with " + " ".join(f"-p {k} {v!r}" for k, v in overrides.items())
    try:
        params = StudyParams.from_mapping({**values, **overrides}, source=source)
        params.check_device()
        return params
    except ParameterError as err:
        if str(err).startswith(source):
            raise
        raise ParameterError(f"{source}: {err}") from err


def _suggest(key: str) -> str:

    close = difflib.get_close_matches(key, StudyParams.keys(), n=3)
    if close:
        return f" (did you mean {' or '.join(close)}?)"
    return f"; known: {', '.join(StudyParams.keys())}"


class _Tail(threading.Thread):
    """Print the complete lines appended to ``path`` while a chapter runs, each prefixed."""

    def __init__(self, path: Path, prefix: str, poll: float = 0.25):
        super().__init__(daemon=True, name=f"kn-progress-{prefix}")
        self.path, self.prefix, self.poll = Path(path), prefix, poll
        self._offset, self._pending, self._stop_event = 0, b"", threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.poll):
            self._drain()
        self._drain(final=True)

    def _drain(self, final: bool = False) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
                self._offset = handle.tell()
        except OSError:
            return
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        if final and self._pending:
            lines, self._pending = lines + [self._pending], b""
        for line in lines:
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                _say(f"{self.prefix} {text}")

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join()


def _takes_params_file(notebook: Path) -> bool:
    """Whether the chapter's `parameters` cell follows the contract (params_file, overrides, progress_file)."""
    import nbformat  # notebook machinery only when chapters run or the book is built

    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return re.search(r"^\s*params_file\s*=", cell.source, re.M) is not None
    return False


def execute_chapters(params_file: str | Path, chapters=None, *, book_root: str | Path | None = None,
                     progress: bool = True, overrides: dict | None = None,
                     notebooks_dir: str | Path | None = None) -> dict[str, float]:
    """Execute ``chapters`` (default: all) for ``params_file`` with ``overrides`` on top; see the module docstring.

    Returns {chapter: seconds} of the chapters executed. Raises a BadInput (ParameterError, UnknownChapter,
    DataFileError, RunFolderBusy) before any notebook starts, ChapterFailed when a notebook raises (after keeping it),
    and OutOfSpace when the run folder's disk filled up (the cause, and what was kept)."""
    overrides = dict(overrides or {})
    params = check_params(params_file, overrides)  # unknown keys and bad values stop here, before anything runs
    params_file = Path(params_file).absolute()
    notebooks = Path(notebooks_dir).absolute() if notebooks_dir else project_root() / "notebooks"
    available = available_chapters(notebooks_dir)
    selected = select_chapters(chapters, available)
    # sizes, own facts and the run folder, before any chapter's work; a whole run is checked as a whole run even where
    # its notebooks folder holds only the data chapters
    preflight.check_run(params, selected, whole_run=not chapters)
    first = available[0] if available else None
    if first in selected and not params.facts_file:  # a run on the user's own facts never needs PARAREL
        resolve_data_dir(params.data_dir or None)  # missing data fails here, not inside a notebook
    root = (Path(book_root) if book_root else project_root()).absolute()
    run_dir = params.resolved_run_dir()
    book_dir = root / "book" / "runs" / run_dir.name
    if reference_book.claim_run_dir(run_dir, book_dir, selected, first):  # a reference copy: replaced whole
        _say(f"[run] {run_dir.name}: the reference run copied by `kn book` is replaced by this run")
    fresh = not run_dir.exists() or not any(run_dir.iterdir())  # nothing there but what this invocation makes
    parent_made = not run_dir.parent.exists()
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "kn"
    with run_lock(run_dir, command):  # one writer per run folder: a second kn stops here with the holder's PID
        _remove_stale_staging()
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-"))
        try:
            return _execute(selected, first, params, params_file, overrides, notebooks, root, run_dir, book_dir,
                            fresh, parent_made, staging, progress)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _execute(selected, first, params, params_file, overrides, notebooks, root, run_dir, book_dir, fresh, parent_made,
             staging, progress) -> dict[str, float]:
    import papermill  # notebook machinery only when chapters run or the book is built
    from papermill.exceptions import (
        PapermillExecutionError,  # notebook machinery only when chapters run or the book is built
    )

    shown = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
    done: dict[str, float] = {}
    for number, chapter in enumerate(selected, 1):
        source = notebooks / f"{chapter}.ipynb"
        staged = staging / f"{chapter}.ipynb"
        progress_file = staging / f"{chapter}.progress" if progress else None
        parameters = {"params_file": str(params_file), "overrides": overrides,
                      "progress_file": str(progress_file) if progress_file else ""}
        if not _takes_params_file(source):  # an old-style chapter: its parameters one by one
            parameters = {**read_params_file(params_file), **overrides, "run_dir": str(run_dir)}
        prefix = f"[{chapter}]"
        _say(f"{prefix} started ({number}/{len(selected)}): {params.model}, {_show(params_file)}"
             + (f", overrides {shown}" if shown else ""))
        tail = _Tail(progress_file, prefix) if progress_file else None
        previous = os.environ.get(ENV_FILE)
        os.environ[ENV_FILE] = str(progress_file) if progress_file else ""  # the kernel inherits it
        started = time.perf_counter()
        if tail:
            tail.start()
        try:
            papermill.execute_notebook(str(source), str(staged), parameters=parameters, cwd=str(source.parent),
                                       progress_bar=False, log_output=False, kernel_name="python3",
                                       extra_arguments=KERNEL_ARGUMENTS)
        except BaseException as err:
            if tail:
                tail.stop()
            spent = clock(time.perf_counter() - started)
            remove_run = fresh and first not in done
            kept, keep_error = _keep_failed(staged, run_dir, remove_run)
            if remove_run:
                _remove_run_folder(run_dir, parent_made)
            what = err.ename if isinstance(err, PapermillExecutionError) else type(err).__name__
            verb = ("interrupted" if isinstance(err, KeyboardInterrupt) else
                    "stopped" if isinstance(err, SystemExit) else "failed")
            _say(f"{prefix} {verb} after {spent} ({what})"
                 + (f"; the executed notebook is kept at {_show(kept)}" if kept else "")
                 + (f"; {keep_error}" if keep_error else ""))
            if isinstance(err, PapermillExecutionError):
                if _no_space(err.ename, err.evalue):
                    raise OutOfSpace(_out_of_space(chapter, run_dir, remove_run, keep_error)) from err
                raise ChapterFailed(chapter, kept, err.ename, err.evalue, keep_error) from err
            if isinstance(err, OSError) and err.errno == errno.ENOSPC:
                raise OutOfSpace(_out_of_space(chapter, run_dir, remove_run, keep_error)) from err
            raise
        finally:
            if tail:
                tail.stop()
            if previous is None:
                os.environ.pop(ENV_FILE, None)
            else:
                os.environ[ENV_FILE] = previous
        seconds = round(time.perf_counter() - started, 1)
        try:
            _record(run_dir, chapter, seconds, overrides)
            _publish(staged, book_dir / f"{chapter}.ipynb", root=root, model=params.model,
                     replace={str(params_file): _portable(params_file, root), str(run_dir): _portable(run_dir, root),
                              **({str(progress_file): ""} if progress_file else {}),
                              str(source): _portable(source, root)})
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise OutOfSpace(f"no space left on {_mount_of(book_dir)}: {chapter} completed, but its page could "
                                 "not be published; its results in the run folder are kept") from err
            raise
        done[chapter] = seconds
        _say(f"{prefix} done in {clock(seconds)}; page {_show(book_dir / f'{chapter}.ipynb')}")
    return done


def _no_space(ename: str, evalue: str) -> bool:
    return ename in ("OSError", "IOError") and ("Errno 28" in evalue or "No space left" in evalue)


def _mount_of(path: Path) -> str:
    """The mount point holding ``path`` (the file system that filled up)."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return str(path)


def _out_of_space(chapter: str, run_dir: Path, run_removed: bool, keep_error: str | None) -> str:
    kept = ("nothing (the run folder was new and is removed)" if run_removed else
            f"everything written before it ({_show(run_dir)}: earlier chapters, and chapter 2's scores up to the last "
            "complete part); the same command resumes once there is space")
    return f"no space left on {_mount_of(run_dir)}: {chapter} stopped; kept: {kept}"


def _remove_stale_staging() -> None:
    """Staging folders of kn processes that died without cleaning up (a SIGKILL): named by their PID."""
    for folder in Path(tempfile.gettempdir()).glob(f"{STAGING_PREFIX}*"):
        match = re.match(rf"{re.escape(STAGING_PREFIX)}(\d+)-", folder.name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # another user's live process
            continue


def _record(run_dir: Path, chapter: str, seconds: float, overrides: dict) -> None:
    """timings.json and overrides.json of the run folder; a chapter's failed notebook of an earlier try goes."""
    run = RunFolder(run_dir)
    run.update_json("timings", lambda timings: {**(timings or {}), chapter: seconds})
    run.update_json("overrides", lambda recorded: {**(recorded or {}), chapter: overrides})
    failed = run.path / FAILED_FOLDER
    (failed / f"{chapter}.ipynb").unlink(missing_ok=True)
    if failed.is_dir() and not any(failed.iterdir()):
        failed.rmdir()


def _keep_failed(staged: Path, run_dir: Path, run_goes: bool) -> tuple[Path | None, str | None]:
    """Keep the failed chapter's executed notebook: (where, None), or (None, why not). Never raises, so the chapter's
    own error is the one reported; the copy is atomic, so a full disk leaves no truncated notebook."""
    if not staged.is_file():
        return None, None
    if run_goes:  # a new run's folder goes: keep it in the temporary folder, one folder per failure
        folder = Path(tempfile.gettempdir()) / "kn-failed"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=f"{run_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}-", dir=folder))
        except OSError as err:
            return None, f"the executed notebook could not be kept ({_why(err, folder)})"
    else:
        folder = run_dir / FAILED_FOLDER
    target = folder / staged.name
    try:
        atomic_write(target, lambda tmp: shutil.copyfile(staged, tmp))
    except OSError as err:
        return None, f"the executed notebook could not be kept ({_why(err, folder)})"
    return target, None


def _why(err: OSError, folder: Path) -> str:
    if err.errno == errno.ENOSPC:
        return f"no space left on {_mount_of(folder)}"
    return f"{type(err).__name__}: {err.strerror or err}"


def _remove_run_folder(run_dir: Path, parent_made: bool) -> None:
    shutil.rmtree(run_dir, ignore_errors=True)
    if parent_made:
        try:
            run_dir.parent.rmdir()  # only if this invocation made it and nothing else is there
        except OSError:
            pass
