"""Tiny random models and prompts shared by the attribution tests (unit tier): the FFNs are scaled so that
they matter, and every test runs on one torch thread."""

from __future__ import annotations

import pytest
import torch
from kn.core.models import LoadedModel, tiny_model

# prompts of different lengths, a 1-token prompt among them
PROMPTS = [torch.tensor([5, 17, 9, 33, 2, 71]), torch.tensor([11]), torch.tensor([40, 3, 99])]
TARGETS = [7, 12, 64]


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: tiny models gain nothing from threads, and on a shared 2-core machine a core busy with another
    process stalls every parallel region of a 2-thread run (we saw the embedded-model test take 110 s instead of 10 s).
    Results do not depend on the thread count beyond float32 rounding."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _tiny(family: str, seed: int = 0) -> LoadedModel:
    """A tiny random model whose FFNs matter (random init leaves them too weak to move the probabilities).
    family: "gpt2", "llama" or "gemma3" (whose post-FFN norm undoes the output projection's scale; the gate and up
    scales still sharpen its neurons)."""
    loaded = tiny_model(family, seed=seed, n_layers=3, n_neurons=32)
    with torch.no_grad():
        loaded.model.get_input_embeddings().weight.mul_(3.0)  # sharper next-token distributions
        for layer in range(loaded.adapter.n_layers):
            loaded.adapter.ffn_out_proj(layer).weight.mul_(10.0)
            for name, param in loaded.adapter.layers()[layer].named_parameters():
                if param.dim() == 2 and any(k in name for k in ("c_fc", "gate_proj", "up_proj")):
                    param.mul_(10.0)
    return loaded


def _argmax_targets(loaded: LoadedModel, prompts) -> list[int]:
    """The model's own next-token prediction for each prompt: a target with a sizeable probability."""
    with torch.no_grad():
        return [int(loaded.model(input_ids=ids[None]).logits[0, -1].argmax()) for ids in prompts]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest |b|."""
    return float((a - b).abs().max() / b.abs().max())
