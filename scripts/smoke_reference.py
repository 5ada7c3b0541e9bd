"""The smoke slice's reference run (tests/reference/smoke): every chapter on the slice the chapter tests use
(tests/smoke_slice.py, params/smoke.yaml), made exactly as the tests' smoke run is made and published with its
provenance. The notebook tests hold their own smoke run to it with `kn verify`'s comparison, number by number, so a
change that alters any chapter's numbers on the slice fails there until this is re-run and its result committed, as a
reviewed regression file. Its executed pages are left out (2 MB the tests do not read: only the records and the
provenance are kept). `make reference-smoke` runs it (about 7 minutes on a 2-core CPU).

    python scripts/smoke_reference.py [TARGET]     (default tests/reference/smoke; KN_DATA_DIR: the PARAREL data)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from smoke_slice import make_smoke_run  # noqa: E402  (tests/ is not a package)

from kn.base.errors import BadInput  # noqa: E402
from kn.book import reference  # noqa: E402

TARGET = ROOT / "tests" / "reference" / "smoke"
COMMAND = "make reference-smoke"
PARAMS_FILE = "params/smoke.yaml, data_dir: tests/smoke_slice.py's slice of the PARAREL data"


def main(argv: list[str]) -> int:
    target = Path(argv[0]).absolute() if argv else TARGET
    data = os.environ.get("KN_DATA_DIR")
    if not data or not Path(data).is_dir():
        print("smoke_reference: error: KN_DATA_DIR must name the PARAREL data folder", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="kn-smoke-reference-") as work:
        try:
            root, run_dir, _, _ = make_smoke_run(Path(work), Path(data), progress=True)
            reference.publish(run_dir, root / "book" / "runs" / "smoke", target, command=COMMAND,
                              params_file=PARAMS_FILE)
        except BadInput as error:
            print(f"smoke_reference: error: {error}", file=sys.stderr)
            return 2
    shutil.rmtree(target / "pages")
    provenance = json.loads((target / "provenance.json").read_text())
    provenance["left_out"].append("pages/ (the executed chapters: the tests read only the numbers)")
    provenance["size_bytes"] = sum(p.stat().st_size for p in (target / "record").iterdir())
    (target / "provenance.json").write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    print(f"[reference] the smoke slice's reference run is in {target}: "
          f"{len(reference.numbers(target / 'record'))} numbers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
