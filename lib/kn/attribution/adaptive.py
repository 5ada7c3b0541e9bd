"""kn.attribution.adaptive: the converged reference per prompt (every rule's scores and the adaptive integral from one
set of integrand evaluations) and the adaptive rule as an attribution (``ig_rule: adaptive``).

API
    rule_specs(rules, steps, paper) -> list[(rule, m)]; jaccard(a, b) -> float (nan when both are empty)
    prompt_convergence(loaded, input_ids [seq], target_id, *, rules, steps, paper, tolerance, neuron="ffn_out_input",
                       mesh=None, max_evaluations=2000) -> PromptConvergence
        every rule's scores [L, H] and the reference [L, H] from one integrand call over the union of all nodes
        (plus the reference's refinement, per layer)
    adaptive_integrated_gradients(loaded, input_ids, target_ids, *, tolerance=ADAPTIVE_TOLERANCE, neuron)
        -> IGResult     the reference as an attribution rule (ig_rule: adaptive), for any number of prompts
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch

from kn.attribution.common import NEURON_DEFINITIONS, IGResult
from kn.attribution.kernel import integrand
from kn.attribution.quadrature import (
    RULES,
    AdaptiveIntegral,
    _key,
    _panel_points,
    adaptive_integral,
    quadrature,
    reference_mesh,
)

DEFAULT_STEPS = (1, 2, 4, 8, 20, 50, 100)
REFERENCE = "reference"  # the rule name of the adaptive reference in the frames (steps 0)


# --------------------------------------------------------------------------------------------------------------
# one prompt: every rule and the reference from shared evaluations
# --------------------------------------------------------------------------------------------------------------


def rule_specs(rules: Sequence[str] = RULES, steps: Sequence[int] = DEFAULT_STEPS,
               paper: tuple[str, int] | None = ("right", 20)) -> list[tuple[str, int]]:
    """The (rule, m) pairs of a study: every rule with every m (in the given orders), plus ``paper`` if missing."""
    specs = []
    for rule in rules:
        if rule not in RULES:
            raise ValueError(f"rule {rule!r}: use one of {RULES}")
        for m in steps:
            quadrature(rule, m)  # validates m
            specs.append((rule, int(m)))
    if paper is not None:
        paper = (str(paper[0]), int(paper[1]))
        quadrature(*paper)
        if paper not in specs:
            specs.append(paper)
    return specs


def _rule_key_alphas(rule: str, m: int) -> tuple[list[float], torch.Tensor]:
    """Nodes as floats (right / left: the float of the exact fraction k/m) and weights of a rule."""
    nodes, weights = quadrature(rule, m)
    if rule in ("right", "left"):
        ks = range(1, m + 1) if rule == "right" else range(0, m)
        nodes_f = [float(Fraction(k, m)) for k in ks]
    else:
        nodes_f = [float(x) for x in nodes]
    return nodes_f, weights


@dataclass
class PromptConvergence:
    """One prompt's rules and reference (``prompt_convergence``).

    scores: {(rule, m): float32 [L, H]}, q_bar * sum_k w_k dP/dq(alpha_k) from the shared evaluations
    reference: AdaptiveIntegral with integral [L, H] float64 (groups = layers in order)
    p_zero, p_full: float32 [L]; P(0) and P(q_bar) of each layer (the integrand's p at alpha 0 and 1)
    layers: layer indices; shared_alphas: float64 [n] the alphas evaluated for every layer; rule_alphas: how many of
    them are rule nodes; mesh_alphas: the rest (the mesh's extra points); refine_rows: (alpha, layer) rows the
    refinement added; seconds, cpu_seconds: wall and process CPU time of the prompt."""

    scores: dict
    reference: AdaptiveIntegral
    p_zero: torch.Tensor
    p_full: torch.Tensor
    layers: list
    shared_alphas: torch.Tensor
    rule_alphas: int
    mesh_alphas: int
    refine_rows: int
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def prompt_convergence(loaded, input_ids, target_id: int, *, rules: Sequence[str] = RULES,
                       steps: Sequence[int] = DEFAULT_STEPS, paper: tuple[str, int] | None = ("right", 20),
                       tolerance: float = 1e-3, neuron: str = "ffn_out_input", mesh: Sequence | None = None,
                       max_evaluations: int = 2000) -> PromptConvergence:
    """Every rule's scores and the adaptive reference for one prompt (input_ids [seq], target_id).

    One ``integrand`` call over all layers at the union of every rule's nodes and the reference mesh's points (keyed
    so that equal alphas are evaluated once); each rule's scores are then sum_k w_k q_bar dP/dq(alpha_k), exactly
    ``integrated_gradients(rule=rule, steps=m)``. The reference (``adaptive_integral`` with one group per layer)
    starts from those evaluations and refines each layer with ``integrand(..., layers=[those layers])``."""
    if neuron not in NEURON_DEFINITIONS:
        raise ValueError(f"neuron {neuron!r}: use one of {NEURON_DEFINITIONS}")
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    specs = rule_specs(rules, steps, paper)
    breaks = [Fraction(x) for x in (reference_mesh() if mesh is None else mesh)]
    if breaks[0] != 0 or breaks[-1] != 1:
        raise ValueError("mesh: the break points must run from 0 to 1")
    alpha_of: dict[int, float] = {}
    nodes = {}
    for spec in specs:
        floats, weights = _rule_key_alphas(*spec)
        keys = [_key(x) for x in floats]
        for k, x in zip(keys, floats):
            alpha_of.setdefault(k, x)
        nodes[spec] = (keys, weights)
    rule_keys = set(alpha_of)
    for a, b in zip(breaks, breaks[1:]):
        for x in _panel_points(a, b):
            alpha_of.setdefault(_key(x), float(x))
    keys = sorted(alpha_of)
    row = {k: j for j, k in enumerate(keys)}
    shared = torch.tensor([alpha_of[k] for k in keys], dtype=torch.float64)

    sampled = integrand(loaded, input_ids, int(target_id), shared, neuron=neuron)
    layers = list(sampled.layers)
    q_bar = sampled.q_bar  # [L, H]
    values = sampled.grads * q_bar[None]  # [n, L, H] float32: the integrand of each neuron's score
    sampled.grads = None  # the float32 [n, L, H] copy lives on in values
    scores = {}
    for spec, (ks, weights) in nodes.items():
        idx = torch.tensor([row[k] for k in ks])
        scores[spec] = (weights[:, None, None] * values[idx].double()).sum(0).float()

    def evaluate(alphas, groups):
        part = integrand(loaded, input_ids, int(target_id), alphas, layers=[layers[g] for g in groups], neuron=neuron)
        return part.grads * q_bar[groups][None]

    reference = adaptive_integral(evaluate, groups=len(layers), tolerance=tolerance, mesh=breaks,
                                  known=(shared, values), max_evaluations=max_evaluations)
    p_zero, p_full = sampled.p[row[_key(0.0)]].clone(), sampled.p[row[_key(1.0)]].clone()
    return PromptConvergence(scores, reference, p_zero, p_full, layers, shared, len(rule_keys),
                             len(keys) - len(rule_keys), int(reference.new_evaluations.sum()),
                             time.perf_counter() - t_wall, time.process_time() - t_cpu)


# --------------------------------------------------------------------------------------------------------------
# the converged setting as a rule
# --------------------------------------------------------------------------------------------------------------

ADAPTIVE_TOLERANCE = 1e-3  # of the prompt's largest score: the reference's bound in chapter 2b's default


def adaptive_integrated_gradients(loaded, input_ids, target_ids, *, tolerance: float = ADAPTIVE_TOLERANCE,
                                  neuron: str = "ffn_out_input", mesh: Sequence | None = None,
                                  max_evaluations: int = 2000):
    """Integrated gradients by the adaptive reference (``adaptive_integral`` per layer, from ``reference_mesh``), the
    converged setting: ``ig_rule: adaptive``. Same inputs and result as kn.attribution.kernel.integrated_gradients
    (IGResult: scores [prompt, layer, neuron], p_full / p_zero [prompt, layer]; steps 0, rule "adaptive"). About 120
    integrand evaluations per prompt and layer on SmolLM2-135M (six times the m = 20 rule's cost), more where a layer's
    integrand has a spike."""
    prompts = [torch.as_tensor(x, dtype=torch.long).reshape(-1) for x in input_ids]
    targets = torch.as_tensor(target_ids, dtype=torch.long).reshape(-1)
    if targets.numel() != len(prompts):
        raise ValueError(f"{targets.numel()} target ids for {len(prompts)} prompts")
    results = [prompt_convergence(loaded, ids, int(t), rules=(), steps=(), paper=None, tolerance=tolerance,
                                  neuron=neuron, mesh=mesh, max_evaluations=max_evaluations)
               for ids, t in zip(prompts, targets)]
    scores = torch.stack([r.reference.integral.float() for r in results])
    p_full = torch.stack([r.p_full.float() for r in results])
    p_zero = torch.stack([r.p_zero.float() for r in results])
    layers = results[0].layers if results else []
    return IGResult(scores, p_full, p_zero, targets, 0, "adaptive", list(layers), neuron)
