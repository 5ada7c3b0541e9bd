"""kn.core.adapters: where the FFN neurons of each architecture family live; one module per family over the shared
Adapter (base), and the registry that picks one for a model.

API
    adapter_for(model) -> Adapter            # raises UnsupportedArchitecture naming the supported families
    SUPPORTED_FAMILIES
"""

from __future__ import annotations

from torch import nn

from kn.base.errors import UnsupportedArchitecture
from kn.core.adapters.base import Adapter
from kn.core.adapters.gemma3 import Gemma3Adapter
from kn.core.adapters.gpt2 import GPT2Adapter
from kn.core.adapters.llama import LlamaAdapter

_FAMILIES: dict[str, type[Adapter]] = {
    "gpt2": GPT2Adapter,
    "llama": LlamaAdapter,
    "qwen2": LlamaAdapter,
    "mistral": LlamaAdapter,
    "gemma3_text": Gemma3Adapter,
    "gemma3": Gemma3Adapter,  # a text-only Gemma3ForCausalLM whose config reports the multimodal type
}
SUPPORTED_FAMILIES = tuple(sorted(_FAMILIES))


def adapter_for(model: nn.Module) -> Adapter:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    cls = _FAMILIES.get(model_type)
    if cls is None:
        raise UnsupportedArchitecture(
            f"architecture {model_type!r} is not supported; supported model_type values: {', '.join(SUPPORTED_FAMILIES)}"
        )
    return cls(model=model, family=cls.family_name)
