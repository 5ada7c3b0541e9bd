"""kn.runner: execute the chapters for a params file with papermill, publish each completed chapter, build the book.

API
    CHAPTERS                                   notebook names in order
    execute_chapters(params_file, chapters=None, *, book_root=None, progress=True, overrides=None,
                     notebooks_dir=None) -> dict[chapter, seconds]
    check_params(params_file, overrides=None) -> StudyParams     the YAML and the overrides, validated together
    parse_overrides([(key, text), ...]) -> dict                  `-p KEY VALUE` pairs: VALUE read as YAML, key checked
    select_chapters(wanted, available=CHAPTERS) -> list[str]     "04", "4" and "04_land" all name chapter 4
    execute_results(book_root=None) -> Path    the results page, from every run folder under <book_root>/runs
    build_book(book_root=None) -> Path         prune_book_runs, the results page, then jupyter-book 1.x, warnings as errors
    prune_book_runs(book_root=None) -> list    failed pages (from older runners) and empty folders out of book/runs/
    prepare_book_root(target) -> Path          the book's sources copied to ``target`` (tests build there)
    UnknownChapter (a BadInput), ChapterFailed (.chapter, .notebook, .ename, .evalue, .bad_input)
    main(argv)                                 `python -m kn.runner --params P [--chapters 02] [--no-book]`, an alias of
                                               the `kn` command (kn.cli), kept for old scripts

What a chapter receives (the contract with the notebooks): exactly three papermill parameters,
    params_file    the params YAML's absolute path (a string)
    overrides      the `-p` values, parsed and validated ({} if none)
    progress_file  where the chapter's kn.progress bars write ("" for no terminal progress)
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

import errno
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .atomic import atomic_write
from .download import resolve_data_dir
from .errors import BadInput, OutOfSpace, bad_input_names
from .params import ParameterError, StudyParams, load_params, project_root, read_params_file
from .progress import ENV_FILE, clock
from .runlock import run_lock

__all__ = ["CHAPTERS", "execute_chapters", "check_params", "parse_overrides", "select_chapters", "available_chapters", "execute_results", "build_book", "prune_book_runs", "prepare_book_root", "UnknownChapter", "ChapterFailed", "main"]

CHAPTERS = ("01_data_adaptation", "02_attribution", "02b_attribution_choices", "03_overlap", "04_land",
            "05_amplification", "06_editing")
# Raised in a notebook's kernel and meaning "bad input", though (for now) not subclasses of kn.errors.BadInput.
KERNEL_BAD_INPUT = frozenset({"UnknownModel", "UnsupportedArchitecture"})
FAILED_FOLDER = "failed"
STAGING_PREFIX = "kn-staging-"  # + PID: a folder whose process is gone is litter, removed by the next kn
# The kernel's start-up log (e.g. ipykernel 7's "running over TCP without encryption") would reach the terminal's stderr,
# between the command's own lines; a kernel that dies still fails the chapter (DeadKernelError).
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]


class UnknownChapter(BadInput):
    pass


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
        """The kernel raised an error the user can fix (a BadInput, an unknown model), not a bug."""
        from . import download, store  # noqa: F401  (their BadInput classes count only once imported)

        return self.ename in bad_input_names() | KERNEL_BAD_INPUT


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


def _select(chapters) -> list[str]:  # the old name
    return select_chapters(chapters)


def parse_overrides(pairs) -> dict:
    """`-p KEY VALUE` pairs -> {key: value}: VALUE read with yaml.safe_load (2.0 a float, null None, [P36] a list,
    true a bool), KEY one of StudyParams'. Values are type-checked by check_params."""
    import yaml

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
    import difflib

    close = difflib.get_close_matches(key, StudyParams.keys(), n=3)
    if close:
        return f" (did you mean {' or '.join(close)}?)"
    return f"; known: {', '.join(StudyParams.keys())}"


# --- executing ---------------------------------------------------------------------------------------------------------
_print_lock = threading.Lock()


def _say(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


def _show(path) -> str:
    """A path as the user would type it: relative to the working directory when it lies below it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


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
    import re

    import nbformat

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
    first = available[0] if available else None
    if first in selected and not params.facts_file:  # a run on the user's own facts never needs PARAREL
        resolve_data_dir(params.data_dir or None)  # missing data fails here, not inside a notebook
    root = (Path(book_root) if book_root else project_root()).absolute()
    run_dir = params.resolved_run_dir()
    book_dir = root / "book" / "runs" / run_dir.name
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
    import papermill
    from papermill.exceptions import PapermillExecutionError

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
    from .store import RunFolder

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


def _portable(path: Path, root: Path) -> str:
    """``path`` relative to the book root or the checkout when it lies below one of them (no machine paths in pages)."""
    for base in (root, project_root()):
        try:
            return Path(path).absolute().relative_to(base).as_posix()
        except ValueError:
            continue
    return str(path)


def _tag_parameter_cells(path: Path) -> None:
    """Hide the results page's parameter cells (the injected one names this machine's runs folder) and drop
    papermill's record of the paths."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "code" and ("parameters" in tags or "injected-parameters" in tags):
            if "remove-cell" not in tags:
                cell.metadata["tags"] = [*tags, "remove-cell"]
    meta = nb.metadata.get("papermill")
    if meta:
        meta["input_path"] = meta["output_path"] = path.name
        meta["parameters"] = {}
    nbformat.write(nb, path)


def _publish(staged: Path, target: Path, *, root: Path, model: str, replace: dict[str, str]) -> None:
    """Make the executed notebook a book page and move it into place atomically (readers see the old or the new)."""
    import nbformat

    from .store import atomic_write_bytes

    nb = nbformat.read(staged, as_version=4)
    titled = False
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "code" and ("parameters" in tags or "injected-parameters" in tags):
            if "remove-cell" not in tags:
                cell.metadata["tags"] = [*tags, "remove-cell"]
            if "injected-parameters" in tags:
                cell.source = _replace_all(cell.source, replace)
        if not titled and cell.cell_type == "markdown" and cell.source.startswith("# "):
            # the book lists every run's chapters; two runs of one model differ by their run's name
            cell.source = _run_heading(cell.source, model, target.parent.name)
            titled = True
    meta = nb.metadata.get("papermill")
    if meta:
        meta["input_path"] = _replace_all(str(meta.get("input_path", "")), replace)
        meta["output_path"] = _portable(target, root)
        meta["parameters"] = {k: _replace_all(v, replace) if isinstance(v, str) else v
                              for k, v in (meta.get("parameters") or {}).items()}
    atomic_write_bytes(target, nbformat.writes(nb).encode())


def _replace_all(text: str, replace: dict[str, str]) -> str:
    for old, new in sorted(replace.items(), key=lambda kv: -len(kv[0])):
        if old:
            text = text.replace(old, new)
    return text


def _run_heading(source: str, model: str, run: str) -> str:
    """A chapter's markdown cell with its title naming the model and the run: "# 4. LAND ... (gpt2), run gpt2-paper"."""
    first, _, rest = source.partition("\n")
    return f"{first} ({model}), run {run}\n{rest}"


# what _run_heading adds, and the model alone that older runners added
_RUN_SUFFIX = re.compile(r" \([^()]*\)(, run [^()]+)?$")


def _title_with_model(path: Path, model: str) -> None:
    """Name the model and the run (the page's folder) in the chapter's title (kept for callers of the old runner;
    _publish does it now)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            cell.source = _run_heading(cell.source, model, Path(path).parent.name)
            break
    nbformat.write(nb, path)


# --- the book ----------------------------------------------------------------------------------------------------------
def execute_results(book_root: str | Path | None = None) -> Path:
    """The results page: a notebook reading every run folder under <book_root>/runs, executed into book/generated/."""
    import papermill

    root = Path(book_root) if book_root else project_root()
    source = project_root() / "notebooks" / "results.ipynb"
    target = root / "book" / "generated" / "results.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(source), str(target), parameters={"runs_root": str(root / "runs")},
                               cwd=str(source.parent), progress_bar=False, kernel_name="python3",
                               extra_arguments=KERNEL_ARGUMENTS)
    _tag_parameter_cells(target)
    return target


def prune_book_runs(book_root: str | Path | None = None) -> list[str]:
    """Keep book/runs/ to complete chapters (the book's glob publishes whatever is there): a page whose execution
    failed (older runners wrote those) moves to <tmp>/kn-failed/<run>/, and empty run folders go. Returns what it did."""
    import json

    root = Path(book_root) if book_root else project_root()
    runs = root / "book" / "runs"
    done = []
    for folder in sorted(runs.iterdir()) if runs.is_dir() else ():
        if not folder.is_dir():
            continue
        for page in sorted(folder.glob("*.ipynb")):
            try:
                failed = bool(json.loads(page.read_text()).get("metadata", {}).get("papermill", {}).get("exception"))
            except (OSError, ValueError):
                continue
            if failed:
                kept = Path(tempfile.gettempdir()) / "kn-failed" / folder.name / page.name
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(page), kept)
                done.append(f"moved the failed page {_show(page)} to {kept}")
        if not any(folder.iterdir()):
            folder.rmdir()
            done.append(f"removed the empty folder {_show(folder)}")
    return done


RUNS_CAPTION = "Runs"  # the part of _toc.yml that build_book replaces by one part per run


def _page_title(page: Path) -> str:
    """A published chapter's title without the model and run it names (its part of the navigation names them)."""
    import json

    try:
        cells = json.loads(page.read_text()).get("cells", [])
    except (OSError, ValueError):
        return page.stem
    for cell in cells:
        source = "".join(cell.get("source", []))
        if cell.get("cell_type") == "markdown" and source.startswith("# "):
            return _RUN_SUFFIX.sub("", source.partition("\n")[0][2:].strip())
    return page.stem


def _run_parts(root: Path) -> list[dict]:
    """One part of the navigation per run folder of book/runs/: captioned with the run's name, model and scale
    (kn.results.run_title, from <root>/runs/<name>), its chapters in order under their own titles."""
    from .results import run_title
    from .store import RunFolder

    parts = []
    runs = root / "book" / "runs"
    for folder in sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else ():
        pages = sorted(folder.glob("*.ipynb"))
        if not pages:
            continue
        record = root / "runs" / folder.name
        caption = run_title(RunFolder(record) if record.is_dir() else None, folder.name)
        parts.append({"caption": f"Run {caption}",
                      "chapters": [{"file": page.relative_to(root).with_suffix("").as_posix(),
                                    "title": _page_title(page)} for page in pages]})
    return parts


def _book_toc(root: Path) -> Path:
    """The book's table of contents, written to <root>/book/generated/_toc.yml: <root>/_toc.yml with its part
    captioned RUNS_CAPTION (a glob over every run's pages) replaced by one part per run (_run_parts)."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    parts = []
    for part in toc.get("parts", []):
        parts += _run_parts(root) if part.get("caption") == RUNS_CAPTION else [part]
    toc["parts"] = parts
    target = root / "book" / "generated" / "_toc.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("# Written by kn.runner.build_book from _toc.yml: one part per run.\n"
                      + yaml.safe_dump(toc, sort_keys=False, allow_unicode=True))
    return target


def build_book(book_root: str | Path | None = None) -> Path:
    """Execute the results page, then build the book (warnings are errors; the log is kept in book/build.log), with
    one part of the navigation per run (_book_toc)."""
    root = Path(book_root) if book_root else project_root()
    for line in prune_book_runs(root):
        _say(f"[book] {line}")
    execute_results(root)
    build = root / "book" / "_build"
    log = root / "book" / "build.log"
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "--path-output", str(root / "book"),
           "--toc", str(_book_toc(root)), "--warningiserror", "--keep-going"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0 or not (build / "html" / "index.html").is_file():
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise RuntimeError(f"jupyter-book build failed (full log: {log}; reports: {build / 'html' / 'reports'}):\n{tail}")
    return build / "html" / "index.html"


def prepare_book_root(target: str | Path) -> Path:
    """Copy the book's sources (config, toc, pages, static files) to ``target``: tests build there, not in the
    checkout."""
    target = Path(target)
    src = project_root()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(src / name, target / name)
    (target / "book").mkdir(exist_ok=True)
    for page in (src / "book").glob("*.md"):
        shutil.copy(page, target / "book" / page.name)
    if (src / "book" / "_static").is_dir():
        shutil.copytree(src / "book" / "_static", target / "book" / "_static", dirs_exist_ok=True)
    return target


def main(argv=None) -> int:
    """`python -m kn.runner --params P [--chapters CH ...] [--no-book] [--book-only]`: the old spelling of `kn`."""
    import argparse

    from . import cli

    parser = argparse.ArgumentParser(prog="python -m kn.runner", description="The old spelling of the kn command "
                                     "(kn run / kn chapter / kn book); see `kn --help`.")
    parser.add_argument("--params", help="params/<model>.yaml")
    parser.add_argument("--chapters", nargs="*", help="e.g. 01 02 (default: all)")
    parser.add_argument("-p", dest="overrides", nargs=2, action="append", metavar=("KEY", "VALUE"), default=[])
    parser.add_argument("--no-book", action="store_true", help="execute only; do not build the book")
    parser.add_argument("--book-only", action="store_true", help="build the book from the runs already executed")
    args = parser.parse_args(argv)
    if args.book_only:
        return cli.main(["book"])
    if not args.params:
        parser.error("--params is required (or --book-only)")
    command = ["chapter", args.params, *args.chapters] if args.chapters else ["run", args.params]
    command += [item for pair in args.overrides for item in ("-p", *pair)]
    return cli.main(command + (["--no-book"] if args.no_book else []))


if __name__ == "__main__":
    sys.exit(main())
