"""kn.core.scoring: batched next-token scoring of many prompts.

API
    tokenize_prompts(tokenizer, prompts) -> list of [seq] LongTensors
    context_size(loaded) -> int | None        the model's positions (max_position_embeddings / n_positions)
    check_prompt_lengths(loaded, input_ids, prompts)   PromptTooLong (a BadInput) naming the first prompt whose tokens
                                              do not fit the model's context
    length_batches(input_ids, batch_size) -> iterator of index lists, shortest prompts first
    pad_right(input_ids, rows) -> (ids [b, w], mask [b, w], last [b])   right padding: real tokens never see pads
    next_token_scores(loaded, input_ids, target_ids, *, batch_size=32, progress=False) -> DataFrame
        columns p_target, top1_id, p_top1, rank_target (0 = top-1)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from kn.base.errors import PromptTooLong
from kn.base.progress import track


def tokenize_prompts(tokenizer, prompts) -> list[torch.Tensor]:
    """Each prompt as the tokenizer encodes it by default (with a BOS token where the model adds one)."""
    return [torch.tensor(ids, dtype=torch.long) for ids in tokenizer(list(prompts))["input_ids"]]


def context_size(loaded) -> int | None:
    """How many positions the model takes (None where its config does not say)."""
    config = loaded.model.config
    config = getattr(config, "text_config", None) or config
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_prompt_lengths(loaded, input_ids: Sequence[torch.Tensor], prompts: Sequence[str]) -> None:
    """Refuse prompts longer than the model's context (past it, positions wrap or index errors follow)."""
    limit = context_size(loaded)
    if limit is None:
        return
    for ids, prompt in zip(input_ids, prompts):
        if ids.numel() > limit:
            shown = prompt if len(prompt) <= 60 else prompt[:57] + "..."
            raise PromptTooLong(f"a prompt of {ids.numel()} tokens is longer than the model's context of {limit} "
                                f"positions: {shown!r}; shorten the fact's subject or template")


def pad_right(input_ids: Sequence[torch.Tensor], rows: Sequence[int]):
    """Right-padded batch of the prompts ``rows`` of ``input_ids``: (ids, mask, last), all on the CPU.

    ids, mask: [len(rows), width] LongTensors (pad id 0, masked out); last: [len(rows)] index of each row's last
    real token."""
    lengths = [len(input_ids[i]) for i in rows]
    if min(lengths) == 0:
        raise ValueError("empty prompt: need at least one token")
    width = max(lengths)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for r, i in enumerate(rows):
        ids[r, : lengths[r]] = torch.as_tensor(input_ids[i], dtype=torch.long).reshape(-1)
        mask[r, : lengths[r]] = 1
    return ids, mask, torch.tensor(lengths, dtype=torch.long) - 1


def length_batches(input_ids: Sequence[torch.Tensor], batch_size: int) -> Iterator[list[int]]:
    """Indices of the prompts in batches of ``batch_size``, shortest first, so padding stays small."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(input_ids)), key=lambda i: len(input_ids[i]))
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


@torch.no_grad()
def next_token_scores(loaded, input_ids: list[torch.Tensor], target_ids, *, batch_size: int = 32,
                      progress: bool = False) -> pd.DataFrame:
    """Next-token distribution after each prompt.

    input_ids: list of [seq] LongTensors (lengths may differ); target_ids: [prompt] token ids.
    Prompts are right-padded, so every real token sees exactly its own prefix and the logits at each prompt's
    last real position equal an unpadded forward. Prompts are sorted by length to keep padding small."""
    device = loaded.device
    targets = torch.tensor(np.asarray(target_ids, dtype=np.int64))  # a copy: a read-only array would warn
    out = np.zeros((len(input_ids), 4))
    batches = list(length_batches(input_ids, batch_size))
    for rows in (track(batches, desc="scoring", unit="batch") if progress else batches):
        ids, mask, last = pad_right(input_ids, rows)
        logits = loaded.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        last = last.to(device)
        probs = logits[torch.arange(len(rows), device=device), last].float().softmax(-1)
        tgt = targets[rows].to(device)
        p_target = probs.gather(1, tgt[:, None])[:, 0]
        p_top1, top1 = probs.max(-1)
        rank = (probs > p_target[:, None]).sum(-1)
        out[rows] = torch.stack([p_target, top1.float(), p_top1, rank.float()], 1).cpu().numpy()
    return pd.DataFrame({"p_target": out[:, 0], "top1_id": out[:, 1].astype(np.int64), "p_top1": out[:, 2],
                         "rank_target": out[:, 3].astype(np.int64)})
