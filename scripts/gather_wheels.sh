#!/usr/bin/env bash
# Everything benchmarks/gpu_study.sh needs on an offline GPU machine that has Python and a CUDA torch, gathered here
# (with PyPI reachable) into one folder, `wheels/` by default (ignored by git):
#   bash scripts/gather_wheels.sh [--dest wheels] [--python-version 3.12] [--platform manylinux_2_28_x86_64]
#        [--skip-present FREEZE.txt] [--with-book] [--dry-run]
# - wheels: the lock (requirements/lock-cpu.txt) without torch (the machine's CUDA torch is used) and, unless --with-book,
#   without what only builds the book (jupyter-book, sphinx and their themes, myst) or tests the code (pytest,
#   import-linter); downloaded with `pip download --no-deps --only-binary=:all: --require-hashes`, so every wheel
#   matches a hash of the lock. --python-version and --platform (repeatable) name the target's interpreter when it
#   differs from this one (e.g. the H200 image: Python 3.12, manylinux_2_28_x86_64).
# - --skip-present FREEZE.txt: leave out the packages the target already has (`python3 -m pip freeze > FREEZE.txt`
#   there): the target's own versions are then used, and every chapter records them (environment.json).
# - wheels/requirements.txt: the lock's entries (with their hashes) of the wheels gathered; gpu_study.sh installs
#   exactly those with --require-hashes.
# - wheels/model/: the embedded SmolLM2-135M's GGUF in parts of at most 45 MiB with its SHA-256
#   (benchmarks/split_model.sh); wheels/data/: the PARAREL files ($KN_DATA_DIR or the download cache, ~3 MB).
# The same by hand, without this script:
#   awk '/^[A-Za-z0-9]/ {skip = ($0 ~ /^torch==/)} !skip' requirements/lock-cpu.txt > /tmp/lock-without-torch.txt
#   pip download --no-deps --only-binary=:all: --require-hashes -r /tmp/lock-without-torch.txt -d wheels/
#   bash benchmarks/split_model.sh wheels/model && cp -r "$KN_DATA_DIR"/. wheels/data/
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/wheels
skip=""
book=0
dry=0
target=()
while [ $# -gt 0 ]; do
  case $1 in
    --dest) dest=$2; shift 2 ;;
    --python-version) target+=(--python-version "$2" --implementation cp); shift 2 ;;
    --platform) target+=(--platform "$2"); shift 2 ;;
    --skip-present) skip=$2; shift 2 ;;
    --with-book) book=1; shift ;;
    --dry-run) dry=1; shift ;;
    *) echo "gather_wheels.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
python=${PYTHON:-$root/.venv/bin/python}
mkdir -p "$dest"
# the lock's entries (a name==version line and its hash lines) that the study's chapters need on the target
"$python" - "$root/requirements/lock-cpu.txt" "$dest/requirements.txt" "$skip" "$book" <<'PY'
import re, sys
lock, out, skip, book = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
BOOK_ONLY = re.compile(r"^(jupyter-book|jupyter-cache|sphinx.*|myst-.*|pydata-sphinx-theme|accessible-pygments|alabaster|"
                       r"babel|docutils|imagesize|latexcodec|linkify-it-py|mdit-py-plugins|pybtex.*|snowballstemmer|"
                       r"sqlalchemy|pytest|iniconfig|pluggy|import-linter|grimp)$")
present = set()
if skip:
    for line in open(skip):
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*(==|@)", line)
        if match:
            present.add(norm(match.group(1)))
entries, current = [], None
for line in open(lock):
    if re.match(r"^[A-Za-z0-9]", line):
        current = [line]
        entries.append(current)
    elif current is not None and line.startswith("    "):
        current.append(line)
    else:
        current = None
kept, left = [], []
for entry in entries:
    name = norm(entry[0].split("==")[0])
    if name == "torch" or (not book and BOOK_ONLY.match(name)) or name in present:
        left.append(name)
        continue
    lines = [l for l in entry if not l.strip().startswith("#")]
    lines[-1] = lines[-1].rstrip().rstrip("\\").rstrip() + "\n"
    kept.append("".join(lines))
open(out, "w").write("".join(kept))
print(f"gather_wheels.sh: {len(kept)} packages to gather, {len(left)} left out (torch, "
      f"{'book and test tools, ' if not book else ''}{len(present)} present on the target)", file=sys.stderr)
PY
if [ "$dry" = 1 ]; then cat "$dest/requirements.txt"; exit 0; fi
"$python" -m pip download -q --no-deps --only-binary=:all: --require-hashes ${target[@]+"${target[@]}"} \
  -r "$dest/requirements.txt" -d "$dest"
bash "$root/benchmarks/split_model.sh" "$dest/model" "$python"
data=$("$python" -c 'import sys; sys.path.insert(0, sys.argv[1]); from kn.data.download import resolve_data_dir; print(resolve_data_dir())' "$root/lib")
mkdir -p "$dest/data"
cp -r "$data"/. "$dest/data/"
echo "gather_wheels.sh: $(ls "$dest"/*.whl | wc -l) wheels, the model's parts and the data in $dest ($(du -sh "$dest" | cut -f1))"
