#!/usr/bin/env bash
# The GPU measurements of the reproduce page: for each architecture (built from its literal config, random weights),
# fast against reference, float32 and bfloat16 throughput, and batch-size scaling. Needs a CUDA build of torch.
#   bash benchmarks/gpu_suite.sh OUT_DIR [PROMPTS]
set -euo pipefail
out=${1:?give an output folder}
prompts=${2:-32}
mkdir -p "$out"
here=$(dirname "$0")
for config in smollm2-135m gpt2 llama-3.2-1b gemma3-270m; do
  python "$here/attribution_speed.py" --device cuda --model-config "$config" --dtypes float32,bfloat16 \
    --rules right,left,gauss_legendre --steps-list 20 --batch-prompts-list 1,2,4,8,16,32 \
    --prompts "$prompts" --ref-prompts 4 --out "$out/gpu_$config.json" 2>&1 | grep -v "^Loading weights" || exit 1
done
