"""Speed of kn.attribution.integrated_gradients (fast kernel) against the reference, on the embedded model.

    .venv/bin/python benchmarks/attribution_speed.py [--prompts 8] [--steps 20] [--dtype float32]
        [--bf16-prompts K] [--ref-prompts K] [--threads 2] [--batch-prompts B] [--device cpu]
        [--prompt-file table.csv] [--out x.json]

Runs, in one process and on the same prompts: the fast kernel (warmed up once, then one call per group of B prompts,
the kernel's default batching, each prompt credited the group's time / B; then again one prompt per call), the
reference (one prompt per call), and the fast kernel in bfloat16 (one prompt per call). Reports per-prompt seconds
(median, mean), the ratio reference / fast,
the largest |fast - reference| / largest |reference| (per prompt, the worst), peak memory (RSS from getrusage after
each phase; CUDA max_memory_allocated on a GPU), the fast kernel's GFLOP/s from kn.attribution.model_flops (the FLOP
count is documented there: ~204 GFLOP for a 5-token prompt at m = 20), and the Jaccard agreement between bfloat16 and
float32 of the coarse neuron sets (score > 0.2 * the prompt's largest score). The load average at start and end says
whether other processes shared the CPU.

bfloat16 matrix products are very slow on CPUs without native bfloat16 (AVX2-only machines such as this project's
2-core runner: ~40x slower than float32), so on CPU bfloat16 runs on the first 2 prompts unless --bf16-prompts says
otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from kn.attribution import IGResult, integrated_gradients, model_flops, reference_integrated_gradients
from kn.models import load_model

# (prompt, target continuation): simple facts, 4-12 tokens with the SmolLM2 tokenizer
SENTENCES = [
    ("The capital of France is", " Paris"),
    ("Paris is located in", " France"),
    ("The Eiffel Tower is in the city of", " Paris"),
    ("The largest planet in our solar system is", " Jupiter"),
    ("Water is made of hydrogen and", " oxygen"),
    ("The author of Romeo and Juliet is William", " Shakespeare"),
    ("The first man to walk on the Moon was Neil", " Armstrong"),
    ("Berlin is the capital of", " Germany"),
    ("The chemical symbol for gold is", " Au"),
    ("The first president of the United States was George", " Washington"),
    ("The Great Wall is located in", " China"),
    ("The opposite of hot is", " cold"),
    ("The color of a clear daytime sky is", " blue"),
    ("A week has seven", " days"),
    ("The native language of people in Brazil is", " Portuguese"),
    ("Mount Everest is the highest mountain in the", " world"),
    ("The Amazon river flows through South", " America"),
]


def _prompts(tokenizer, n: int, prompt_file: str | None):
    """n (prompt, target) pairs as ([seq] LongTensor, token id, text): from SENTENCES or a table with columns
    ``prompt`` and ``target`` (csv, tsv, jsonl, json or parquet; the target's first token is attributed)."""
    pairs = SENTENCES
    if prompt_file:
        import pandas as pd

        path = Path(prompt_file)
        readers = {".csv": pd.read_csv, ".tsv": lambda p: pd.read_csv(p, sep="\t"), ".parquet": pd.read_parquet,
                   ".jsonl": lambda p: pd.read_json(p, lines=True), ".json": pd.read_json}
        table = readers[path.suffix](path)
        pairs = list(zip(table["prompt"].astype(str), table["target"].astype(str)))
    out = []
    for text, target in pairs[:n]:
        ids = torch.tensor(tokenizer(text).input_ids)
        tgt = tokenizer(target if target.startswith(" ") else " " + target).input_ids[0]
        out.append((ids, tgt, text))
    if len(out) < n:
        print(f"note: only {len(out)} prompts available", file=sys.stderr)
    return out


def _rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    result = fn()
    _sync(device)
    return result, time.perf_counter() - t0


def _stats(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "mean_s": statistics.fmean(times), "per_prompt_s": times}


def _coarse(scores: torch.Tensor) -> set[tuple[int, int]]:
    """(layer, neuron) pairs scoring above 0.2 * the prompt's largest score. scores: [layer, neuron]."""
    idx = (scores > 0.2 * scores.max()).nonzero().tolist()
    return {tuple(i) for i in idx}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=8, help="number of prompts (default 8)")
    ap.add_argument("--steps", type=int, default=20, help="m, Riemann-sum points (default 20)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="compute dtype of the timed fast kernel (default float32)")
    ap.add_argument("--bf16-prompts", type=int, default=None,
                    help="prompts for the bfloat16 comparison (default: all on CUDA, 2 on CPU; 0 skips it)")
    ap.add_argument("--ref-prompts", type=int, default=None, help="prompts for the reference (default: all)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--batch-prompts", type=int, default=None,
                    help="prompts per kernel call for the timed fast run (default: the kernel's, 2 on CPU, 8 on CUDA)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--prompt-file", default=None, help="a table with columns prompt, target (default: built in)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    loaded = load_model("smollm2-135m", device=args.device)
    device = loaded.device
    prompts = _prompts(loaded.tokenizer, args.prompts, args.prompt_file)
    n_ref = len(prompts) if args.ref_prompts is None else min(args.ref_prompts, len(prompts))
    n_bf16 = args.bf16_prompts
    if n_bf16 is None:
        n_bf16 = len(prompts) if device.type == "cuda" else min(2, len(prompts))
    n_bf16 = min(n_bf16, len(prompts))
    dtype = getattr(torch, args.dtype)

    def fast(ids, tgt, dt=dtype):
        return integrated_gradients(loaded, [ids], [tgt], steps=args.steps, dtype=dt)

    # fast kernel: warm up once (allocator, lazy initialisation), then one call per group of --batch-prompts prompts
    # (the kernel batches them); each prompt of a group is credited the group's time / its size
    group_size = args.batch_prompts or (8 if device.type == "cuda" else 2)
    integrated_gradients(loaded, [p[0] for p in prompts[:group_size]], [p[1] for p in prompts[:group_size]],
                         steps=args.steps, dtype=dtype, batch_prompts=group_size)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fast_res, fast_t = [], []
    for start in range(0, len(prompts), group_size):
        group = prompts[start: start + group_size]
        r, t = _timed(lambda: integrated_gradients(loaded, [p[0] for p in group], [p[1] for p in group],
                                                   steps=args.steps, dtype=dtype, batch_prompts=group_size), device)
        for i in range(len(group)):
            fast_res.append(IGResult(r.scores[i: i + 1], r.p_full[i: i + 1], r.p_zero[i: i + 1], r.target_ids[i: i + 1],
                                     r.steps, r.rule, r.layers))
            fast_t.append(t / len(group))
    # one prompt per call, for comparison
    single_t = []
    for ids, tgt, _ in prompts:
        single_t.append(_timed(lambda: fast(ids, tgt), device)[1])
    rss_fast = _rss_mb()
    cuda_fast = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None

    # reference
    ref_t, rel = [], []
    for (ids, tgt, _), fr in zip(prompts[:n_ref], fast_res):
        r, t = _timed(lambda: reference_integrated_gradients(loaded, [ids], [tgt], steps=args.steps), device)
        ref_t.append(t)
        rel.append(float((fr.scores - r.scores).abs().max() / r.scores.abs().max()))
    rss_ref = _rss_mb()

    # bfloat16 vs float32 (float32 from the timed run when that was float32)
    bf_t, jacc, bf_rel = [], [], []
    if n_bf16:
        fast(*prompts[0][:2], dt=torch.bfloat16)  # warm-up; also makes the cast copy of the weights
    for (ids, tgt, _), fr in zip(prompts[:n_bf16], fast_res):
        f32 = fr if dtype == torch.float32 else fast(ids, tgt, torch.float32)
        b, t = _timed(lambda: fast(ids, tgt, torch.bfloat16), device)
        bf_t.append(t)
        a, c = _coarse(f32.scores[0]), _coarse(b.scores[0])
        jacc.append(len(a & c) / max(1, len(a | c)))
        bf_rel.append(float((b.scores - f32.scores).abs().max() / f32.scores.abs().max()))
    rss_bf16 = _rss_mb()

    seqs = [int(ids.numel()) for ids, _, _ in prompts]
    flops = [model_flops(loaded, steps=args.steps, seq=s) for s in seqs]
    gflops_rate = [f / t / 1e9 for f, t in zip(flops, fast_t)]
    fast_stats, ref_stats = _stats(fast_t), _stats(ref_t)
    report = {
        "model": loaded.name,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "dtype": args.dtype,
        "prompts": [text for _, _, text in prompts],
        "prompt_tokens": seqs,
        "fast": {**fast_stats, "batch_prompts": group_size},
        "fast_one_prompt_per_call": _stats(single_t),
        "reference": {**ref_stats, "prompts": n_ref},
        "ratio_median": ref_stats["median_s"] / statistics.median(fast_t[:n_ref]),
        "ratio_mean": ref_stats["mean_s"] / statistics.fmean(fast_t[:n_ref]),
        "max_rel_diff": max(rel),
        "fast_gflop_per_prompt": statistics.fmean(flops) / 1e9,
        "fast_gflop_s_median": statistics.median(gflops_rate),
        "peak_rss_mb": {"after_fast": rss_fast, "after_reference": rss_ref, "after_bf16": rss_bf16},
        "cuda_max_allocated_mb_fast": cuda_fast,
        "bf16": {"prompts": n_bf16, **(_stats(bf_t) if bf_t else {}),
                 "jaccard_mean": statistics.fmean(jacc) if jacc else None,
                 "jaccard_min": min(jacc) if jacc else None,
                 "max_rel_diff_vs_fp32": max(bf_rel) if bf_rel else None},
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "torch": torch.__version__,
    }
    print(f"prompts: {len(prompts)} ({min(seqs)}-{max(seqs)} tokens), steps {args.steps}, {device}, "
          f"{torch.get_num_threads()} threads, load average {load_start[0]:.2f} -> {report['loadavg_end'][0]:.2f}")
    print(f"fast ({args.dtype}, {group_size} prompts per call): median {fast_stats['median_s']:.3f} s, "
          f"mean {fast_stats['mean_s']:.3f} s per prompt; {report['fast_gflop_per_prompt']:.0f} GFLOP/prompt, "
          f"{report['fast_gflop_s_median']:.0f} GFLOP/s; one prompt per call: median {statistics.median(single_t):.3f} s")
    print(f"reference ({n_ref} prompts): median {ref_stats['median_s']:.2f} s, mean {ref_stats['mean_s']:.2f} s; "
          f"ratio {report['ratio_median']:.1f}x (median), {report['ratio_mean']:.1f}x (mean)")
    print(f"max |fast - ref| / max |ref|: {report['max_rel_diff']:.2e}")
    if bf_t:
        print(f"bfloat16 ({n_bf16} prompts): median {statistics.median(bf_t):.2f} s; coarse-set Jaccard vs float32 "
              f"mean {report['bf16']['jaccard_mean']:.3f}, min {report['bf16']['jaccard_min']:.3f}; "
              f"max rel diff {report['bf16']['max_rel_diff_vs_fp32']:.3f}")
    print(f"peak RSS: {rss_fast:.0f} MiB after fast, {rss_ref:.0f} after reference, {rss_bf16:.0f} after bfloat16"
          + (f"; CUDA max allocated (fast) {cuda_fast:.0f} MiB" if cuda_fast is not None else ""))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
