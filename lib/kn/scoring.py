"""kn.scoring: batched next-token scoring of many prompts.

API
    tokenize_prompts(tokenizer, prompts) -> list of [seq] LongTensors
    next_token_scores(loaded, input_ids, target_ids, *, batch_size=32, progress=False) -> DataFrame
        columns p_target, top1_id, p_top1, rank_target (0 = top-1)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm


def tokenize_prompts(tokenizer, prompts) -> list[torch.Tensor]:
    """Each prompt as the tokenizer encodes it by default (with a BOS token where the model adds one)."""
    return [torch.tensor(ids, dtype=torch.long) for ids in tokenizer(list(prompts))["input_ids"]]


@torch.no_grad()
def next_token_scores(loaded, input_ids: list[torch.Tensor], target_ids, *, batch_size: int = 32,
                      progress: bool = False) -> pd.DataFrame:
    """Next-token distribution after each prompt.

    input_ids: list of [seq] LongTensors (lengths may differ); target_ids: [prompt] token ids.
    Prompts are right-padded, so every real token sees exactly its own prefix and the logits at each prompt's
    last real position equal an unpadded forward. Prompts are sorted by length to keep padding small."""
    device = loaded.device
    targets = torch.as_tensor(np.asarray(target_ids), dtype=torch.long)
    order = sorted(range(len(input_ids)), key=lambda i: len(input_ids[i]))
    out = np.zeros((len(input_ids), 4))
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc="scoring", disable=not progress):
        rows = order[start:start + batch_size]
        width = max(len(input_ids[i]) for i in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for r, i in enumerate(rows):
            ids[r, : len(input_ids[i])] = input_ids[i]
            mask[r, : len(input_ids[i])] = 1
        logits = loaded.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        last = mask.sum(1).to(device) - 1
        probs = logits[torch.arange(len(rows), device=device), last].float().softmax(-1)
        tgt = targets[rows].to(device)
        p_target = probs.gather(1, tgt[:, None])[:, 0]
        p_top1, top1 = probs.max(-1)
        rank = (probs > p_target[:, None]).sum(-1)
        out[rows] = torch.stack([p_target, top1.float(), p_top1, rank.float()], 1).cpu().numpy()
    return pd.DataFrame({"p_target": out[:, 0], "top1_id": out[:, 1].astype(np.int64), "p_top1": out[:, 2],
                         "rank_target": out[:, 3].astype(np.int64)})
