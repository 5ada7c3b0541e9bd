"""Does running attribution inside a papermill notebook cost time, and what? The same prompts, scored by the attribution
store (one prompt per kernel call, the chapter's way), three ways on this machine:

    plain      a Python process (what benchmarks/attribution_speed.py measures)
    notebook   a papermill-executed notebook, progress to a file (what `kn` does for chapter 2)
    tqdm-cell  the same notebook with a tqdm bar in the cell's output (what chapter 2 did before progress moved to
               the terminal: every bar update is a message to the kernel's client, which papermill writes into the
               notebook)

    .venv/bin/python benchmarks/attribution_speed.py ...    # the kernel alone
    .venv/bin/python benchmarks/notebook_overhead.py [--prompts 16] [--threads 2] [--out x.json]

Reports seconds per prompt (the first call, which warms the kernel up, excluded) and each way's ratio to plain, measured
one after the other in one invocation (compare only within one invocation: machines differ).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCORE = textwrap.dedent('''
    import json, os, sys, time
    sys.path.insert(0, {lib!r})
    import torch
    torch.set_num_threads({threads})
    sys.path.insert(0, {bench!r})
    from attribution_speed import SENTENCES
    from kn.core.models import load_model
    from kn.attribution.store import AttributionStore
    loaded = load_model("smollm2-135m")
    pairs = SENTENCES[:{n}]
    ids = [torch.tensor(loaded.tokenizer(p).input_ids) for p, _ in pairs]
    targets = [loaded.tokenizer(t).input_ids[0] for _, t in pairs]
    store = AttributionStore({store!r}, identity=loaded.identity, steps=20, rule="right", dtype="float32",
                             threshold=0.05, n_layers=loaded.adapter.n_layers, n_neurons=loaded.adapter.n_neurons)
    stats = store.compute(loaded, [p for p, _ in pairs], ids, targets, progress=True)
    json.dump(stats, open({result!r}, "w"))
''')


def _notebook(source: str, path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, path)


def run_way(way: str, n: int, threads: int, work: Path) -> dict:
    store, result = work / f"store-{way}", work / f"{way}.json"
    source = SCORE.format(lib=str(ROOT / "lib"), bench=str(ROOT / "benchmarks"), threads=threads, n=n,
                          store=str(store), result=str(result))
    env = dict(os.environ)
    if way == "tqdm-cell":
        env.pop("KN_PROGRESS_FILE", None)  # kn.base.progress then draws tqdm.auto in the cell
    else:
        env["KN_PROGRESS_FILE"] = str(work / f"{way}.progress")
    if way == "plain":
        subprocess.run([sys.executable, "-c", source], check=True, env=env, capture_output=True)
    else:
        import papermill

        path = work / f"{way}.ipynb"
        _notebook(source, path)
        os.environ.update({k: v for k, v in env.items() if k == "KN_PROGRESS_FILE"})
        if way == "tqdm-cell":
            os.environ.pop("KN_PROGRESS_FILE", None)
        papermill.execute_notebook(str(path), str(path), progress_bar=False, kernel_name="python3",
                                   log_output=False)
    return json.loads(result.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for way in ("plain", "notebook", "tqdm-cell"):
            out[way] = run_way(way, args.prompts, args.threads, Path(tmp))
    base = out["plain"]["seconds_per_prompt"]
    print(f"{args.prompts} prompts, {args.threads} threads, load average {os.getloadavg()[0]:.2f}")
    for way, stats in out.items():
        print(f"  {way:10s} {stats['seconds_per_prompt']:.3f} s/prompt   x{stats['seconds_per_prompt'] / base:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
