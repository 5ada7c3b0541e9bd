"""kn.book.environment: what a run was made with (package versions, the project's commit), and how that compares with the
lock the project installs from.

API
    DISTRIBUTION                               "kn-study", the project's distribution name (pyproject.toml)
    kn_version() -> str                        the study's version: the installed distribution's, else kn.__version__
    RECORDED_PACKAGES                          the distributions whose versions a run records
    current_environment(root=None) -> dict     {"python", "kn_version", "packages": {name: version}, "commit", "dirty"}
    locked_versions(path) -> {name: version}   the `name==version` entries of a pip-compile lock (names normalised)
    lock_differences(env, lock=None) -> list[str]   "transformers 5.23.0 (lock 5.24.0)" per recorded package that
                                                    differs from the lock; [] when none differs or no lock is there
    LOCK_FILE                                  requirements/lock-cpu.txt, relative to the project root
"""

from __future__ import annotations

import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

from kn import __version__
from kn.base.params import project_root

DISTRIBUTION = "kn-study"
RECORDED_PACKAGES = ("torch", "transformers", "numpy", "pandas", "pyarrow", "gguf", "papermill", "jupyter-book")
LOCK_FILE = Path("requirements") / "lock-cpu.txt"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def kn_version() -> str:
    """The study's version: that of the installed distribution (pyproject.toml's `version`, read by importlib.metadata),
    else kn.__version__ (the library imported from a checkout without `pip install -e .`)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return __version__


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def current_environment(root: str | Path | None = None) -> dict:
    """The interpreter, the study's version (kn_version), the versions of RECORDED_PACKAGES (None where one is not
    installed), and the project's git commit (None outside a checkout) with whether tracked files differ from it."""
    root = Path(root) if root else project_root()
    packages = {}
    for name in RECORDED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no") if commit else None
    return {"python": platform.python_version(), "kn_version": kn_version(), "packages": packages, "commit": commit,
            "dirty": bool(status) if status is not None else None}


def locked_versions(path: str | Path) -> dict[str, str]:
    """{normalised name: version} of the `name==version` lines of a lock file."""
    found = {}
    for line in Path(path).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)", line)
        if match:
            found[_normal(match.group(1))] = match.group(2)
    return found


def lock_differences(env: dict, lock: str | Path | None = None) -> list[str]:
    """One line per recorded package whose version is not the lock's (the project's lock by default)."""
    path = Path(lock) if lock else project_root() / LOCK_FILE
    if not path.is_file():
        return []
    locked = locked_versions(path)
    lines = []
    for name, version in sorted(env.get("packages", {}).items()):
        want = locked.get(_normal(name))
        if want is not None and version != want:
            lines.append(f"{name} {version} (lock {want})")
    return lines
