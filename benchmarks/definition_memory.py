"""What chapter 2b's neuron-definition study holds in memory, at the IG batch it used to run at (the scoring batch,
eval_batch_size 32) and at the kernel's own (None: 2 prompts on a CPU): each arm in a fresh process, which reports
its peak resident memory (VmHWM) and its seconds; the model's resident size after loading is measured first, in the
same process, for reference.

    .venv/bin/python benchmarks/definition_memory.py [--prompts 32] [--threads 2] [--out x.json]

The prompts are benchmarks/attribution_speed.py's sentences, repeated to --prompts (one batch of 32 is what the
chapter's first IG call held on its 50 prompts). Compare only within one invocation: machines differ.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ARM = textwrap.dedent('''
    import json, sys, time
    sys.path[:0] = [{lib!r}, {bench!r}]
    import torch
    torch.set_num_threads({threads})
    from attribution_speed import SENTENCES
    from kn.core.models import load_model
    from kn.experiments.definitions import definition_study

    def rss(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    loaded = load_model("smollm2-135m")
    pairs = [SENTENCES[i % len(SENTENCES)] for i in range({n})]
    ids = [torch.tensor(loaded.tokenizer(p).input_ids) for p, _ in pairs]
    targets = [loaded.tokenizer(t, add_special_tokens=False).input_ids[0] for _, t in pairs]
    loaded_rss = rss("VmRSS:")
    began = time.perf_counter()
    got = definition_study(loaded, ids, targets, steps=20, top_k=20, batch_size=32, ig_batch_prompts={batch})
    print(json.dumps({{"seconds": time.perf_counter() - began, "peak_bytes": rss("VmHWM:"),
                      "loaded_bytes": loaded_rss, "jaccard_mean": float(got.prompts["jaccard_coarse"].mean())}}))
''')


def _arm(batch, n: int, threads: int) -> dict:
    code = ARM.format(lib=str(ROOT / "lib"), bench=str(ROOT / "benchmarks"), threads=threads, n=n, batch=batch)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    arms = {}
    for name, batch in (("scoring batch (32 prompts per IG call, before)", 32),
                        ("kernel default (2 prompts per IG call on a CPU, now)", None)):
        got = _arm(batch, args.prompts, args.threads)
        arms[name] = {"peak_gib": round(got["peak_bytes"] / 2**30, 2),
                      "model_loaded_gib": round(got["loaded_bytes"] / 2**30, 2),
                      "seconds": round(got["seconds"], 1), "jaccard_coarse_mean": round(got["jaccard_mean"], 6)}
        print(name, arms[name], flush=True)
    before, now = arms.values()
    result = {"benchmark": "definition_memory", "prompts": args.prompts, "threads": args.threads,
              "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                          "cpu_count": os.cpu_count()},
              "arms": arms, "peak_ratio_before_over_now": round(before["peak_gib"] / now["peak_gib"], 2),
              "seconds_ratio_before_over_now": round(before["seconds"] / now["seconds"], 2)}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
