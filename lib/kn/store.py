"""kn.store: a model's run folder, where each chapter writes what later chapters read.

API
    RunFolder(path)                       runs/<model>/
    .write_table(name, df) / .read_table(name, chapter=...)        parquet, written atomically
    .write_json(name, obj) / .read_json(name, chapter=...)
    .record_params(params, chapter)       params.json: later chapters refuse a run made with other data settings
    .check_params(params)
    atomic_write_bytes(path, data)
    MissingArtifact
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from .params import StudyParams

# Keys that define what the run *is*: a chapter re-executed with other values here would mix two studies.
RUN_DEFINING_KEYS = ("model", "seed", "templates_per_relation", "test_fraction", "relations", "n_relations",
                     "train_facts_per_relation", "test_facts_per_relation", "data_dir")


class MissingArtifact(FileNotFoundError):
    pass


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def _missing(self, name: str, chapter: str | None) -> MissingArtifact:
        hint = f": run {chapter} for this model first" if chapter else ""
        return MissingArtifact(f"{self.path / name} does not exist{hint}")

    def write_table(self, name: str, table: pd.DataFrame) -> Path:
        path = self.path / f"{name}.parquet"
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            table.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def read_table(self, name: str, chapter: str | None = None) -> pd.DataFrame:
        path = self.path / f"{name}.parquet"
        if not path.is_file():
            raise self._missing(path.name, chapter)
        return pd.read_parquet(path)

    def write_json(self, name: str, obj) -> Path:
        path = self.path / f"{name}.json"
        atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())
        return path

    def read_json(self, name: str, chapter: str | None = None):
        path = self.path / f"{name}.json"
        if not path.is_file():
            raise self._missing(path.name, chapter)
        return json.loads(path.read_text())

    def has(self, name: str) -> bool:
        return (self.path / name).exists()

    def record_params(self, params: StudyParams, chapter: str) -> None:
        """Chapter 1 records the run-defining parameters; every chapter records the full set it ran with."""
        existing = self.read_json("params") if self.has("params.json") else {}
        existing.setdefault("run", {k: params.as_dict()[k] for k in RUN_DEFINING_KEYS})
        existing.setdefault("chapters", {})[chapter] = params.as_dict()
        self.write_json("params", existing)

    def check_params(self, params: StudyParams) -> None:
        """Refuse to add to a run folder whose data settings differ from ``params``."""
        recorded = self.read_json("params", chapter="chapter 1 (01_data_adaptation)")["run"]
        now = {k: params.as_dict()[k] for k in RUN_DEFINING_KEYS}
        diff = {k: (recorded.get(k), now[k]) for k in RUN_DEFINING_KEYS if recorded.get(k) != now[k]}
        if diff:
            lines = ", ".join(f"{k}: run has {a!r}, parameters say {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"{self.path} was made with other data settings ({lines}); re-run chapter 1 "
                             f"or choose another run_dir")
