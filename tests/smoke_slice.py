"""A PARAREL slice for the chapter tests: relations P176 and P178, whose facts overlap (the same subject and object in
both, with shared wordings), so the chapters run on cross-relation duplicates; and the smoke run on it, made one way
for the tests (tests/book/test_notebooks.py) and for the smoke slice's reference run (scripts/smoke_reference.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from kn.book import build, runner

ROOT = Path(__file__).resolve().parents[1]
RELATIONS = ("P176", "P178")
OTHERS_PER_RELATION = 10


def write_smoke_slice(source: Path, target: Path) -> Path:
    """Copy into ``target`` a data folder (same layout as the full one) holding, for each of RELATIONS, every
    (subject, object) pair the two relations share plus the first OTHERS_PER_RELATION pairs of its own."""
    facts = json.loads((source / "Hunter-DDM_knowledge-neurons" / "PARAREL" / "query_pairs.json").read_text())
    shared = set.intersection(*({tuple(p) for p in facts[r]} for r in RELATIONS))
    sliced = {}
    for relation in RELATIONS:
        own = [p for p in facts[relation] if tuple(p) not in shared][:OTHERS_PER_RELATION]
        sliced[relation] = [p for p in facts[relation] if tuple(p) in shared] + own
    out = target / "Hunter-DDM_knowledge-neurons" / "PARAREL"
    out.mkdir(parents=True, exist_ok=True)
    (out / "query_pairs.json").write_text(json.dumps(sliced))
    (target / "pararel" / "patterns").mkdir(parents=True, exist_ok=True)
    for relation in RELATIONS:
        shutil.copy(source / "pararel" / "patterns" / f"{relation}.jsonl", target / "pararel" / "patterns")
    return target


def make_smoke_run(work: Path, data_dir: Path, *, progress: bool = False):
    """Every chapter of params/smoke.yaml on the slice of ``data_dir``, in a book root prepared in ``work``. Returns
    (book root, run folder, params file written there, {chapter: seconds})."""
    root = build.prepare_book_root(Path(work))
    values = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    values["run_dir"] = str(root / "runs" / "smoke")
    values["data_dir"] = str(write_smoke_slice(Path(data_dir), root / "smoke-data"))
    params = root / "smoke.yaml"
    params.write_text(yaml.safe_dump(values))
    timings = runner.execute_chapters(params, book_root=root, progress=progress)
    return root, Path(values["run_dir"]), params, timings


if __name__ == "__main__":  # python tests/smoke_slice.py SOURCE TARGET
    import sys

    print(write_smoke_slice(Path(sys.argv[1]), Path(sys.argv[2])))
