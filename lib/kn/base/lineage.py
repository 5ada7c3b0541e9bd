"""kn.base.lineage: which version of which run-folder record each chapter read, and so which chapters are stale.

A record is a file of the run folder ("detector_sets.parquet", "constant_set.json") or a folder ("attribution/", the
attribution store). kn.base.rundir.RunFolder keeps two small JSON files, each written atomically under its own lock:
    versions.json   {record: {"chapter": the chapter that wrote it, "version": its content hash, "written": UTC time}}
    consumed.json   {chapter: {"inputs": {record: {"chapter", "version"}}, "params_file", "completed"}}, replaced when
                    the chapter completes: what its page was computed from
A chapter is stale when a record it read has another version now (its producer ran again with another result), or when
it read an output of a stale chapter (refreshing that one will change it too). An identical re-run (same hash) stales
nothing; records written before this bookkeeping existed are not tracked.

API
    VERSIONS, CONSUMED                             the two files' names (without .json)
    load(path) -> dict                             a JSON object file; {} when it is missing or unreadable
    bytes_version(data) -> str / file_version(path) -> str     a content hash
    folder_version(path) -> str                    a hash of the folder's files (names and sizes; lock and temporary
                                                   files left out); the attribution store's parts are never rewritten
    Stale(chapter, older, via)                     why a chapter is stale: {producer: [records]} and stale chapters read
        .reason() -> str                           "was computed from an older output of chapter 4 (04_land:
                                                   detector_sets)", and/or "read the output of chapter 5 (...), itself stale"
    stale_chapters(run_path) -> {chapter: Stale}   in chapter order
    refresh_commands(params_file, chapters, overrides=None) -> [str]   "kn chapter PARAMS 05 06", one per set of -p values
    run_refresh_commands(run_path, chapters, params_file=None) -> [str]   the same with the run's recorded -p values and
                                                   (by default) the params file the chapters recorded
    stale_report(run_path, params_file=None) -> [str]   a line per stale chapter, then the commands; [] when none
    chapter_label(chapter) -> str                  "chapter 4 (04_land)"
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

VERSIONS = "versions"
CONSUMED = "consumed"


def bytes_version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def file_version(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def folder_version(path: str | Path) -> str:
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                   and not p.name.endswith(".lock")) if path.is_dir() else []
    listing = "\n".join(f"{p.name}\t{p.stat().st_size}" for p in files)
    return bytes_version(listing.encode())


def chapter_label(chapter: str | None) -> str:
    if not chapter:
        return "a writer outside the chapters"
    number = chapter.split("_")[0].lstrip("0") or "0"
    return f"chapter {number} ({chapter})"


def _shown(record: str) -> str:
    """"detector_sets.parquet" -> "detector_sets", "attribution/" -> "attribution"."""
    return record.rstrip("/").rsplit(".", 1)[0] if not record.endswith("/") else record.rstrip("/")


@dataclass
class Stale:
    chapter: str
    older: dict = field(default_factory=dict)  # {producer chapter (None: unknown): [records it wrote again]}
    via: list = field(default_factory=list)  # stale chapters whose output this one read

    def reason(self) -> str:
        older = [f"an older output of {chapter_label(producer)}: {', '.join(_shown(r) for r in records)}"
                 for producer, records in sorted(self.older.items(), key=lambda kv: kv[0] or "")]
        parts = [f"was computed from {' and '.join(older)}"] if older else []
        if self.via:
            parts.append(f"read the output of {' and '.join(chapter_label(c) for c in self.via)}, itself stale")
        return " and ".join(parts)


def load(path: str | Path) -> dict:
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def stale_chapters(run_path: str | Path) -> dict[str, Stale]:
    run_path = Path(run_path)
    versions = load(run_path / f"{VERSIONS}.json")
    consumed = load(run_path / f"{CONSUMED}.json")
    stale: dict[str, Stale] = {}
    for chapter in sorted(consumed):
        for record, seen in sorted((consumed[chapter].get("inputs") or {}).items()):
            now = versions.get(record)
            if now is not None and now.get("version") != seen.get("version"):
                found = stale.setdefault(chapter, Stale(chapter))
                found.older.setdefault(now.get("chapter"), []).append(record)
    changed = True
    while changed:  # a chapter that read (the current) output of a stale chapter is stale too
        changed = False
        for chapter in sorted(consumed):
            sources = {seen.get("chapter") for seen in (consumed[chapter].get("inputs") or {}).values()}
            via = sorted(c for c in sources if c in stale and c != chapter)
            found = stale.get(chapter)
            if via and (found is None or found.via != via):
                stale.setdefault(chapter, Stale(chapter)).via = via
                changed = True
    return {c: stale[c] for c in sorted(stale)}


def _value_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)  # JSON reads back as the same YAML value


def refresh_commands(params_file: str, chapters, overrides: dict | None = None) -> list[str]:
    """The `kn chapter` commands that re-run ``chapters`` as they were run last: one command per set of `-p` values
    (overrides.json's {chapter: {key: value}}), chapters in order."""
    overrides = overrides or {}
    groups: dict[str, list[str]] = {}
    for chapter in sorted(chapters):
        values = overrides.get(chapter) or {}
        flags = " ".join(f"-p {k} {shlex.quote(_value_text(v))}" for k, v in sorted(values.items()))
        groups.setdefault(flags, []).append(chapter.split("_")[0])
    return [" ".join(["kn chapter", shlex.quote(str(params_file)), *numbers] + ([flags] if flags else []))
            for flags, numbers in groups.items()]


def run_refresh_commands(run_path: str | Path, chapters, params_file: str | None = None) -> list[str]:
    run_path = Path(run_path)
    if not params_file:
        consumed = load(run_path / f"{CONSUMED}.json")
        params_file = next((consumed[c]["params_file"] for c in sorted(chapters)
                            if (consumed.get(c) or {}).get("params_file")), "PARAMS")
    return refresh_commands(params_file, chapters, load(run_path / "overrides.json"))


def stale_report(run_path: str | Path, params_file: str | None = None) -> list[str]:
    """For the terminal: "<chapter> <reason>" per stale chapter, then "refresh: <command>" lines."""
    stale = stale_chapters(run_path)
    if not stale:
        return []
    lines = [f"{chapter} {entry.reason()}" for chapter, entry in stale.items()]
    return lines + [f"refresh: {command}" for command in run_refresh_commands(run_path, stale, params_file)]
