"""kn.attribution.shards: attribution as independent jobs (a SLURM array, several GPUs, several machines), then one merge.

API (command line)
    python -m kn.attribution.shards run --params P --index I --count N [--store DIR] [--limit K] [--device cuda:0] [--threads T]
        score shard I of N of the run's prompts (chapter 1's table) into DIR (default: the run's attribution store);
        prints the counts and seconds as one JSON line, with the folder kn was imported from
    python -m kn.attribution.shards merge SRC [SRC ...] --into DIR
        copy the shards' parts into one store; the result equals a single run's
API (Python)
    run_shard(params_file, index, count, *, store_dir=None, limit=None, device=None, threads=None) -> dict
    task_threads(environ=os.environ) -> int | None   the torch threads of a job: KN_THREADS, else the CPUs SLURM gave it
    main(argv=None) -> int

Each job needs only the run folder with chapter 1's prompts.parquet. Jobs may write into the same store folder on a
shared file system (parts are named per shard and written atomically) or into their own folders, merged afterwards.
Afterwards `kn chapter PARAMS 02` draws chapter 2's figures from the complete store without recomputing.
`kn submit` (kn.book.submit) runs these jobs as a SLURM array; scripts/slurm_attribution.sbatch is that array's task;
scripts/shards_local.sh runs the same jobs on one machine.

Threads: a job uses as many torch threads as CPUs it was given (--threads, else KN_THREADS, else SLURM_CPUS_PER_TASK,
else SLURM_CPUS_ON_NODE inside a SLURM job, else torch's default): two jobs that each take every core of a machine
slow each other down (on the 2-core CI machine a second 2-thread job took the first from 1.6 to 3.5 s per prompt).
SIGTERM (scancel, a time limit) stops a job like Ctrl-C, so the part being written is removed, never left half-written.

Test hook: KN_TEST_KILL_SHARD=I makes shard I kill itself (SIGKILL, no clean-up at all, like a node failure) right
after writing its first part: the SLURM test uses it for a task that dies mid-shard.

"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

from kn.attribution.store import AttributionStore, merge_attribution_stores
from kn.base.paramfiles import load_params
from kn.base.rundir import RunFolder
from kn.core.models import load_model
from kn.core.scoring import tokenize_prompts

THREADS_ENV = "KN_THREADS"
KILL_SHARD_ENV = "KN_TEST_KILL_SHARD"


def task_threads(environ=os.environ) -> int | None:
    """The CPUs this job may use: KN_THREADS, else SLURM's CPUs per task, else (in a SLURM job) the CPUs SLURM
    allocated to it on this node; None outside SLURM without KN_THREADS (torch's default then)."""
    for name in (THREADS_ENV, "SLURM_CPUS_PER_TASK"):
        if environ.get(name, "").strip():
            return max(1, int(environ[name]))
    if environ.get("SLURM_JOB_ID") and environ.get("SLURM_CPUS_ON_NODE", "").strip():
        return max(1, int(environ["SLURM_CPUS_ON_NODE"]))
    return None


def run_shard(params_file, index: int, count: int, *, store_dir=None, limit: int | None = None,
              device: str | None = None, threads: int | None = None) -> dict:
    # torch and the model code load only here: `python -m kn.attribution.shards merge` and --help stay light
    import torch


    threads = threads if threads is not None else task_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    params = load_params(params_file)
    params = dataclasses.replace(params, shard_index=index, shard_count=count,
                                 device=device or params.device)  # validated again by __post_init__
    run = RunFolder(params.resolved_run_dir())
    prompts = run.read_table("prompts", chapter="chapter 1 (01_data_adaptation)")
    if limit is not None:
        prompts = prompts.head(limit)
    loaded = load_model(params.model, dtype=params.dtype, device=params.resolved_device())
    store = AttributionStore.for_model(Path(store_dir) if store_dir else run.path / "attribution", loaded, params)
    stats = store.compute(loaded, prompts["prompt"].tolist(), tokenize_prompts(loaded.tokenizer, prompts["prompt"]),
                          prompts["target_id"].tolist(), shard_index=index, shard_count=count, progress=True,
                          on_flush=_kill_hook(index))
    # where the code came from: a queued task must run the snapshot it was submitted with (kn.book.submit), not the checkout
    return {**stats, "shard": f"{index}/{count}", "device": params.resolved_device(),
            "kn": str(Path(__file__).resolve().parents[1])}  # lib/kn


def _kill_hook(index: int):
    """The test hook (KN_TEST_KILL_SHARD): SIGKILL this process after its first part, else nothing."""
    if os.environ.get(KILL_SHARD_ENV, "").strip() != str(index):
        return None

    def kill():
        print(f"kn.attribution.shards: {KILL_SHARD_ENV}={index}: killing this task after its first part", file=sys.stderr,
              flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    return kill


def main(argv=None) -> int:

    parser = argparse.ArgumentParser(prog="python -m kn.attribution.shards", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="score one shard of the run's prompts")
    run.add_argument("--params", required=True)
    run.add_argument("--index", type=int, required=True)
    run.add_argument("--count", type=int, required=True)
    run.add_argument("--store", help="store folder (default: the run's attribution store)")
    run.add_argument("--limit", type=int, help="only the first K prompts (for trials)")
    run.add_argument("--device", help="overrides the params' device, e.g. cuda:1")
    run.add_argument("--threads", type=int, help="torch threads (default: KN_THREADS, else the CPUs SLURM gave the "
                                                 "job, else torch's default)")
    merge = sub.add_parser("merge", help="merge shard stores into one")
    merge.add_argument("sources", nargs="+")
    merge.add_argument("--into", required=True)
    args = parser.parse_args(argv)
    if args.command == "run":
        if args.threads is not None and args.threads < 1:
            parser.error("--threads must be at least 1")
        previous = _stop_on_sigterm()
        try:
            stats = run_shard(args.params, args.index, args.count, store_dir=args.store, limit=args.limit,
                              device=args.device, threads=args.threads)
        finally:
            signal.signal(signal.SIGTERM, previous)
        print(json.dumps(stats), flush=True)
    else:
        print(merge_attribution_stores(args.sources, args.into))
    return 0


def _stop_on_sigterm():
    """SIGTERM unwinds like Ctrl-C: kn.attribution.store's atomic write removes the part it was writing."""
    def stop(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, stop)


if __name__ == "__main__":
    sys.exit(main())
