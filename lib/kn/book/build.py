"""kn.book.build: the book from the runs present: the results page, each run's part of the navigation, jupyter-book.

API
    execute_results(book_root=None) -> Path    the results page, from every run folder under <book_root>/runs
    build_book(book_root=None) -> Path         the reference runs where no run of their name was made here
                                               (kn.book.reference_book), prune_book_runs, the results page, then
                                               jupyter-book 1.x, warnings as errors
    prune_book_runs(book_root=None) -> list    failed pages (from older runners) and empty folders out of book/runs/
    mark_stale_pages(book_root=None) -> list   a stale chapter's page (kn.base.lineage) says so at its top, with the
                                               command that refreshes it; a page no longer stale loses the label
    prepare_book_root(target) -> Path          the book's sources copied to ``target`` (tests build there)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import yaml

from kn.base import lineage
from kn.base.io import atomic_write_bytes
from kn.base.params import project_root
from kn.base.rundir import RunFolder
from kn.book import reference_book
from kn.book.results import run_title


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
    import nbformat  # notebook machinery only when chapters run or the book is built

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
    import nbformat  # notebook machinery only when chapters run or the book is built


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


def _title_with_model(path: Path, model: str) -> None:
    """Name the model and the run (the page's folder) in the chapter's title (kept for callers of the old runner;
    _publish does it now)."""
    import nbformat  # notebook machinery only when chapters run or the book is built

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            cell.source = _run_heading(cell.source, model, Path(path).parent.name)
            break
    nbformat.write(nb, path)


# --- the book ----------------------------------------------------------------------------------------------------------
def execute_results(book_root: str | Path | None = None) -> Path:
    """The results page: a notebook reading every run folder under <book_root>/runs, executed into book/generated/."""
    import papermill  # notebook machinery only when chapters run or the book is built

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


def mark_stale_pages(book_root: str | Path | None = None) -> list[str]:
    """Put an admonition (a markdown cell tagged STALE_TAG) under the title of every page of book/runs/<run>/ whose
    chapter is stale in <book_root>/runs/<run> (kn.base.lineage), naming the older output and the `kn chapter`
    command that refreshes the run's stale chapters; remove it from pages no longer stale. Returns the pages labelled."""
    import nbformat  # notebook machinery only when chapters run or the book is built

    root = Path(book_root) if book_root else project_root()
    runs = root / "book" / "runs"
    labelled = []
    for folder in sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else ():
        record = root / "runs" / folder.name
        stale = lineage.stale_chapters(record) if record.is_dir() else {}
        for page in sorted(folder.glob("*.ipynb")):
            nb = nbformat.read(page, as_version=4)
            cells = [c for c in nb.cells if STALE_TAG not in c.get("metadata", {}).get("tags", [])]
            if page.stem in stale:
                params_file = ((nb.metadata.get("papermill") or {}).get("parameters") or {}).get("params_file")
                commands = lineage.run_refresh_commands(record, stale, params_file)
                text = (f":::{{admonition}} Stale chapter\n:class: warning\nThis chapter {stale[page.stem].reason()}. "
                        f"Re-run: {', then '.join(f'`{c}`' for c in commands)}\n:::")
                at = next((i + 1 for i, c in enumerate(cells) if c.cell_type == "markdown"
                           and c.source.startswith("# ")), 0)
                cells.insert(at, nbformat.v4.new_markdown_cell(text, metadata={"tags": [STALE_TAG]}))
                labelled.append(f"{folder.name}/{page.stem}")
            if [c.source for c in cells] != [c.source for c in nb.cells]:
                nb.cells = cells
                atomic_write_bytes(page, nbformat.writes(nb).encode())
    return labelled


def _page_title(page: Path) -> str:
    """A published chapter's title without the model and run it names (its part of the navigation names them)."""
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
    (kn.book.results.run_title, from <root>/runs/<name>), its chapters in order under their own titles."""
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
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    parts = []
    for part in toc.get("parts", []):
        parts += _run_parts(root) if part.get("caption") == RUNS_CAPTION else [part]
    toc["parts"] = parts
    target = root / "book" / "generated" / "_toc.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("# Written by kn.book.build.build_book from _toc.yml: one part per run.\n"
                      + yaml.safe_dump(toc, sort_keys=False, allow_unicode=True))
    return target


def build_book(book_root: str | Path | None = None) -> Path:
    """Execute the results page, then build the book (warnings are errors; the log is kept in book/build.log), with
    one part of the navigation per run (_book_toc)."""
    root = Path(book_root) if book_root else project_root()
    for name in reference_book.materialize(root):
        _say(f"[book] {name}: the reference run (reference/{name}), no run of that name here")
    for line in prune_book_runs(root):
        _say(f"[book] {line}")
    for page in mark_stale_pages(root):
        _say(f"[book] {page}: labelled stale")
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


# The kernel's start-up log (e.g. ipykernel 7's "running over TCP without encryption") would reach the terminal's stderr,
# between the command's own lines; a kernel that dies still fails the chapter (DeadKernelError).
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]


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


# what _run_heading adds, and the model alone that older runners added
_RUN_SUFFIX = re.compile(r" \([^()]*\)(, run [^()]+)?$")


RUNS_CAPTION = "Runs"  # the part of _toc.yml that build_book replaces by one part per run
STALE_TAG = "kn-stale"  # the markdown cell mark_stale_pages puts under a stale chapter's title


# --- executing ---------------------------------------------------------------------------------------------------------
_print_lock = threading.Lock()
