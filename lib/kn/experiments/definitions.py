"""kn.experiments.definitions: chapter 2b's second study: which quantity the neurons are (the FFN output projection's
inputs, as the papers, or the pre-activations), by their coarse sets and by suppressing each one's top neurons.

API
    definition_study(loaded, input_ids, target_ids, *, steps=20, rule="right", coarse_threshold=0.2, top_k=20,
                     seed=0, batch_size=32, ig_batch_prompts=None)
        -> DefinitionResult(prompts, arms: DataFrames, top_sets, settings)

Two batch sizes, because the two passes differ by orders of magnitude in what one prompt costs: the suppression check
scores ``batch_size`` prompts per forward pass (one row each), while integrated gradients runs every prompt as
layers x (steps + 1) rows, each with a float32 [vocab] logit row and its gradient. At the scoring batch of 32, SmolLM2's
IG call held 32 x 30 x 21 = 20,160 rows (the [rows, vocab] buffer alone 4 GB; chapter 2b's peak 14.3 GiB against
under 3.3 GiB for every other chapter); IG therefore runs at the kernel's own batch (``ig_batch_prompts`` None: 2
prompts on a CPU, 8 on CUDA, as chapter 2). benchmarks/definition_memory.py measures both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from kn.attribution.common import NEURON_DEFINITIONS
from kn.attribution.rules import attribute
from kn.base.neurons import coarse_set, jaccard, matched_random
from kn.methods.interventions import answer_probabilities, change_rate

# --------------------------------------------------------------------------------------------------------------
# which quantity is attributed
# --------------------------------------------------------------------------------------------------------------


@dataclass
class DefinitionResult:
    """``definition_study``'s results.

    prompts: one row per prompt: prompt, target, jaccard_coarse (coarse sets of the two definitions), n_coarse_<d>,
        topk_overlap (|top_k of one & of the other| / top_k), p_before, and per arm a (ffn_out_input, pre_activation,
        random) p_after_<a> and change_<a> = (p_after - p_before) / p_before
    arms: the same causal numbers long: prompt, arm, p_before, p_after, change
    top_sets: {arm: list of frozensets of flat ids, one per prompt}; settings: the arguments."""

    prompts: pd.DataFrame
    arms: pd.DataFrame
    top_sets: dict
    settings: dict = field(default_factory=dict)


ARMS = ("ffn_out_input", "pre_activation", "random")


def _top_ids(scores: torch.Tensor, k: int) -> frozenset:
    flat = scores.reshape(-1)
    return frozenset(flat.topk(min(int(k), flat.numel())).indices.tolist())


def definition_study(loaded, input_ids, target_ids, *, steps: int = 20, rule: str = "right",
                     coarse_threshold: float = 0.2, top_k: int = 20, seed: int = 0,
                     batch_size: int = 32, ig_batch_prompts: int | None = None) -> DefinitionResult:
    """IG with neuron = "ffn_out_input" (the papers') and "pre_activation" (the forks') on the same prompts.

    Per prompt: the Jaccard of the two coarse sets (t = coarse_threshold, each relative to its own largest score),
    and a causal check: each definition's top_k neurons by score (flat ids: the same physical FFN unit under both
    definitions), and a random control with as many neurons per layer as the paper definition's top_k (seeded;
    drawn outside that top_k), suppressed (factor 0 at the last position, kn.methods.interventions.answer_probabilities);
    change = (p_after - p_before) / p_before. batch_size: prompts per scoring pass of the causal check;
    ig_batch_prompts: prompts per integrated-gradients call (None: the kernel's default; the module docstring says
    why the two differ). Returns DefinitionResult; bootstrap the per-prompt columns over prompts with kn.base.stats."""
    prompts = [torch.as_tensor(x, dtype=torch.long).reshape(-1) for x in input_ids]
    targets = [int(x) for x in torch.as_tensor(target_ids).reshape(-1).tolist()]
    if len(targets) != len(prompts):
        raise ValueError(f"{len(targets)} target ids for {len(prompts)} prompts")
    H = loaded.adapter.n_neurons

    ig = {d: attribute(loaded, prompts, targets, steps=steps, rule=rule, dtype="float32", neuron=d,
                       batch_prompts=ig_batch_prompts) for d in NEURON_DEFINITIONS}
    rng = np.random.default_rng(seed)
    top_sets: dict[str, list] = {a: [] for a in ARMS}
    rows = []
    for p in range(len(prompts)):
        coarse = {d: coarse_set(ig[d].scores[p], coarse_threshold) for d in NEURON_DEFINITIONS}
        tops = {d: _top_ids(ig[d].scores[p], top_k) for d in NEURON_DEFINITIONS}
        tops["random"] = matched_random(tops["ffn_out_input"], H, rng)
        for a in ARMS:
            top_sets[a].append(tops[a])
        k = max(1, len(tops["ffn_out_input"]))
        rows.append({"prompt": p, "target": targets[p],
                     "jaccard_coarse": jaccard(coarse["ffn_out_input"], coarse["pre_activation"]),
                     "n_coarse_ffn_out_input": len(coarse["ffn_out_input"]),
                     "n_coarse_pre_activation": len(coarse["pre_activation"]),
                     "topk_overlap": len(tops["ffn_out_input"] & tops["pre_activation"]) / k})
    arm_rows = []
    for a in ARMS:
        before, after = answer_probabilities(loaded, prompts, targets, top_sets[a], 0.0, batch_size=batch_size)
        change = change_rate(before, after)
        for p in range(len(prompts)):
            rows[p]["p_before"] = float(before[p])
            rows[p][f"p_after_{a}"] = float(after[p])
            rows[p][f"change_{a}"] = float(change[p])
            arm_rows.append((p, a, float(before[p]), float(after[p]), float(change[p])))
    settings = {"steps": int(steps), "rule": rule, "coarse_threshold": float(coarse_threshold), "top_k": int(top_k),
                "seed": int(seed)}
    return DefinitionResult(pd.DataFrame(rows), pd.DataFrame(arm_rows, columns=["prompt", "arm", "p_before",
                                                                                 "p_after", "change"]),
                            top_sets, settings)
