"""kn.base.rundir: a run's folder, where each chapter writes what later chapters read (atomic tables and records,
the run-defining parameters).

API
    RunFolder(path, chapter=None)         runs/<model>/, opened by ``chapter`` (kn.book.report.open_chapter): then its
                                          writes and reads are recorded (kn.base.lineage: versions.json, consumed.json)
    .write_table(name, table) / .read_table(name, chapter=...)        parquet, written atomically
    .write_json(name, obj) / .read_json(name, chapter=...)
    .folder(name) -> Path / .wrote_folder(name)    a sub-folder record (the attribution store): read / written
    .record_consumption(params_file="")   consumed.json: what this chapter read, once it has completed
    .record_params(params, chapter)       params.json: later chapters refuse a run made with other data settings
    .update_json(name, update, default=None)   read-modify-write of a shared JSON record under its own lock
    .check_params(params)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from kn.base import lineage
from kn.base.errors import MissingArtifact, ParameterError
from kn.base.io import atomic_write, atomic_write_bytes
from kn.base.params import StudyParams
from kn.base.runlock import locked_update

# Keys that define what the run *is*: a chapter re-executed with other values here would mix two studies.
RUN_DEFINING_KEYS = ("model", "seed", "facts_file", "templates_file", "templates_per_relation", "test_fraction",
                     "relations", "n_relations", "train_facts_per_relation", "test_facts_per_relation", "population",
                     "known_max_rank", "known_min_templates", "candidate_facts_per_relation", "data_dir")
FIRST_CHAPTER = "01_data_adaptation"
REFERENCE_MARKER = "REFERENCE.json"  # in a run folder copied from a reference run (kn.book.reference_book)


class RunFolder:
    def __init__(self, path: str | Path, chapter: str | None = None):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.chapter = chapter  # the chapter writing and reading through this object (None: nothing is recorded)
        self.inputs: dict = {}  # {record: {"chapter": producer, "version": ...}} this chapter has read

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def _missing(self, name: str, chapter: str | None) -> MissingArtifact:
        hint = f": run {chapter} for this model first" if chapter else ""
        return MissingArtifact(f"{self.path / name} does not exist{hint}")

    # --- lineage (kn.base.lineage): the index is updated before the file is renamed into place, so a write cut
    # short between the two leaves readers of the old file marked stale, never a new file taken for the old one
    def _wrote(self, record: str, version: str) -> None:
        entry = {"chapter": self.chapter, "version": version, "written": _now()}
        self.update_json(lineage.VERSIONS, lambda index: {**(index or {}), record: entry})

    def _read(self, record: str) -> None:
        if self.chapter is None:
            return
        entry = lineage.load(self.path / f"{lineage.VERSIONS}.json").get(record)
        if entry and entry.get("chapter") != self.chapter:  # a record of another chapter (or an untracked writer)
            self.inputs[record] = {"chapter": entry.get("chapter"), "version": entry.get("version")}

    def folder(self, name: str) -> Path:
        """The sub-folder ``name`` (the attribution store), its current version noted as read by this chapter."""
        self._read(f"{name}/")
        return self.path / name

    def wrote_folder(self, name: str) -> None:
        """Record the sub-folder ``name`` as written by this chapter, at its current content."""
        self._wrote(f"{name}/", lineage.folder_version(self.path / name))

    def record_consumption(self, params_file: str = "") -> None:
        """consumed.json's entry of this chapter, replaced: the records it read and their versions (call it when the
        chapter has completed; a failed chapter keeps the entry of its last good execution, as its page)."""
        if self.chapter is None:
            return
        entry = {"inputs": dict(self.inputs), "params_file": params_file, "completed": _now()}
        self.update_json(lineage.CONSUMED, lambda consumed: {**(consumed or {}), self.chapter: entry})

    def write_table(self, name: str, table: pd.DataFrame) -> None:
        # returns nothing: a chapter cell ending with it shows no output (a path would name the builder's machine)
        path = self.path / f"{name}.parquet"

        def write(tmp):
            table.to_parquet(tmp, index=False)
            self._wrote(path.name, lineage.file_version(tmp))

        atomic_write(path, write)

    def read_table(self, name: str, chapter: str | None = None) -> pd.DataFrame:
        path = self.path / f"{name}.parquet"
        if not path.is_file():
            raise self._missing(path.name, chapter)
        self._read(path.name)
        return pd.read_parquet(path)

    def write_json(self, name: str, obj) -> None:
        data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        self._wrote(f"{name}.json", lineage.bytes_version(data))
        atomic_write_bytes(self.path / f"{name}.json", data)

    def read_json(self, name: str, chapter: str | None = None):
        path = self.path / f"{name}.json"
        if not path.is_file():
            raise self._missing(path.name, chapter)
        self._read(path.name)
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


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
