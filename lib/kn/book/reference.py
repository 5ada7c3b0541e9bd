"""kn.book.reference: the study's reference runs, kept in the repository: the results a reader sees before running
anything, the numbers `kn verify` holds a run to, and the README's Results block.

A reference run is reference/<run name>/ at the project root: record/ (the run folder's *.json and its *.parquet of
at most MAX_TABLE_BYTES, top level only: never the attribution store, LAND's weights, logs/, failed/, slurm/, locks),
pages/ (book/runs/<run name>/*.ipynb, outputs kept) and provenance.json (run, params_file, command, date (UTC), commit,
dirty, lock_sha256, machine, versions (python, torch, transformers, kn: the run's environment.json), chapter_seconds,
chapter_code ({chapter: chapter_code(...) and the commit that made the chapter}), left_out, size_bytes).

API
    REFERENCE_FOLDER, MAX_TABLE_BYTES, NUMERIC_FLAGS, README_START, README_END
    publish(run_dir, pages_dir, target, *, command, params_file, root=None) -> Path   a run whose chapter 1 completed
        and no chapter is stale (ParameterError otherwise), atomically; root: the checkout (lock, git, notebooks/, lib/)
    machine() -> dict                       platform, processor, cores, the NUMERIC_FLAGS this CPU has (None: unknown)
    numbers(record_dir) -> {name: float}    every number of the chapter summaries (*_summary.json), named
        "land_summary.json:table7.N_L.mean"; booleans as 0 / 1, None as nan; timings, thread counts and prose left out;
        list items named by their "name" (claims: "claims[LAND beats the relation prior].holds") else by position
    chapter_code(notebook, lib_root) -> {"hash", "files"}   sha256 over the notebook's code cells and every kn module
        they import, transitively (a static walk of the imports; packages' __init__.py included)
    stale_code(reference_dir, notebooks_dir, lib_root) -> {chapter: (commit, recorded hash, current hash or None)}
    verify(run_dir, reference_dir, *, rtol=0.0) -> Verification   number by number; exact unless rtol > 0
    Verification(equal, differ, missing, extra, environment_differs, rtol, close, verdicts_compared, verdicts_differ)
    tolerance_reason(verification) -> str   "--rtol 1e-06: a different torch build", or why nothing justifies it
    results_markdown(reference_root) -> str   the papers' headline values beside each reference run's, with verdicts
    readme_block(readme_text) -> str          the text between README_START and README_END (ParameterError: none)
    update_readme(path, reference_root)       that block rewritten;  readme_matches(path, reference_root) -> bool
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from kn.base import lineage
from kn.base.errors import MissingArtifact, ParameterError
from kn.base.io import atomic_write_bytes
from kn.base.params import project_root
from kn.base.rundir import FIRST_CHAPTER, RunFolder
from kn.base.stats import Interval
from kn.book import results, verdicts
from kn.book.environment import LOCK_FILE, current_environment
from kn.book.report import HEADERS, fmt

REFERENCE_FOLDER = "reference"
MAX_TABLE_BYTES = 2 * 1024 * 1024
NUMERIC_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "neon")  # what changes float results
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
# A word of a key that says when, how fast or with what a run was made, not what it found: a faithful re-run differs
# there. computed_now depends on what the store already held, batch_prompts on the device (2 on a CPU, 8 on a GPU).
NOT_RESULTS = {"seconds", "elapsed", "time", "written", "completed", "date", "versions", "environment", "commit",
               "path", "threads"}
EXECUTION_KEYS = {"computed_now", "batch_prompts"}


# --- publishing ------------------------------------------------------------------------------------------------------
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _git(root: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _run_versions(run_dir: Path) -> dict:
    """The versions the chapters recorded in environment.json; several joined by ", "; None: none recorded."""
    records = [{**(env.get("packages") or {}), "python": env.get("python"), "kn": env.get("kn_version")}
               for env in lineage.load(run_dir / "environment.json").values()]
    return {name: ", ".join(sorted({str(r[name]) for r in records if r.get(name) is not None})) or None
            for name in ("python", "kn", "torch", "transformers")}


def _chapter_codes(run_dir: Path, root: Path, checkout: bool) -> dict:
    """chapter_code of each completed chapter and the commit that made it; in a checkout, a chapter whose code at that
    commit differs from the checkout's is refused (its hash would describe code that did not make it)."""
    environment = lineage.load(run_dir / "environment.json")
    codes = {}
    for chapter in sorted(lineage.load(run_dir / "timings.json")):
        notebook = root / "notebooks" / f"{chapter}.ipynb"
        if not notebook.is_file():
            continue
        code = chapter_code(notebook, root / "lib")
        made_by = (environment.get(chapter) or {}).get("commit")
        if checkout and made_by and _git(root, "diff", "--quiet", made_by, "--", *code["files"]) is None:
            changed = [path for path, digest in _code_digests(notebook, root / "lib").items()
                       if _digest(_git(root, "show", f"{made_by}:{path}"), path) != digest]
            if changed:  # (a notebook's text alone may differ: its code cells are what count)
                raise ParameterError(f"{chapter} was made by commit {made_by[:10]}, and its code there differs from "
                                     f"the checkout's ({', '.join(changed[:4])}): re-run it before publishing")
        codes[chapter] = {**code, "commit": made_by,
                          "dirty": (environment.get(chapter) or {}).get("dirty")}
    return codes


def machine() -> dict:
    try:  # each key's first "key: value" line (one block per core)
        info = dict(reversed([[part.strip() for part in line.split(":", 1)]
                              for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line]))
    except OSError:  # not Linux: the flags are unknown, not absent
        info = {}
    flags = set((info.get("flags") or info.get("Features") or "").split())
    if "asimd" in flags:  # ARM's /proc/cpuinfo calls NEON asimd
        flags.add("neon")
    return {"platform": platform.platform(), "processor": info.get("model name") or platform.processor() or None,
            "cores": os.cpu_count(), "flags": [f for f in NUMERIC_FLAGS if f in flags] if info else None}


def publish(run_dir, pages_dir, target, *, command: str, params_file: str, root=None) -> Path:
    run_dir, pages_dir, target = Path(run_dir), Path(pages_dir), Path(target)
    root = Path(root) if root else project_root()
    if not run_dir.is_dir():
        raise MissingArtifact(f"no run folder {run_dir}")
    completed = set(lineage.load(run_dir / "timings.json")) | set(lineage.load(run_dir / f"{lineage.CONSUMED}.json"))
    if FIRST_CHAPTER not in completed or not (run_dir / "data_summary.json").is_file():
        raise ParameterError(f"{run_dir}: chapter 1 ({FIRST_CHAPTER}) has not completed there: nothing to publish")
    stale = lineage.stale_chapters(run_dir)
    if stale:
        commands = "; ".join(lineage.run_refresh_commands(run_dir, stale))
        raise ParameterError(f"{run_dir}: stale chapters ({', '.join(stale)}) were computed from older outputs of "
                             f"earlier ones; refresh them first: {commands}")
    if not any(pages_dir.glob("*.ipynb")):
        raise MissingArtifact(f"no executed chapters in {pages_dir}: name their folder with --pages")
    environment = current_environment(root)
    code = _chapter_codes(run_dir, root, checkout=environment["commit"] is not None)
    lock = root / LOCK_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        (staging / "record").mkdir()
        (staging / "pages").mkdir()
        left_out = []
        # top level only, hidden files (an atomic write's temporary file, the run's lock) left out
        for path in sorted(p for p in run_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
            small = path.suffix == ".json" or (path.suffix == ".parquet" and path.stat().st_size <= MAX_TABLE_BYTES)
            if small:
                shutil.copyfile(path, staging / "record" / path.name)
            elif path.suffix == ".parquet":
                left_out.append(f"{path.name} ({path.stat().st_size / 2**20:.1f} MiB)")
        for page in sorted(pages_dir.glob("*.ipynb")):
            shutil.copyfile(page, staging / "pages" / page.name)
        provenance = {
            "run": run_dir.name, "params_file": params_file, "command": command,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "commit": environment["commit"], "dirty": environment["dirty"],
            "lock_sha256": _sha256(lock.read_bytes()) if lock.is_file() else None, "machine": machine(),
            "versions": _run_versions(run_dir), "chapter_seconds": lineage.load(run_dir / "timings.json"),
            "chapter_code": code, "left_out": left_out,
            "size_bytes": sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())}
        (staging / "provenance.json").write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
        _replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _replace(staging: Path, target: Path) -> None:
    """Rename staging to target; an existing target moves aside and goes once the new one is in place (a failure puts
    it back): target is never a half-copied reference."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    moved = target.exists() and os.replace(target, old) is None
    try:
        os.replace(staging, target)
    except BaseException:
        if moved:
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


# --- the numbers -----------------------------------------------------------------------------------------------------
def numbers(record_dir) -> dict[str, float]:
    found: dict[str, float] = {}
    for path in sorted(Path(record_dir).glob("*_summary.json")):
        _flatten(json.loads(path.read_text()), f"{path.name}:", found)
    return found


def _flatten(value, name: str, out: dict) -> None:
    def _child(key: str) -> str:  # "file.json:" + "table7", then ".N_L", "[3]", "[claim name]"
        return name + key if name.endswith(":") or key.startswith("[") else f"{name}.{key}"

    if isinstance(value, dict):
        if set(value) == {"__interval__"}:  # kn.book.summaries' encoding of an Interval: its fields are the numbers
            value = value["__interval__"]
        for key, item in value.items():
            words = set(re.split(r"[^a-z0-9]+", str(key).lower()))
            if key not in EXECUTION_KEYS and not words & NOT_RESULTS:
                _flatten(item, _child(str(key)), out)
    elif isinstance(value, list):
        names = [item.get("name") if isinstance(item, dict) else None for item in value]
        keyed = all(isinstance(n, str) for n in names) and len(set(names)) == len(names)  # claims, by their name
        for i, item in enumerate(value):
            _flatten(item, _child(f"[{names[i] if keyed else i}]"), out)
    elif isinstance(value, bool):  # before int: a verdict that flips is a number that changes
        out[name] = float(value)
    elif value is None:
        out[name] = math.nan
    elif isinstance(value, (int, float)):
        out[name] = float(value)
    # strings are prose or labels (a claim's sentence, a rule's name): its holds, its interval are what count


# --- the code a chapter depends on -----------------------------------------------------------------------------------
def _code_cells(notebook_bytes: bytes) -> list[str]:
    cells = json.loads(notebook_bytes).get("cells", [])
    return ["".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code"]


def _digest(content: bytes | None, path: str) -> str | None:
    """A file's sha256; a notebook's over its code cells (outputs and metadata do not count); None: no file."""
    if content is None:
        return None
    return _sha256(json.dumps(_code_cells(content)).encode() if path.startswith("notebooks/") else content)


def _kn_imports(tree: ast.Module, module: str | None = None, is_package: bool = False) -> set[str]:
    """Dotted names of `import kn.x`, `from kn.x import y` (y a module or not), relative imports (from ``module``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "kn"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if module is None:
                    continue
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            if base.split(".")[0] == "kn":
                found |= {base} | {f"{base}.{a.name}" for a in node.names}
    return found


def _module_files(dotted: str, lib_root: Path) -> list[Path]:
    """The files importing ``dotted`` runs: each package's __init__.py, then the module (an attribute: no file)."""
    files, parts = [], dotted.split(".")
    for i in range(1, len(parts) + 1):
        stem = lib_root.joinpath(*parts[:i])
        found = [p for p in (stem / "__init__.py", stem.with_suffix(".py")) if p.is_file()]
        if not found:
            break
        files.append(found[0])
    return files


def _code_digests(notebook: Path, lib_root: Path) -> dict[str, str]:
    """{path relative to the checkout ("notebooks/04_land.ipynb", "lib/kn/base/stats.py"): sha256}."""
    digests = {f"notebooks/{notebook.name}": _digest(notebook.read_bytes(), "notebooks/")}
    cells = ["\n".join("" if line.lstrip()[:1] in "%!" else line for line in source.splitlines())  # no IPython magics
             for source in _code_cells(notebook.read_bytes())]
    todo = sorted({module for cell in cells for module in _kn_imports(ast.parse(cell))})
    seen: set[Path] = set()
    while todo:
        for path in _module_files(todo.pop(), lib_root):
            if path in seen:
                continue
            seen.add(path)
            parts = list(path.relative_to(lib_root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            module = ".".join(parts[:-1] if is_package else parts)
            todo += sorted(_kn_imports(ast.parse(path.read_text()), module, is_package))
            digests[f"lib/{path.relative_to(lib_root).as_posix()}"] = _sha256(path.read_bytes())
    return digests


def chapter_code(notebook, lib_root) -> dict:
    digests = _code_digests(Path(notebook), Path(lib_root))
    listing = "\n".join(f"{path}\t{digest}" for path, digest in sorted(digests.items()))
    return {"hash": _sha256(listing.encode()), "files": sorted(digests)}


def stale_code(reference_dir, notebooks_dir, lib_root) -> dict:
    provenance = lineage.load(Path(reference_dir) / "provenance.json")
    out = {}
    for chapter, recorded in sorted((provenance.get("chapter_code") or {}).items()):
        notebook = Path(notebooks_dir) / f"{chapter}.ipynb"
        current = chapter_code(notebook, lib_root)["hash"] if notebook.is_file() else None
        if current != recorded.get("hash"):
            out[chapter] = (recorded.get("commit") or provenance.get("commit"), recorded.get("hash"), current)
    return out


# --- verifying a run -------------------------------------------------------------------------------------------------
@dataclass
class Verification:
    equal: int
    differ: list  # (name, reference, this run, relative difference)
    missing: list  # names the reference has and the run lacks
    extra: list  # names the run has and the reference lacks (reported; a reference still reproduced)
    environment_differs: list  # "torch: reference X, this run Y", CPU flags
    rtol: float = 0.0
    close: int = 0  # of the equal, those equal only within rtol
    verdicts_compared: int = 0  # the verdicts (every "...holds" number: claims, contrasts) in both
    verdicts_differ: list = field(default_factory=list)  # their names where the verdict differs

    @property
    def ok(self) -> bool:
        return not self.differ and not self.missing

    def lines(self) -> list[str]:
        out = ([f"reproduces the reference: {self.equal} numbers equal"] if self.ok else
               [f"does not reproduce the reference: {len(self.differ)} numbers differ, {len(self.missing)} missing, "
                f"{self.equal} equal"])
        if not self.ok and self.verdicts_compared:  # what a reader acts on: did any claim's verdict move?
            out.append(f"verdicts: {self.verdicts_compared - len(self.verdicts_differ)} of {self.verdicts_compared} "
                       "equal" + (f"; these differ: {', '.join(self.verdicts_differ)}" if self.verdicts_differ else ""))
        out += [f"{name}: reference {a!r}, this run {b!r} (relative difference {rel:.3g})"
                for name, a, b, rel in self.differ]
        for names, what in ((self.missing, "of the reference are missing from this run"),
                            (self.extra, "of this run are not in the reference")):
            if names:
                shown = ", ".join(names[:5]) + (f" ... ({len(names) - 5} more)" if len(names) > 5 else "")
                out.append(f"{len(names)} numbers {what}: {shown}")
        if self.rtol:
            out.append(f"compared within {tolerance_reason(self)}; {self.close} numbers equal only within it")
        return out + [f"environment: {line}" for line in self.environment_differs]


def tolerance_reason(verification: Verification) -> str:
    causes = {"torch": "a different torch build", "transformers": "a different transformers release",
              "CPU flags": "a different CPU instruction set"}
    found = [cause for what, cause in causes.items() if any(line.startswith(what + ":")
                                                            for line in verification.environment_differs)]
    return f"--rtol {verification.rtol:g}: " + (" and ".join(found) or "nothing justifies it (torch, transformers "
                                                "and the CPU flags are the reference's)")


def _relative(a: float, b: float) -> float:
    if a == b:
        return 0.0
    relative = abs(a - b) / max(abs(a), abs(b))  # nan (a nan or two infinities): as far apart as can be
    return math.inf if math.isnan(relative) else relative


def _environment_differences(run_dir: Path, provenance: dict) -> list[str]:
    """torch and transformers as the run's chapters recorded them, and this machine's CPU flags (the run is taken to
    have been made here), against the reference's."""
    ours, theirs = _run_versions(run_dir), provenance.get("versions") or {}
    out = [f"{name}: reference {theirs.get(name) or 'not recorded'}, this run {ours.get(name) or 'not recorded'}"
           for name in ("torch", "transformers") if provenance and ours.get(name) != theirs.get(name)]
    flags, here = (provenance.get("machine") or {}).get("flags"), machine()["flags"]
    if provenance and flags is not None and here is not None and set(flags) != set(here):
        out.append(f"CPU flags: reference machine {' '.join(flags) or 'none'}, this machine {' '.join(here) or 'none'}")
    return out


def verify(run_dir, reference_dir, *, rtol: float = 0.0) -> Verification:
    run_dir, reference_dir = Path(run_dir), Path(reference_dir)
    if not run_dir.is_dir():
        raise MissingArtifact(f"no run folder {run_dir}")
    if not (reference_dir / "record").is_dir():
        raise MissingArtifact(f"no reference run at {reference_dir} (`kn reference RUN_DIR` publishes one)")
    if rtol < 0:
        raise ParameterError(f"--rtol {rtol:g}: a tolerance is at least 0")
    expected, found = numbers(reference_dir / "record"), numbers(run_dir)
    if not expected:
        raise MissingArtifact(f"{reference_dir / 'record'} holds no chapter summary (*_summary.json)")
    equal, close, differ = 0, 0, []
    for name in sorted(set(expected) & set(found)):
        a, b = expected[name], found[name]
        if a == b or (math.isnan(a) and math.isnan(b)):
            equal += 1
        elif rtol and _relative(a, b) <= rtol:
            equal, close = equal + 1, close + 1
        else:
            differ.append((name, a, b, _relative(a, b)))
    provenance = lineage.load(reference_dir / "provenance.json")
    moved = sorted(name for name, *_ in differ if name.endswith(".holds"))  # the verdicts: every claim's "holds"
    return Verification(equal, differ, sorted(set(expected) - set(found)), sorted(set(found) - set(expected)),
                        _environment_differences(run_dir, provenance), rtol, close,
                        sum(name.endswith(".holds") for name in set(expected) & set(found)), moved)


# --- the README's Results block --------------------------------------------------------------------------------------
def _markdown(frame: pd.DataFrame, spec) -> str:
    """A pipe table, the index first, cells as the book shows them (fmt: "mean [lo, hi]"), spec(column) -> format."""
    names = [n or "source" for n in frame.index.names]
    header = names + [HEADERS.get(c, c) for c in frame.columns]
    rows = [[str(k) for k in (key if isinstance(key, tuple) else (key,))] + [fmt(v, spec(c)) for c, v in row.items()]
            for key, row in frame.iterrows()]
    return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |"
                     for line in [header, ["---"] * len(header), *rows])


def _verdict_table(run: results.Run) -> pd.DataFrame:
    """The run's claims that a paper states a value for (kn.book.verdicts.forest_data): theirs, ours, the verdict."""
    rows = {}
    for _, claim in verdicts.forest_data([run]).iterrows():
        if not claim["paper"]:
            continue
        spec = "{:.1%}" if claim["percent"] else "{:.2f}"
        papers = "; ".join(f"{source}: {spec.format(v)}" for source, v in claim["paper"].items())
        rows[claim["claim"]] = {"the papers": papers, "ours": fmt(Interval(claim["mean"], claim["lo"], claim["hi"], 0),
                                                                  spec), "verdict": claim["verdict"] or "–"}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "claim"
    return frame


def _run_block(run: results.Run, provenance: dict) -> str:
    changes = " with uncommitted changes" if provenance.get("dirty") else ""
    parts = [f"**Reference run `{run.name}`** ({run.data.model}): commit {(provenance.get('commit') or 'unknown')[:10]}"
             f"{changes}, {(provenance.get('date') or 'undated')[:10]}. {results.scale_sentence(run.data)}"]
    if run.overlap or run.land:  # LAND's Tables 4 and 7: one prompt's sets, then LAND's, on test facts
        overlap = pd.concat([results.table4([run])[["N_s", "R_so"]], results.table7([run])[["N_L", "R_Lo"]]], axis=1)
        parts.append("Overlap of one fact's paraphrases (LAND Tables 4 and 7; ours on test facts):\n\n"
                     + _markdown(overlap, lambda c: "{:.1%}" if c.startswith("R_") else "{:.2f}"))
    if run.amplification:
        parts.append("Change rate after amplifying x2 (LAND Table 9):\n\n"
                     + _markdown(results.table9([run]), lambda c: "{:.2f}"))
    if run.editing:
        parts.append("Edit success rate (LAND Table 10):\n\n" + _markdown(results.table10([run]), lambda c: "{:.1%}"))
    claims = _verdict_table(run)
    if not claims.empty:
        parts.append("The papers' claims, as this run tests them:\n\n" + _markdown(claims, lambda c: "{}"))
    return "\n\n".join(parts)


def results_markdown(reference_root) -> str:
    root = Path(reference_root)
    folders = sorted(p for p in root.iterdir() if not p.name.startswith(".")
                     and (p / "record" / "data_summary.json").is_file()) if root.is_dir() else []
    if not folders:
        return "No reference run is published yet (`kn reference RUN_DIR` publishes one: book/reproduce.md)."
    blocks = []
    for folder in folders:
        loaded = results.load_runs({folder.name: RunFolder(folder / "record")})
        blocks.append(_run_block(loaded[0], lineage.load(folder / "provenance.json")) if loaded else
                      f"**Reference run `{folder.name}`**: its chapter 1 record is from an older version: publish it "
                      "again")
    return "\n\n".join(blocks) + ("\n\n`kn verify runs/<name>` says whether a run of yours reproduces these numbers; "
                                  "`kn book` shows them all on the Results page.")


def readme_block(readme_text: str) -> str:
    start, end = readme_text.find(README_START), readme_text.find(README_END)
    if start < 0 or end < start:
        raise ParameterError(f"the README has no results block ({README_START} ... {README_END})")
    return readme_text[start + len(README_START):end].strip("\n")


def update_readme(path, reference_root) -> None:
    text = Path(path).read_text()
    readme_block(text)  # ParameterError without the markers
    start, end = text.find(README_START) + len(README_START), text.find(README_END)
    atomic_write_bytes(Path(path), f"{text[:start]}\n{results_markdown(reference_root)}\n{text[end:]}".encode())


def readme_matches(path, reference_root) -> bool:
    try:
        return readme_block(Path(path).read_text()).strip() == results_markdown(reference_root).strip()
    except ParameterError:
        return False
