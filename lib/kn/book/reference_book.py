"""kn.book.reference_book: the book from the study's reference runs (kn.book.reference) where no run of that name was
made here, and a run of the reader's own replacing one whole: the two are never mixed.

A copied reference run is an ordinary run folder (runs/<name>: the reference's record/) holding the marker
kn.base.rundir.REFERENCE_MARKER (its provenance: commit, date, command), and its pages (book/runs/<name>: the
reference's pages/), each labelled at its top as the reference run of commit X, and, where the code of that chapter
changed since (kn.book.reference.stale_code), as made by an older commit.

API
    REFERENCE_TAG                                the tag of the label cell
    materialize(root, reference_root=None, *, code_root=None) -> [name]   every reference/<name> (default
        <root>/reference) with no runs/<name> of the reader's own, copied into the book root (again, where it was
        copied before: a refreshed reference replaces the old copy); code_root: the checkout whose notebooks and lib
        the staleness is read against (default the project)
    reference_of(run_dir) -> dict | None         the marker's provenance, None for a run made here
    reproduction_table(runs, reference_root=None) -> DataFrame   the results page's line per run: does it reproduce
        the reference run of its name (kn.book.reference.verify), under which versions
    claim_run_dir(run_dir, book_dir, chapters, first) -> bool   before a run starts in runs/<name>: a reference copy
        is removed whole when chapter 1 (``first``) is among ``chapters`` (the reader's run replaces it; True), a
        ParameterError when a later chapter alone would add to it; False for any other folder
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from kn.base import lineage
from kn.base.errors import ParameterError
from kn.base.io import atomic_write_bytes
from kn.base.params import project_root
from kn.base.rundir import REFERENCE_MARKER
from kn.book.reference import REFERENCE_FOLDER, stale_code, verify

REFERENCE_TAG = "kn-reference-run"


def reference_of(run_dir) -> dict | None:
    marker = Path(run_dir) / REFERENCE_MARKER
    return lineage.load(marker) if marker.is_file() else None


def _label(name: str, provenance: dict, stale: tuple | None) -> str:
    commit = (provenance.get("commit") or "unknown")[:10]
    date = (provenance.get("date") or "undated")[:10]
    text = (f":::{{admonition}} Reference run\n:class: note\nThis page is the study's reference run `{name}`, made by "
            f"commit {commit} on {date} (`make reference`) and shown as it was published: nothing on it was computed "
            f"on this machine. `kn run params/{name}.yaml` replaces the whole run with your own, and `kn verify "
            f"runs/{name}` then says whether yours reproduces it.")
    if stale is not None:
        text += (f" **Made by an older commit ({(stale[0] or commit)[:10]}); its code changed since**: its numbers "
                 "are those of that code (`kn verify --stale runs/" + name + "` lists such chapters).")
    return text + "\n:::"


def _labelled(page: Path, text: str) -> bytes:
    """The page with the label cell right under its title (an older label removed)."""
    notebook = json.loads(page.read_text())
    cells = [c for c in notebook.get("cells", []) if REFERENCE_TAG not in c.get("metadata", {}).get("tags", [])]
    at = next((i + 1 for i, c in enumerate(cells) if c.get("cell_type") == "markdown"
               and "".join(c.get("source", "")).startswith("# ")), 0)
    cells.insert(at, {"cell_type": "markdown", "id": f"{REFERENCE_TAG}-label", "metadata": {"tags": [REFERENCE_TAG]},
                      "source": text.splitlines(keepends=True)})
    notebook["cells"] = cells
    return (json.dumps(notebook, indent=1, ensure_ascii=False) + "\n").encode()


def materialize(root, reference_root=None, *, code_root=None) -> list[str]:
    root = Path(root)
    reference_root = Path(reference_root) if reference_root else root / REFERENCE_FOLDER
    code_root = Path(code_root) if code_root else project_root()
    copied = []
    folders = sorted(p for p in reference_root.iterdir() if (p / "record").is_dir()) if reference_root.is_dir() else []
    for folder in folders:
        run_dir, book_dir = root / "runs" / folder.name, root / "book" / "runs" / folder.name
        if run_dir.exists() and reference_of(run_dir) is None:
            continue  # the reader's own run of that name: the book shows it, never the reference beside it
        provenance = lineage.load(folder / "provenance.json")
        stale = stale_code(folder, code_root / "notebooks", code_root / "lib")
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(book_dir, ignore_errors=True)
        shutil.copytree(folder / "record", run_dir)
        atomic_write_bytes(run_dir / REFERENCE_MARKER, (json.dumps(provenance, indent=2) + "\n").encode())
        book_dir.mkdir(parents=True)
        for page in sorted((folder / "pages").glob("*.ipynb")):
            atomic_write_bytes(book_dir / page.name, _labelled(page, _label(folder.name, provenance,
                                                                            stale.get(page.stem))))
        copied.append(folder.name)
    return copied


def claim_run_dir(run_dir, book_dir, chapters, first) -> bool:
    provenance = reference_of(run_dir)
    if provenance is None:
        return False
    if first not in chapters:
        raise ParameterError(f"{Path(run_dir).name} holds the reference run of commit "
                             f"{(provenance.get('commit') or 'unknown')[:10]}, copied by `kn book`; a later chapter "
                             "would add your results to it: run every chapter (`kn run PARAMS`), which replaces it "
                             "with your own, or choose another run folder with `-p run_dir runs/NAME`")
    shutil.rmtree(run_dir)
    shutil.rmtree(book_dir, ignore_errors=True)
    return True


def reproduction_table(runs: dict, reference_root=None) -> pd.DataFrame:
    """The results page's line per run ({name: RunFolder}): "against the reference" (verify's first line and, where
    numbers differ, the verdicts that agree; or a reference copy; or none of that name) and "versions" (what differs
    from the reference's torch, transformers and CPU flags). reference_root: default <project>/reference."""
    root = Path(reference_root) if reference_root else project_root() / REFERENCE_FOLDER
    rows = {}
    for name, folder in runs.items():
        path = Path(getattr(folder, "path", folder))
        marker, reference_dir = path / REFERENCE_MARKER, root / name
        if marker.is_file():
            commit = (lineage.load(marker).get("commit") or "unknown")[:10]
            rows[name] = {"against the reference": f"the reference run itself (commit {commit}), not made here",
                          "versions": "as its provenance records"}
        elif not (reference_dir / "record").is_dir():
            rows[name] = {"against the reference": "no reference run of this name", "versions": "–"}
        else:
            result = verify(path, reference_dir)
            lines = result.lines()
            verdict_line = next((line for line in lines if line.startswith("verdicts: ")), None)
            rows[name] = {"against the reference": lines[0] + (f"; {verdict_line}" if verdict_line else ""),
                          "versions": "; ".join(result.environment_differs)
                          or "the reference's torch, transformers and CPU flags"}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["against the reference", "versions"])
    frame.index.name = "run"
    return frame
