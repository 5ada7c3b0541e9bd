"""Speed of kn.attribution.kernel.integrated_gradients (fast kernel) against the reference, per quadrature rule and m.

    .venv/bin/python benchmarks/attribution_speed.py [--prompts 8] [--steps-list 20] [--rules right,left,gauss_legendre]
        [--neuron ffn_out_input] [--dtypes float32] [--batch-prompts B] [--batch-prompts-list 1]
        [--bf16-prompts K] [--ref-prompts K] [--threads 2] [--device cpu]
        [--model-config embedded] [--model smollm2-135m] [--prompt-file table.csv] [--out x.json]

Runs, in one process and on the same prompts, for every compute dtype (--dtypes), rule (--rules) and m (--steps-list):
the fast kernel (warmed up once per setting, then one call per group of B prompts, the kernel's default batching, each
prompt credited the group's time / B) and the reference at the same rule and m (float32, one prompt per call, timed
once per rule and m). Reports per-prompt seconds (median, mean), the ratio reference / fast, the agreement (the
largest |fast - reference| / largest |reference|, per prompt, the worst), peak memory (RSS from getrusage after each
phase; CUDA max_memory_allocated per setting on a GPU), and the fast kernel's GFLOP/s from kn.attribution.kernel.model_flops
(the FLOP count is documented there: ~204 GFLOP for a 5-token prompt at m = 20 on SmolLM2-135M). Then batch scaling:
the fast kernel over all prompts with each batch size of --batch-prompts-list (prompts per second), at the first rule
and the last m. Then bfloat16 against float32: the Jaccard agreement of the coarse neuron sets (score > 0.2 * the
prompt's largest score), from the timed runs when --dtypes has both, else from an extra bfloat16 run on
--bf16-prompts prompts. The load average at start and end says whether other processes shared the CPU.

Models (--model-config): "embedded" loads --model with kn.core.models.load_model (default smollm2-135m, the embedded
SmolLM2-135M-Instruct; "gemma3-270m" needs the optional package) and its tokenizer's prompts; "gpt2", "llama-3.2-1b",
"smollm2-135m" and "gemma3-270m" build that architecture from a literal config (LITERAL_CONFIGS) with random weights
(seeded) on --device, and random prompts of 4-12 tokens whose targets are the model's own top tokens. Random weights
time the kernel as well as trained ones (the work does not depend on the values) but not the science.

Needs only torch, transformers, numpy, pandas (--prompt-file) and safetensors: kn is imported from ../lib, not
installed. bfloat16 matrix products are very slow on CPUs without native bfloat16 (AVX2-only machines such as this
project's 2-core runner: ~40x slower than float32), so on CPU the bfloat16 comparison runs on the first 2 prompts
unless --bf16-prompts says otherwise. A GPU run, e.g.:
    python benchmarks/attribution_speed.py --device cuda --model-config llama-3.2-1b --dtypes float32,bfloat16 \\
        --steps-list 1,2,4,8,20 --batch-prompts-list 1,2,4,8,16,32 --prompts 32 --ref-prompts 4 --out gpu.json
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))  # kn from this checkout, installed or not

from kn.attribution.common import NEURON_DEFINITIONS, IGResult
from kn.attribution.kernel import integrated_gradients, model_flops
from kn.attribution.quadrature import RULES
from kn.attribution.reference import reference_integrated_gradients

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

# Published configurations (the models' config.json on the Hugging Face hub), in transformers 5's terms.
LITERAL_CONFIGS = {
    "gpt2": ("gpt2", dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, n_inner=3072,
                          activation_function="gelu_new", layer_norm_epsilon=1e-5, resid_pdrop=0.0, embd_pdrop=0.0,
                          attn_pdrop=0.0, bos_token_id=50256, eos_token_id=50256)),
    "llama-3.2-1b": ("llama", dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                                   num_attention_heads=32, num_key_value_heads=8, head_dim=64, hidden_act="silu",
                                   max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=True,
                                   rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                                    "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                                    "original_max_position_embeddings": 8192},
                                   bos_token_id=128000, eos_token_id=128001)),
    "smollm2-135m": ("llama", dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                   num_attention_heads=9, num_key_value_heads=3, head_dim=64, hidden_act="silu",
                                   max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=True,
                                   rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
                                   bos_token_id=1, eos_token_id=2)),
    "gemma3-270m": ("gemma3_text", dict(vocab_size=262144, hidden_size=640, intermediate_size=2048,
                                        num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1,
                                        head_dim=256, query_pre_attn_scalar=256, sliding_window=512,
                                        layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                                                     for i in range(18)],
                                        rope_parameters={"sliding_attention": {"rope_type": "default",
                                                                               "rope_theta": 10000.0},
                                                         "full_attention": {"rope_type": "default",
                                                                            "rope_theta": 1000000.0}},
                                        hidden_activation="gelu_pytorch_tanh", max_position_embeddings=32768,
                                        rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=2, eos_token_id=1,
                                        pad_token_id=0)),
}


def _literal_model(kind: str, device: str, seed: int = 0):
    """A kn.core.models.LoadedModel of LITERAL_CONFIGS[kind] with random weights (seeded), float32, built on ``device``."""
    from kn.core.adapters import adapter_for
    from kn.core.models import LoadedModel
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, kwargs = LITERAL_CONFIGS[kind]
    config = AutoConfig.for_model(model_type, **kwargs)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model, None, adapter_for(model), f"{kind} (random weights)", f"{kind}-random-s{seed}")


def _text_prompts(tokenizer, n: int, prompt_file: str | None):
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
        tgt = tokenizer(target if target.startswith(" ") else " " + target, add_special_tokens=False).input_ids[0]
        out.append((ids, tgt, text))
    if len(out) < n:
        print(f"note: only {len(out)} prompts available", file=sys.stderr)
    return out


def _random_prompts(loaded, n: int, seed: int = 0):
    """n random prompts of 4-12 tokens (seeded), each with the model's own top next token as its target."""
    vocab = loaded.adapter.input_embeddings().shape[0]
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(0, vocab, (4 + (5 * i) % 9,), generator=gen)
        with torch.no_grad():
            target = int(loaded.model(input_ids=ids[None].to(loaded.device)).logits[0, -1].argmax())
        out.append((ids, target, f"random {ids.numel()} tokens"))
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


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _split(result: IGResult) -> list[IGResult]:
    """One IGResult per prompt of ``result``."""
    return [IGResult(result.scores[i: i + 1], result.p_full[i: i + 1], result.p_zero[i: i + 1],
                     result.target_ids[i: i + 1], result.steps, result.rule, result.layers, result.neuron)
            for i in range(result.scores.shape[0])]


def _csv(value: str, cast=str) -> list:
    return [cast(v.strip()) for v in value.split(",") if v.strip()]


def _cuda_peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _reset_cuda_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=8, help="number of prompts (default 8)")
    ap.add_argument("--steps", type=int, default=20, help="m when --steps-list is not given (default 20)")
    ap.add_argument("--steps-list", default=None, help="comma-separated m values, e.g. 1,2,4,8,20 (default: --steps)")
    ap.add_argument("--rules", default=",".join(RULES), help=f"comma-separated rules (default {','.join(RULES)})")
    ap.add_argument("--neuron", default="ffn_out_input", choices=NEURON_DEFINITIONS,
                    help="attributed quantity (default ffn_out_input, the papers' neurons)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="compute dtype when --dtypes is not given (default float32)")
    ap.add_argument("--dtypes", default=None, help="comma-separated compute dtypes, e.g. float32,bfloat16")
    ap.add_argument("--bf16-prompts", type=int, default=None,
                    help="prompts for the extra bfloat16 comparison when --dtypes lacks bfloat16 (default: all on "
                         "CUDA, 2 on CPU; 0 skips it)")
    ap.add_argument("--ref-prompts", type=int, default=None, help="prompts for the reference (default: all)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 2 on CPU, torch's on CUDA)")
    ap.add_argument("--batch-prompts", type=int, default=None,
                    help="prompts per kernel call for the timed fast runs (default: the kernel's, 2 on CPU, 8 on CUDA)")
    ap.add_argument("--batch-prompts-list", default="1",
                    help="comma-separated batch sizes for the batch-scaling runs, e.g. 1,2,4,8,16,32 (default 1)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--model-config", default="embedded", choices=["embedded", *LITERAL_CONFIGS],
                    help="embedded: load --model; otherwise that architecture with random weights (default embedded)")
    ap.add_argument("--model", default="smollm2-135m", help="kn.core.models.load_model name for --model-config embedded")
    ap.add_argument("--prompt-file", default=None, help="a table with columns prompt, target (default: built in)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    threads = args.threads if args.threads is not None else (2 if args.device == "cpu" else None)
    if threads is not None:
        torch.set_num_threads(threads)
    steps_list = _csv(args.steps_list, int) if args.steps_list else [args.steps]
    rules = _csv(args.rules)
    for rule in rules:
        if rule not in RULES:
            ap.error(f"rule {rule!r}: use one of {RULES}")
    dtype_names = _csv(args.dtypes) if args.dtypes else [args.dtype]
    for name in dtype_names:
        if name not in ("float32", "bfloat16", "float16"):
            ap.error(f"dtype {name!r}: use float32, bfloat16 or float16")
    batch_list = _csv(args.batch_prompts_list, int)

    load_start = os.getloadavg()
    if args.model_config == "embedded":
        from kn.core.models import load_model

        loaded = load_model(args.model, device=args.device)
        prompts = _text_prompts(loaded.tokenizer, args.prompts, args.prompt_file)
    else:
        loaded = _literal_model(args.model_config, args.device)
        prompts = _random_prompts(loaded, args.prompts)
    device = loaded.device
    group_size = args.batch_prompts or (8 if device.type == "cuda" else 2)
    n_ref = len(prompts) if args.ref_prompts is None else min(args.ref_prompts, len(prompts))
    seqs = [int(ids.numel()) for ids, _, _ in prompts]
    ids_all, tgt_all = [p[0] for p in prompts], [p[1] for p in prompts]

    def fast(ids, targets, rule, m, dtype, batch_prompts):
        return integrated_gradients(loaded, ids, targets, steps=m, rule=rule, dtype=dtype, neuron=args.neuron,
                                    batch_prompts=batch_prompts)

    # --- fast kernel, per dtype, rule and m -------------------------------------------------------------------------
    runs, fast_results = [], {}
    for dtype_name in dtype_names:
        dtype = getattr(torch, dtype_name)
        for rule in rules:
            for m in steps_list:
                # warm up once (allocator, lazy initialisation, a cast copy), then one call per group of prompts
                fast(ids_all[:group_size], tgt_all[:group_size], rule, m, dtype, group_size)
                _reset_cuda_peak(device)
                results, times = [], []
                for start in range(0, len(prompts), group_size):
                    group = slice(start, start + group_size)
                    r, t = _timed(lambda: fast(ids_all[group], tgt_all[group], rule, m, dtype, group_size), device)
                    results += _split(r)
                    times += [t / len(r.scores)] * len(r.scores)
                fast_results[dtype_name, rule, m] = results
                flops = [model_flops(loaded, steps=m, seq=s, rule=rule) for s in seqs]
                runs.append({"dtype": dtype_name, "rule": rule, "steps": m, "fast": _stats(times),
                             "fast_gflop_per_prompt": statistics.fmean(flops) / 1e9,
                             "fast_gflop_s_median": statistics.median(f / t / 1e9 for f, t in zip(flops, times)),
                             "cuda_max_allocated_mb_fast": _cuda_peak_mb(device)})
    rss_fast = _rss_mb()

    # --- reference, per rule and m (float32), and the agreement of every dtype's fast run with it ----------------
    for rule in rules:
        for m in steps_list:
            ref_t, refs = [], []
            for ids, tgt, _ in prompts[:n_ref]:
                r, t = _timed(lambda: reference_integrated_gradients(loaded, [ids], [tgt], steps=m, rule=rule,
                                                                     neuron=args.neuron), device)
                ref_t.append(t)
                refs.append(r)
            for run in runs:
                if (run["rule"], run["steps"]) != (rule, m) or not refs:
                    continue
                mine = fast_results[run["dtype"], rule, m]
                fast_t = run["fast"]["per_prompt_s"][:n_ref]
                run["reference"] = {**_stats(ref_t), "prompts": n_ref}
                run["ratio_median"] = statistics.median(ref_t) / statistics.median(fast_t)
                run["ratio_mean"] = statistics.fmean(ref_t) / statistics.fmean(fast_t)
                run["max_rel_diff"] = max(_rel(f.scores, r.scores) for f, r in zip(mine, refs))
    rss_ref = _rss_mb()

    # --- batch scaling: prompts per second at the first rule and the last m ---------------------------------------
    scaling = []
    for dtype_name in dtype_names:
        dtype = getattr(torch, dtype_name)
        for bp in batch_list:
            fast(ids_all[:bp], tgt_all[:bp], rules[0], steps_list[-1], dtype, bp)  # warm-up at this batch size
            _reset_cuda_peak(device)
            _, t = _timed(lambda: fast(ids_all, tgt_all, rules[0], steps_list[-1], dtype, bp), device)
            scaling.append({"dtype": dtype_name, "rule": rules[0], "steps": steps_list[-1], "batch_prompts": bp,
                            "seconds": t, "prompts_per_s": len(prompts) / t, "s_per_prompt": t / len(prompts),
                            "cuda_max_allocated_mb": _cuda_peak_mb(device)})
    rss_scaling = _rss_mb()

    # --- bfloat16 against float32 ---------------------------------------------------------------------------------
    key32 = ("float32", rules[0], steps_list[-1])
    bf_t, jacc, bf_rel = [], [], []
    if key32 in fast_results and "bfloat16" in dtype_names:
        n_bf16 = len(prompts)
        pairs = zip(fast_results[key32], fast_results["bfloat16", rules[0], steps_list[-1]])
        bf_t = next(r["fast"]["per_prompt_s"] for r in runs if (r["dtype"], r["rule"], r["steps"]) ==
                    ("bfloat16", rules[0], steps_list[-1]))
    else:
        n_bf16 = args.bf16_prompts
        if n_bf16 is None:
            n_bf16 = len(prompts) if device.type == "cuda" else min(2, len(prompts))
        n_bf16 = min(n_bf16, len(prompts)) if key32 in fast_results else 0
        pairs = []
        if n_bf16:
            fast(ids_all[:1], tgt_all[:1], rules[0], steps_list[-1], torch.bfloat16, 1)  # warm-up (and the cast copy)
        for (ids, tgt, _), f32 in zip(prompts[:n_bf16], fast_results.get(key32, [])):
            b, t = _timed(lambda: fast([ids], [tgt], rules[0], steps_list[-1], torch.bfloat16, 1), device)
            bf_t.append(t)
            pairs.append((f32, b))
    for f32, b in pairs:
        a, c = _coarse(f32.scores[0]), _coarse(b.scores[0])
        jacc.append(len(a & c) / max(1, len(a | c)))
        bf_rel.append(_rel(b.scores, f32.scores))
    rss_bf16 = _rss_mb()

    import transformers

    report = {
        "model": loaded.name,
        "model_config": args.model_config,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
        "neuron": args.neuron,
        "rules": rules,
        "steps_list": steps_list,
        "dtypes": dtype_names,
        "batch_prompts": group_size,
        "prompts": [text for _, _, text in prompts],
        "prompt_tokens": seqs,
        "runs": runs,
        "batch_scaling": scaling,
        "peak_rss_mb": {"after_fast": rss_fast, "after_reference": rss_ref, "after_scaling": rss_scaling,
                        "after_bf16": rss_bf16},
        "bf16": {"prompts": len(jacc), "rule": rules[0], "steps": steps_list[-1],
                 **(_stats(bf_t) if bf_t else {}),
                 "jaccard_mean": statistics.fmean(jacc) if jacc else None,
                 "jaccard_min": min(jacc) if jacc else None,
                 "max_rel_diff_vs_fp32": max(bf_rel) if bf_rel else None},
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    print(f"{loaded.name} on {device}{' (' + report['gpu'] + ')' if report['gpu'] else ''}, neuron {args.neuron}: "
          f"{len(prompts)} prompts ({min(seqs)}-{max(seqs)} tokens), {torch.get_num_threads()} threads, "
          f"{group_size} prompts per call, load average {load_start[0]:.2f} -> {report['loadavg_end'][0]:.2f}")
    print(f"{'dtype':>9} {'rule':>15} {'m':>3} {'fast s/prompt':>13} {'ref s/prompt':>12} {'ratio':>7} "
          f"{'max rel diff':>12} {'GFLOP/s':>8}")
    for run in runs:
        ref = run.get("reference")
        print(f"{run['dtype']:>9} {run['rule']:>15} {run['steps']:>3} {run['fast']['median_s']:>13.4f} "
              + (f"{ref['median_s']:>12.3f} {run['ratio_median']:>6.1f}x {run['max_rel_diff']:>12.2e} " if ref
                 else f"{'-':>12} {'-':>7} {'-':>12} ")
              + f"{run['fast_gflop_s_median']:>8.0f}")
    for row in scaling:
        print(f"batch {row['batch_prompts']:>3} ({row['dtype']}, {row['rule']}, m {row['steps']}): "
              f"{row['prompts_per_s']:.2f} prompts/s, {row['s_per_prompt']:.4f} s/prompt"
              + (f", CUDA max allocated {row['cuda_max_allocated_mb']:.0f} MiB" if device.type == "cuda" else ""))
    if jacc:
        print(f"bfloat16 ({len(jacc)} prompts): median {statistics.median(bf_t):.3f} s; coarse-set Jaccard vs float32 "
              f"mean {report['bf16']['jaccard_mean']:.3f}, min {report['bf16']['jaccard_min']:.3f}; "
              f"max rel diff {report['bf16']['max_rel_diff_vs_fp32']:.3f}")
    print(f"peak RSS: {rss_fast:.0f} MiB after fast, {rss_ref:.0f} after reference, {rss_scaling:.0f} after batch "
          f"scaling, {rss_bf16:.0f} after bfloat16")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
