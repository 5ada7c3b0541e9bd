#!/bin/bash
# The SLURM array's jobs on one machine: N shards in parallel, one per GPU when there are several
# (CUDA_VISIBLE_DEVICES round-robin), each into its own store folder, then merged into the run's store.
# Each shard gets cores / N torch threads (at least 1): N jobs that each took every core would slow one another down.
# KN_THREADS sets another count (scores are bitwise those of a single run with as many threads).
#   scripts/shards_local.sh params/gpt2.yaml 4 [LIMIT]
set -euo pipefail
PARAMS=${1:?usage: scripts/shards_local.sh params/<model>.yaml N [LIMIT]}
N=${2:?number of shards}
LIMIT=${3:+--limit $3}
cd "$(dirname "$0")/.."
RUN=$(.venv/bin/python -c "from kn.base.paramfiles import load_params; print(load_params('$PARAMS').resolved_run_dir())")
GPUS=$(.venv/bin/python -c "import torch; print(torch.cuda.device_count())")
THREADS=${KN_THREADS:-$(( $(nproc) / N ))}
[ "$THREADS" -ge 1 ] || THREADS=1
PIDS=()
for i in $(seq 0 $((N - 1))); do
  if [ "$GPUS" -gt 0 ]; then export CUDA_VISIBLE_DEVICES=$((i % GPUS)); fi
  .venv/bin/python -m kn.attribution.shards run --params "$PARAMS" --index "$i" --count "$N" --store "$RUN/shards/$i" \
    --threads "$THREADS" $LIMIT &
  PIDS+=($!)
done
for pid in "${PIDS[@]}"; do wait "$pid"; done   # a failed shard stops the script before the merge
.venv/bin/python -m kn.attribution.shards merge "$RUN"/shards/* --into "$RUN/attribution"
