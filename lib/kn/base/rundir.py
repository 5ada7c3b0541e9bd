"""kn.base.rundir: a run's folder, where each chapter writes what later chapters read (atomic tables and records,
the run-defining parameters).

API
    RunFolder(path)                       runs/<model>/
    .write_table(name, table) / .read_table(name, chapter=...)        parquet, written atomically
    .write_json(name, obj) / .read_json(name, chapter=...)
    .record_params(params, chapter)       params.json: later chapters refuse a run made with other data settings
    .update_json(name, update, default=None)   read-modify-write of a shared JSON record under its own lock
    .check_params(params)
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from kn.base.errors import MissingArtifact, ParameterError
from kn.base.io import atomic_write, atomic_write_bytes
from kn.base.params import StudyParams
from kn.base.runlock import locked_update

# Keys that define what the run *is*: a chapter re-executed with other values here would mix two studies.
RUN_DEFINING_KEYS = ("model", "seed", "facts_file", "templates_file", "templates_per_relation", "test_fraction",
                     "relations", "n_relations", "train_facts_per_relation", "test_facts_per_relation", "population",
                     "known_max_rank", "known_min_templates", "candidate_facts_per_relation", "data_dir")
FIRST_CHAPTER = "01_data_adaptation"


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def _missing(self, name: str, chapter: str | None) -> MissingArtifact:
        hint = f": run {chapter} for this model first" if chapter else ""
        return MissingArtifact(f"{self.path / name} does not exist{hint}")

    def write_table(self, name: str, table: pd.DataFrame) -> None:
        # returns nothing: a chapter cell ending with it shows no output (a path would name the builder's machine)
        atomic_write(self.path / f"{name}.parquet", lambda tmp: table.to_parquet(tmp, index=False))

    def read_table(self, name: str, chapter: str | None = None) -> pd.DataFrame:
        path = self.path / f"{name}.parquet"
        if not path.is_file():
            raise self._missing(path.name, chapter)
        return pd.read_parquet(path)

    def write_json(self, name: str, obj) -> None:
        atomic_write_bytes(self.path / f"{name}.json", json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def read_json(self, name: str, chapter: str | None = None):
        path = self.path / f"{name}.json"
        if not path.is_file():
            raise self._missing(path.name, chapter)
        return json.loads(path.read_text())

    def has(self, name: str) -> bool:
        return (self.path / name).exists()

    def update_json(self, name: str, update, default=None):
        """Read-modify-write of <name>.json under a lock of its own (kn.base.runlock.locked_update): several processes of
        one run (shard jobs, a chapter) never lose each other's entries."""
        return locked_update(self.path / f"{name}.json", update, default)

    def record_params(self, params: StudyParams, chapter: str, origin: dict | None = None) -> None:
        """Chapter 1 records the run-defining parameters (re-running it redefines the run); every chapter records
        the full set it ran with and, in ``origin``, where each non-default value came from (params file, notebook
        cell, override)."""
        def update(existing):
            existing = existing or {}
            if chapter == FIRST_CHAPTER or "run" not in existing:
                existing["run"] = {k: params.as_dict()[k] for k in RUN_DEFINING_KEYS}
            existing.setdefault("chapters", {})[chapter] = params.as_dict()
            existing.setdefault("origin", {})[chapter] = dict(origin or {})
            return existing

        self.update_json("params", update)

    def check_params(self, params: StudyParams) -> None:
        """Refuse to add to a run folder whose data settings differ from ``params``."""
        recorded = self.read_json("params", chapter="chapter 1 (01_data_adaptation)")["run"]
        now = {k: params.as_dict()[k] for k in RUN_DEFINING_KEYS}
        diff = {k: (recorded.get(k), now[k]) for k in RUN_DEFINING_KEYS if recorded.get(k) != now[k]}
        if diff:
            lines = ", ".join(f"{k}: run has {a!r}, parameters say {b!r}" for k, (a, b) in diff.items())
            raise ParameterError(f"{self.path.name} was made with other data settings ({lines}); re-run chapter 1 "
                                 f"or choose another run_dir")
