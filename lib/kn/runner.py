"""kn.runner: execute the chapters for a params file with papermill, then build the Jupyter Book.

API
    CHAPTERS                                   notebook names in order
    execute_chapters(params_file, chapters=None, *, book_root=None) -> dict[chapter, seconds]
    execute_results(book_root=None) -> Path    the results page, from every run folder under <book_root>/runs
    build_book(book_root=None) -> Path         results page, then jupyter-book 1.x, warnings as errors
    main(argv)                                 `python -m kn.runner --params params/gpt2.yaml [--chapters 02] [--no-book]`

Executed notebooks go to <book_root>/book/runs/<run name>/, the run's data to its run_dir (runs/<run name>/).
Every parameter is checked, and the data folder found, before the first notebook starts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .params import load_params, project_root

CHAPTERS = ("01_data_adaptation", "02_attribution", "03_overlap", "04_land", "05_amplification", "06_editing")


def _select(chapters) -> list[str]:
    if not chapters:
        return list(CHAPTERS)
    picked = []
    for want in chapters:
        match = [c for c in CHAPTERS if c == want or c.split("_")[0] == want.zfill(2)]
        if not match:
            raise SystemExit(f"unknown chapter {want!r}; chapters: {', '.join(CHAPTERS)}")
        picked += match
    return picked


def execute_chapters(params_file: str | Path, chapters=None, *, book_root: str | Path | None = None,
                     progress: bool = True) -> dict[str, float]:
    import papermill
    import yaml

    from .download import resolve_data_dir
    from .store import RunFolder

    params_file = Path(params_file)
    params = load_params(params_file)  # rejects unknown keys and bad values before anything runs
    selected = _select(chapters)
    if CHAPTERS[0] in selected:
        resolve_data_dir(params.data_dir or None)  # missing data fails here, not inside a notebook
    root = Path(book_root) if book_root else project_root()
    out_dir = root / "book" / "runs" / params.resolved_run_dir().name
    out_dir.mkdir(parents=True, exist_ok=True)
    run = RunFolder(params.resolved_run_dir())
    values = yaml.safe_load(params_file.read_text()) or {}
    values["run_dir"] = str(params.resolved_run_dir())
    timings = run.read_json("timings") if run.has("timings.json") else {}
    for chapter in selected:
        source = project_root() / "notebooks" / f"{chapter}.ipynb"
        target = out_dir / f"{chapter}.ipynb"
        started = time.perf_counter()
        papermill.execute_notebook(str(source), str(target), parameters=values, cwd=str(source.parent),
                                   progress_bar=progress, kernel_name="python3")
        timings[chapter] = round(time.perf_counter() - started, 1)
        _title_with_model(target, params.model)
        run.write_json("timings", timings)
    return {c: timings[c] for c in selected}


def _title_with_model(path: Path, model: str) -> None:
    """Name the model in the chapter's title: the book lists every model's chapters side by side."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            first, _, rest = cell.source.partition("\n")
            cell.source = f"{first} ({model})\n{rest}"
            break
    nbformat.write(nb, path)


def execute_results(book_root: str | Path | None = None) -> Path:
    """The results page: a notebook reading every run folder under <book_root>/runs, executed into book/generated/."""
    import papermill

    root = Path(book_root) if book_root else project_root()
    source = project_root() / "notebooks" / "results.ipynb"
    target = root / "book" / "generated" / "results.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(source), str(target), parameters={"runs_root": str(root / "runs")},
                               cwd=str(source.parent), progress_bar=False, kernel_name="python3")
    return target


def build_book(book_root: str | Path | None = None) -> Path:
    """Execute the results page, then build the book (warnings are errors; the log is kept in book/build.log)."""
    root = Path(book_root) if book_root else project_root()
    execute_results(root)
    build = root / "book" / "_build"
    log = root / "book" / "build.log"
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "--path-output", str(root / "book"),
           "--warningiserror", "--keep-going"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0 or not (build / "html" / "index.html").is_file():
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise RuntimeError(f"jupyter-book build failed (full log: {log}; reports: {build / 'html' / 'reports'}):\n{tail}")
    return build / "html" / "index.html"


def prepare_book_root(target: str | Path) -> Path:
    """Copy the book's sources (config, toc, pages) to ``target``: tests build there, not in the checkout."""
    target = Path(target)
    src = project_root()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(src / name, target / name)
    (target / "book").mkdir(exist_ok=True)
    for page in (src / "book").glob("*.md"):
        shutil.copy(page, target / "book" / page.name)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kn.runner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", required=True, help="params/<model>.yaml")
    parser.add_argument("--chapters", nargs="*", help="e.g. 01 02 (default: all)")
    parser.add_argument("--no-book", action="store_true", help="execute only; do not build the book")
    parser.add_argument("--book-only", action="store_true", help="build the book from the runs already executed")
    args = parser.parse_args(argv)
    if not args.book_only:
        timings = execute_chapters(args.params, args.chapters)
        print(json.dumps(timings, indent=2))
    if not args.no_book:
        started = time.perf_counter()
        index = build_book()
        print(f"book built in {time.perf_counter() - started:.0f} s: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
