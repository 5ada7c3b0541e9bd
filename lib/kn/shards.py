"""kn.shards: attribution as independent jobs (a SLURM array, several GPUs, several machines), then one merge.

API (command line)
    python -m kn.shards run --params P --index I --count N [--store DIR] [--limit K] [--device cuda:0]
        score shard I of N of the run's prompts (chapter 1's table) into DIR (default: the run's attribution store)
    python -m kn.shards merge SRC [SRC ...] --into DIR
        copy the shards' parts into one store; the result equals a single run's

Each job needs only the run folder with chapter 1's prompts.parquet. Jobs may write into the same store folder on a
shared file system (parts are named per shard and written atomically) or into their own folders, merged afterwards.
Afterwards `make chapter CHAPTER=02` draws chapter 2's figures from the complete store without recomputing.
scripts/slurm_attribution.sbatch is a SLURM array example; scripts/shards_local.sh runs the same jobs on one machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["run_shard", "main"]


def run_shard(params_file, index: int, count: int, *, store_dir=None, limit: int | None = None,
              device: str | None = None) -> dict:
    import dataclasses

    from .models import load_model
    from .params import load_params
    from .scoring import tokenize_prompts
    from .store import AttributionStore, RunFolder

    params = load_params(params_file)
    params = dataclasses.replace(params, shard_index=index, shard_count=count,
                                 device=device or params.device)  # validated again by __post_init__
    run = RunFolder(params.resolved_run_dir())
    prompts = run.read_table("prompts", chapter="chapter 1 (01_data_adaptation)")
    if limit is not None:
        prompts = prompts.head(limit)
    loaded = load_model(params.model, dtype=params.dtype, device=params.resolved_device())
    store = AttributionStore.for_model(Path(store_dir) if store_dir else run.path / "attribution", loaded, params)
    return store.compute(loaded, prompts["prompt"].tolist(), tokenize_prompts(loaded.tokenizer, prompts["prompt"]),
                         prompts["target_id"].tolist(), shard_index=index, shard_count=count, progress=True)


def main(argv=None) -> int:
    from .store import merge_attribution_stores

    parser = argparse.ArgumentParser(prog="python -m kn.shards", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="score one shard of the run's prompts")
    run.add_argument("--params", required=True)
    run.add_argument("--index", type=int, required=True)
    run.add_argument("--count", type=int, required=True)
    run.add_argument("--store", help="store folder (default: the run's attribution store)")
    run.add_argument("--limit", type=int, help="only the first K prompts (for trials)")
    run.add_argument("--device", help="overrides the params' device, e.g. cuda:1")
    merge = sub.add_parser("merge", help="merge shard stores into one")
    merge.add_argument("sources", nargs="+")
    merge.add_argument("--into", required=True)
    args = parser.parse_args(argv)
    if args.command == "run":
        stats = run_shard(args.params, args.index, args.count, store_dir=args.store, limit=args.limit,
                          device=args.device)
        print(json.dumps(stats))
    else:
        print(merge_attribution_stores(args.sources, args.into))
    return 0


if __name__ == "__main__":
    sys.exit(main())
