"""benchmarks/attribution_speed.py: the literal configurations, and one tiny end-to-end run of the script."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from tiny_models import _one_thread  # noqa: F401 (fixture)

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "attribution_speed.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("attribution_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_literal_configs_are_the_published_sizes(bench):
    """(layers, d_model, neurons, heads, kv heads, head_dim, vocab, tied) of each literal config, unbuilt."""
    from transformers import AutoConfig

    expected = {"gpt2": (12, 768, 3072, 12, 12, 64, 50257, True),
                "llama-3.2-1b": (16, 2048, 8192, 32, 8, 64, 128256, True),
                "smollm2-135m": (30, 576, 1536, 9, 3, 64, 49152, True),
                "gemma3-270m": (18, 640, 2048, 4, 1, 256, 262144, True)}
    assert set(bench.LITERAL_CONFIGS) == set(expected)
    for name, (model_type, kwargs) in bench.LITERAL_CONFIGS.items():
        cfg = AutoConfig.for_model(model_type, **kwargs)
        if model_type == "gpt2":
            got = (cfg.n_layer, cfg.n_embd, cfg.n_inner, cfg.n_head, cfg.n_head, cfg.n_embd // cfg.n_head)
        else:
            got = (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads,
                   cfg.num_key_value_heads, cfg.head_dim)
        assert got + (cfg.vocab_size, cfg.tie_word_embeddings) == expected[name], name
    gemma = AutoConfig.for_model(*bench.LITERAL_CONFIGS["gemma3-270m"][:1], **bench.LITERAL_CONFIGS["gemma3-270m"][1])
    assert gemma.layer_types.count("full_attention") == 3 and gemma.layer_types[5] == "full_attention"
    assert gemma.sliding_window == 512 and gemma.query_pre_attn_scalar == 256


def test_tiny_run_writes_every_section(bench, tmp_path, monkeypatch):
    """The script end to end on a shrunken Gemma 3 config (random weights, CPU): every rule and m, the reference's
    agreement, batch scaling, bfloat16 against float32; the JSON has it all."""
    model_type, kwargs = bench.LITERAL_CONFIGS["gemma3-270m"]
    tiny = {**kwargs, "vocab_size": 96, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 3,
            "num_attention_heads": 2, "head_dim": 8, "sliding_window": 4,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]}
    monkeypatch.setitem(bench.LITERAL_CONFIGS, "gemma3-270m", (model_type, tiny))
    out = tmp_path / "bench.json"
    report = bench.main(["--model-config", "gemma3-270m", "--prompts", "3", "--steps-list", "1,3", "--ref-prompts",
                         "2", "--batch-prompts-list", "1,2", "--dtypes", "float32,bfloat16", "--neuron",
                         "pre_activation", "--threads", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    runs = report["runs"]
    assert [(r["dtype"], r["rule"], r["steps"]) for r in runs] == [
        (d, rule, m) for d in ("float32", "bfloat16") for rule in ("right", "left", "gauss_legendre") for m in (1, 3)]
    for run in runs:
        assert run["reference"]["prompts"] == 2 and run["ratio_median"] > 0 and run["fast"]["median_s"] > 0
        assert run["max_rel_diff"] <= (1e-4 if run["dtype"] == "float32" else 0.2)
    assert [(r["dtype"], r["batch_prompts"]) for r in report["batch_scaling"]] == [
        ("float32", 1), ("float32", 2), ("bfloat16", 1), ("bfloat16", 2)]
    assert report["bf16"]["prompts"] == 3 and 0 <= report["bf16"]["jaccard_min"] <= 1
    assert report["neuron"] == "pre_activation" and report["prompt_tokens"] == [4, 9, 5]
