"""kn.convergence: how far each quadrature rule of integrated gradients is from the integral it approximates, and which
quantity ("neuron") the attribution is about.

IG approximates, per neuron i of layer l, Attr_i = q_bar_i * int_0^1 dP/dq_i(alpha q_bar) d alpha by a rule with m
nodes (kn.attribution.quadrature). This module computes, per prompt, a converged reference of that integral and every
rule's scores from ONE set of integrand evaluations (kn.attribution.integrand), and compares them: neuron by neuron
(error relative to the prompt's largest |reference score|), layer by layer (the completeness gap
|sum_i Attr_i - (P(q_bar) - P(0))|), and by the coarse sets they give (Jaccard). ``definition_study`` compares the
papers' neurons (the FFN output projection's inputs) with the forks' pre-activations, by their coarse sets and by
suppressing each one's top-k neurons.

The reference (``adaptive_integral``): composite Simpson panel pairs. A panel [a, b] is sampled at 5 equally spaced
points; S1 is Simpson's rule on its end points and midpoint, S2 the composite Simpson rule on both halves; the panel's
value is Boole's rule S2 + (S2 - S1) / 15 and its error estimate |S2 - S1|, per neuron: 15 times the classical
estimate of S2's error, itself above Boole's once the panel resolves the integrand. The classical |S2 - S1| / 15 is
too optimistic on a panel that straddles an unresolved spike (a Gaussian of width 0.01 at 0.05 on the 0.01 grid: it
declared 1e-3 met with 1.9e-3 left); |S2 - S1| met it there with 2.7e-5, at 24 more evaluations. On SmolLM2-135M's
spiky layer 0 its estimate (~9e-4 of the prompt's largest score) was ~50x the distance to a 4,001-point Simpson rule
(~2e-5). The
starting mesh (``reference_mesh``) is the uniform grid of 1/100 (25 panels of 0.04) with its first panel split
geometrically towards alpha = 0 ([0, 0.0025], [0.0025, 0.005], ..., [0.02, 0.04]: the integrand's spikes sit at
small alpha); its 117 points include the right and left nodes of every m dividing 100, so those evaluations serve
both. Refinement is per group (per LAYER in the study): a layer has converged when every neuron's summed error estimate
is at most ``tolerance * scale`` (scale: the prompt's largest |reference score| over all layers, re-estimated each
round); otherwise its panels are bisected in decreasing order of their worst neuron's error until the rest sum to at
most half that bound (4 new points per bisected panel, evaluated for that layer only), until it converges or reaches
``max_evaluations`` distinct alphas (then it is reported unconverged).

API
    reference_mesh(base_panels=25, zero_levels=4) -> list[Fraction]      # panel break points, 0 .. 1
    adaptive_integral(evaluate, *, groups=None, tolerance=1e-3, scale=None, mesh=None, known=None,
                      max_evaluations=2000) -> AdaptiveIntegral
        evaluate(alphas [n] float64 ndarray) -> [n, *shape]                       (groups None: one group)
        evaluate(alphas [n], groups: list[int]) -> [n, len(groups), *shape]     (groups = G)
        known: (alphas [k], values [k, G, *shape] (or [k, *shape])) already evaluated, used before calling evaluate
    AdaptiveIntegral(integral [G, *shape] float64, error [G, *shape] float64, converged [G] bool,
                     evaluations [G] int64, new_evaluations [G] int64, panels, scale, tolerance)
                     (no G axis when evaluate took alphas only)
    rule_specs(rules, steps, paper) -> list[(rule, m)]; jaccard(a, b) -> float (nan when both are empty)
    prompt_convergence(loaded, input_ids [seq], target_id, *, rules, steps, paper, tolerance, neuron="ffn_out_input",
                       mesh=None, max_evaluations=2000) -> PromptConvergence
        every rule's scores [L, H] and the reference [L, H] from one integrand call over the union of all nodes
        (plus the reference's refinement, per layer)
    convergence_study(loaded, input_ids: list of [seq], target_ids [prompt], *, rules=RULES,
                      steps=(1, 2, 4, 8, 20, 50, 100), tolerance=1e-3, coarse_threshold=0.2, paper=("right", 20),
                      progress=None, neuron="ffn_out_input", mesh=None, max_evaluations=2000) -> ConvergenceResult
    ConvergenceResult(errors, rules, layers, prompts: DataFrames (below), reference_scores, paper_scores: lists of
                      [L, H] float32 (one per prompt), settings: dict; .paper -> (rule, m))
    convergence_table(result) -> DataFrame indexed by (rule, steps)
    slow_layers(result, *, threshold=0.05, min_share=0.5, rule=None, steps=None) -> list[int]
    share_max_in_slow_layers(result, layers=None, **slow_kw) -> float
    cheapest_converged_rule(table, min_mean_jaccard=0.95, min_worst_jaccard=0.8) -> (rule, m) | None
    spiky_integrand(loaded, ids, target, layer, neuron, n=2001, *, definition="ffn_out_input")
        -> (alphas [n] float64 ndarray, values [n] float64 ndarray)     # q_bar_i * dP/dq_i(alpha q_bar)
    definition_study(loaded, input_ids, target_ids, *, steps=20, rule="right", coarse_threshold=0.2, top_k=20,
                     seed=0, batch_size=32) -> DefinitionResult(prompts, arms: DataFrames, top_sets, settings)
    adaptive_integrated_gradients(loaded, input_ids, target_ids, *, tolerance=ADAPTIVE_TOLERANCE, neuron)
        -> IGResult     the reference as an attribution rule (ig_rule: adaptive), for any number of prompts
    DEFAULT_STEPS = (1, 2, 4, 8, 20, 50, 100); REFERENCE = "reference"; ARMS = ("ffn_out_input", "pre_activation",
    "random")

ConvergenceResult frames (prompt: position in input_ids; steps 0 with rule "reference" is the adaptive reference):
    errors  per (prompt, rule, steps, layer): max_rel_error (max_i |score_i - ref_i| / scale), worst_neuron,
            gap (|sum_i score_i - delta|, delta = P(q_bar) - P(0) of the layer), gap_delta (gap / |delta|),
            gap_max (gap / scale)
    rules   per (prompt, rule, steps): max_rel_error (over layers; for the reference its own error estimate / scale),
            worst_layer, n_coarse, jaccard_reference, jaccard_paper (coarse sets, t = coarse_threshold), gap_pooled
            (sum_l gap_l / sum_l |delta_l|)
    layers  per (prompt, layer): evaluations (distinct alphas of the layer's reference), new_evaluations (those
            beyond the shared ones), converged, error_estimate (max_i, absolute), error_rel (/ scale), gap, gap_delta,
            gap_max (of the reference), p_zero, p_full, max_abs_reference
    prompts per prompt: target, max_layer / max_neuron / max_score (the largest reference score, signed, as the
            coarse set uses it), scale, n_coarse, converged (every layer), shared_alphas (the union of the rules'
            nodes and the mesh, evaluated for every layer), rule_alphas (of those, the rules' nodes), mesh_alphas
            (the mesh's extra points), shared_rows (shared_alphas * L), refine_rows (the refinement's (alpha, layer)
            rows), seconds, cpu_seconds
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pandas as pd
import torch

from .attribution import NEURON_DEFINITIONS, RULES, integrand, integrated_gradients, quadrature
from .neurons import coarse_set

__all__ = ["adaptive_integrated_gradients", "ADAPTIVE_TOLERANCE", "AdaptiveIntegral", "reference_mesh", "adaptive_integral", "rule_specs", "jaccard", "PromptConvergence",
           "prompt_convergence", "ConvergenceResult", "convergence_study", "convergence_table", "slow_layers",
           "share_max_in_slow_layers", "cheapest_converged_rule", "spiky_integrand", "DefinitionResult",
           "definition_study", "ARMS", "DEFAULT_STEPS", "REFERENCE"]

DEFAULT_STEPS = (1, 2, 4, 8, 20, 50, 100)
REFERENCE = "reference"  # the rule name of the adaptive reference in the frames (steps 0)


# --------------------------------------------------------------------------------------------------------------
# the adaptive core
# --------------------------------------------------------------------------------------------------------------


def _key(x) -> int:
    """Alphas closer than 2^-41 share an evaluation (k/m as a float is the same float for every equal fraction)."""
    return round(float(x) * 2.0**40)


def reference_mesh(base_panels: int = 25, zero_levels: int = 4) -> list[Fraction]:
    """Break points of the reference's starting panels on [0, 1], exact fractions, increasing.

    ``base_panels`` equal panels of width w = 1/base_panels (each sampled at 5 points: the grid 1/(4 base_panels));
    the first one, [0, w], split geometrically into [0, w/2^z], [w/2^z, w/2^(z-1)], ..., [w/2, w] (z = zero_levels).
    Default: w = 0.04, grid 0.01 (101 points) plus 16 points in [0, 0.04] down to a spacing of 0.000625."""
    if int(base_panels) < 1 or int(zero_levels) < 0:
        raise ValueError("base_panels must be >= 1 and zero_levels >= 0")
    w = Fraction(1, int(base_panels))
    return ([Fraction(0)] + [w / 2**k for k in range(int(zero_levels), 0, -1)]
            + [w * j for j in range(1, int(base_panels) + 1)])


def _panel_points(a: Fraction, b: Fraction) -> list[Fraction]:
    return [a + (b - a) * j / 4 for j in range(5)]


@dataclass
class AdaptiveIntegral:
    """The adaptive reference of ``adaptive_integral``.

    integral: float64 [G, *shape] (no G axis when evaluate took alphas only): the sum of the panels' Boole values
    error: float64, same shape: each element's summed panel error estimates |S2 - S1| (see the module docstring)
    converged: bool [G]: error.max() <= tolerance * scale for the group
    evaluations: int64 [G]: distinct alphas the group's panels used (known ones included)
    new_evaluations: int64 [G]: alphas ``evaluate`` was called at for the group
    panels: per group the final panels [(a, b)] as floats; scale: the scale of the bound (given, or the largest
    |integral| over all groups and elements); tolerance."""

    integral: torch.Tensor
    error: torch.Tensor
    converged: torch.Tensor
    evaluations: torch.Tensor
    new_evaluations: torch.Tensor
    panels: list
    scale: float
    tolerance: float


def adaptive_integral(evaluate: Callable, *, groups: int | None = None, tolerance: float = 1e-3,
                      scale: float | None = None, mesh: Sequence | None = None, known=None,
                      max_evaluations: int = 2000, min_width: float = 2.0**-30) -> AdaptiveIntegral:
    """Integral over [mesh[0], mesh[-1]] of a vector function of alpha, adaptive per group (see the module docstring).

    evaluate: groups None: evaluate(alphas [n] float64 ndarray) -> [n, *shape] (ndarray or tensor); groups = G:
        evaluate(alphas [n], groups: list of group indices) -> [n, len(groups), *shape]. It is called once per round
        for each distinct set of new alphas (groups needing the same alphas share the call).
    tolerance, scale: a group has converged when every element's error estimate is <= tolerance * scale; scale None:
        the largest |integral| over all groups and elements, re-estimated every round.
    mesh: increasing break points of the starting panels (default ``reference_mesh()``); Fractions keep the points
        exact, so points shared with ``known`` match.
    known: (alphas [k], values [k, G, *shape], or [k, *shape] when groups is None): evaluations to use first.
    max_evaluations: at most this many distinct alphas per group; a group stops refining there (unconverged).
    min_width: panels this narrow are not bisected."""
    single = groups is None
    G = 1 if single else int(groups)
    if G < 1:
        raise ValueError("groups must be >= 1")
    breaks = [Fraction(x) if not isinstance(x, Fraction) else x for x in (reference_mesh() if mesh is None else mesh)]
    if len(breaks) < 2 or any(b <= a for a, b in zip(breaks, breaks[1:])):
        raise ValueError("mesh: need at least two strictly increasing break points")
    if not tolerance > 0:
        raise ValueError("tolerance must be > 0")

    store: list[dict] = [dict() for _ in range(G)]
    alpha_of: dict[int, float] = {}
    if known is not None:
        k_alphas = np.asarray(torch.as_tensor(known[0], dtype=torch.float64).cpu()).reshape(-1)
        k_values = torch.as_tensor(known[1])
        if single:
            k_values = k_values[:, None]
        if k_values.shape[0] != k_alphas.size or k_values.shape[1] != G:
            raise ValueError(f"known values {tuple(k_values.shape)} do not match {k_alphas.size} alphas x {G} groups")
        for j, a in enumerate(k_alphas):
            key = _key(a)
            alpha_of.setdefault(key, float(a))
            for g in range(G):
                store[g][key] = k_values[j, g]

    panels = [[(breaks[i], breaks[i + 1]) for i in range(len(breaks) - 1)] for _ in range(G)]
    cache: list[dict] = [dict() for _ in range(G)]
    used: list[set] = [set() for _ in range(G)]
    new = [0] * G
    capped = [False] * G

    def fill():
        need: dict[tuple, list[int]] = {}
        for g in range(G):
            missing = set()
            for a, b in panels[g]:
                for x in _panel_points(a, b):
                    key = _key(x)
                    alpha_of.setdefault(key, float(x))
                    used[g].add(key)
                    if key not in store[g]:
                        missing.add(key)
            if missing:
                need.setdefault(tuple(sorted(missing)), []).append(g)
        for keys, gs in need.items():
            alphas = np.array([alpha_of[k] for k in keys], dtype=np.float64)
            out = torch.as_tensor(evaluate(alphas) if single else evaluate(alphas, list(gs)))
            if single:
                out = out[:, None]
            if out.shape[0] != len(keys) or out.shape[1] != len(gs):
                raise ValueError(f"evaluate returned {tuple(out.shape)} for {len(keys)} alphas x {len(gs)} groups")
            for j, key in enumerate(keys):
                for i, g in enumerate(gs):
                    store[g][key] = out[j, i]
            for g in gs:
                new[g] += len(keys)

    def panel(g, a, b):
        if (a, b) not in cache[g]:
            f = torch.stack([store[g][_key(x)] for x in _panel_points(a, b)]).double()
            h = float(b - a)
            s1 = h / 6 * (f[0] + 4 * f[2] + f[4])
            s2 = h / 12 * (f[0] + 4 * f[1] + 2 * f[2] + 4 * f[3] + f[4])
            diff = s2 - s1
            cache[g][(a, b)] = (s2 + diff / 15, diff.abs())
        return cache[g][(a, b)]

    while True:
        fill()
        integral, error, worst = [], [], []
        for g in range(G):
            parts = [panel(g, a, b) for a, b in panels[g]]
            integral.append(torch.stack([v for v, _ in parts]).sum(0))
            error.append(torch.stack([e for _, e in parts]).sum(0))
            worst.append([float(e.max()) if e.numel() else 0.0 for _, e in parts])
        scale_now = float(scale) if scale is not None else max(float(t.abs().max()) if t.numel() else 0.0
                                                                for t in integral)
        bound = tolerance * scale_now
        refined = False
        for g in range(G):
            if capped[g] or float(error[g].max() if error[g].numel() else 0.0) <= bound:
                continue
            order = sorted(range(len(panels[g])), key=lambda p: -worst[g][p])
            rest, split = sum(worst[g]), []
            for p in order:
                if rest <= bound / 2:
                    break
                a, b = panels[g][p]
                if float(b - a) > min_width:
                    split.append(p)
                rest -= worst[g][p]
            room = max(0, (int(max_evaluations) - len(used[g])) // 4)
            if len(split) > room:
                split, capped[g] = split[:room], True
            if not split:
                capped[g] = True
                continue
            chosen = set(split)
            out = []
            for p, (a, b) in enumerate(panels[g]):
                if p in chosen:
                    mid = (a + b) / 2
                    out += [(a, mid), (mid, b)]
                else:
                    out.append((a, b))
            panels[g] = out
            refined = True
        if not refined:
            break

    integral_t, error_t = torch.stack(integral), torch.stack(error)
    converged = torch.tensor([float(e.max() if e.numel() else 0.0) <= bound for e in error])
    evaluations = torch.tensor([len(u) for u in used], dtype=torch.int64)
    new_t = torch.tensor(new, dtype=torch.int64)
    float_panels = [[(float(a), float(b)) for a, b in p] for p in panels]
    if single:
        return AdaptiveIntegral(integral_t[0], error_t[0], converged[0], evaluations[0], new_t[0], float_panels[0],
                                scale_now, float(tolerance))
    return AdaptiveIntegral(integral_t, error_t, converged, evaluations, new_t, float_panels, scale_now,
                            float(tolerance))


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


def jaccard(a, b) -> float:
    """|a & b| / |a | b| of two sets; nan when both are empty."""
    a, b = frozenset(a), frozenset(b)
    union = len(a | b)
    return len(a & b) / union if union else float("nan")


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
# the study
# --------------------------------------------------------------------------------------------------------------


@dataclass
class ConvergenceResult:
    """``convergence_study``'s frames (see the module docstring for their columns), the reference scores of every
    prompt (float32 [L, H]), the paper rule's scores (float32 [L, H]) and the settings (rules, steps, paper,
    tolerance, coarse_threshold, neuron, layers)."""

    errors: pd.DataFrame
    rules: pd.DataFrame
    layers: pd.DataFrame
    prompts: pd.DataFrame
    reference_scores: list = field(default_factory=list)
    paper_scores: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def paper(self) -> tuple[str, int]:
        return tuple(self.settings["paper"])


def _prompt_frames(p: int, target: int, pc: PromptConvergence, specs, paper, t: float):
    ref = pc.reference.integral  # [L, H] float64
    L = ref.shape[0]
    scale = float(ref.abs().max())
    safe = scale if scale > 0 else float("nan")
    delta = (pc.p_full - pc.p_zero).double()  # [L]
    abs_delta = delta.abs()
    ref_set = coarse_set(ref, t)
    paper_set = coarse_set(pc.scores[paper], t)
    err_rows, rule_rows, layer_rows = [], [], []

    def gaps(s):
        gap = (s.double().sum(-1) - delta).abs()
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = (gap / abs_delta).numpy()
        pooled = float(gap.sum() / abs_delta.sum()) if float(abs_delta.sum()) > 0 else float("nan")
        return gap.numpy(), rel, (gap / safe).numpy(), pooled

    for spec in specs:
        s = pc.scores[spec]
        diff = (s.double() - ref).abs()
        per_layer, worst_neuron = diff.max(-1)
        rel = (per_layer / safe).numpy()
        gap, gap_delta, gap_max, pooled = gaps(s)
        for j in range(L):
            err_rows.append((p, spec[0], spec[1], pc.layers[j], float(rel[j]), int(worst_neuron[j]), float(gap[j]),
                             float(gap_delta[j]), float(gap_max[j])))
        cs = coarse_set(s, t)
        rule_rows.append((p, spec[0], spec[1], float(rel.max()), pc.layers[int(rel.argmax())], len(cs),
                          jaccard(cs, ref_set), jaccard(cs, paper_set), pooled))
    err_ref = pc.reference.error.max(-1).values  # [L]
    gap, gap_delta, gap_max, pooled = gaps(ref)
    rule_rows.append((p, REFERENCE, 0, float((err_ref / safe).max()), pc.layers[int(err_ref.argmax())],
                      len(ref_set), jaccard(ref_set, ref_set), jaccard(ref_set, paper_set), pooled))
    for j in range(L):
        layer_rows.append((p, pc.layers[j], int(pc.reference.evaluations[j]), int(pc.reference.new_evaluations[j]),
                           bool(pc.reference.converged[j]), float(err_ref[j]), float(err_ref[j] / safe),
                           float(gap[j]), float(gap_delta[j]), float(gap_max[j]), float(pc.p_zero[j]),
                           float(pc.p_full[j]), float(ref[j].abs().max())))
    flat = int(ref.argmax())
    layer, neuron = divmod(flat, ref.shape[1])
    prompt_row = (p, int(target), pc.layers[layer], neuron, float(ref.reshape(-1)[flat]), scale, len(ref_set),
                  bool(pc.reference.converged.all()), int(pc.shared_alphas.numel()), pc.rule_alphas, pc.mesh_alphas,
                  int(pc.shared_alphas.numel()) * L, pc.refine_rows, pc.seconds, pc.cpu_seconds)
    return err_rows, rule_rows, layer_rows, prompt_row


_ERR_COLS = ["prompt", "rule", "steps", "layer", "max_rel_error", "worst_neuron", "gap", "gap_delta", "gap_max"]
_RULE_COLS = ["prompt", "rule", "steps", "max_rel_error", "worst_layer", "n_coarse", "jaccard_reference",
              "jaccard_paper", "gap_pooled"]
_LAYER_COLS = ["prompt", "layer", "evaluations", "new_evaluations", "converged", "error_estimate", "error_rel", "gap",
               "gap_delta", "gap_max", "p_zero", "p_full", "max_abs_reference"]
_PROMPT_COLS = ["prompt", "target", "max_layer", "max_neuron", "max_score", "scale", "n_coarse", "converged",
                "shared_alphas", "rule_alphas", "mesh_alphas", "shared_rows", "refine_rows", "seconds", "cpu_seconds"]


def convergence_study(loaded, input_ids, target_ids, *, rules: Sequence[str] = RULES,
                      steps: Sequence[int] = DEFAULT_STEPS, tolerance: float = 1e-3, coarse_threshold: float = 0.2,
                      paper: tuple[str, int] = ("right", 20), progress=None, neuron: str = "ffn_out_input",
                      mesh: Sequence | None = None, max_evaluations: int = 2000) -> ConvergenceResult:
    """Every rule with every m against the adaptive reference, prompt by prompt (``prompt_convergence``).

    loaded: kn.models.LoadedModel; input_ids: list of [seq] LongTensors; target_ids: [prompt] ints.
    rules, steps: the rules and m compared (the paper's rule is added if missing); tolerance: the reference's bound,
    a fraction of the prompt's largest |reference score|; coarse_threshold: t of the coarse sets (score > t * max);
    paper: the (rule, m) whose coarse set the others are also compared with; progress: None, or a callable
    (total, desc, unit) -> context manager with .update(n) (kn.progress.progress), called as
    progress(n_prompts, "convergence", "prompt"); neuron: the attributed quantity; mesh, max_evaluations: the
    reference's starting panels and per-layer cap. Returns ConvergenceResult (frames in the module docstring)."""
    prompts = list(input_ids)
    targets = [int(x) for x in torch.as_tensor(target_ids).reshape(-1).tolist()]
    if len(targets) != len(prompts):
        raise ValueError(f"{len(targets)} target ids for {len(prompts)} prompts")
    paper = (str(paper[0]), int(paper[1]))
    specs = rule_specs(rules, steps, paper)
    errs, rule_rows, layer_rows, prompt_rows, refs, papers = [], [], [], [], [], []
    layers = None
    bar_cm = progress(len(prompts), "convergence", "prompt") if progress is not None else contextlib.nullcontext()
    with bar_cm as bar:
        for p, (ids, target) in enumerate(zip(prompts, targets)):
            pc = prompt_convergence(loaded, ids, target, rules=rules, steps=steps, paper=paper, tolerance=tolerance,
                                    neuron=neuron, mesh=mesh, max_evaluations=max_evaluations)
            layers = pc.layers
            e, r, l, pr = _prompt_frames(p, target, pc, specs, paper, coarse_threshold)
            errs += e
            rule_rows += r
            layer_rows += l
            prompt_rows.append(pr)
            refs.append(pc.reference.integral.float())
            papers.append(pc.scores[paper])
            del pc
            if bar is not None:
                bar.update(1)
    settings = {"rules": list(rules), "steps": [int(m) for m in steps], "paper": paper, "tolerance": float(tolerance),
                "coarse_threshold": float(coarse_threshold), "neuron": neuron, "layers": layers,
                "max_evaluations": int(max_evaluations)}
    return ConvergenceResult(pd.DataFrame(errs, columns=_ERR_COLS), pd.DataFrame(rule_rows, columns=_RULE_COLS),
                             pd.DataFrame(layer_rows, columns=_LAYER_COLS),
                             pd.DataFrame(prompt_rows, columns=_PROMPT_COLS), refs, papers, settings)


def convergence_table(result: ConvergenceResult) -> pd.DataFrame:
    """One row per (rule, steps) (the reference last, steps 0), over the prompts:

    jaccard_reference_mean, jaccard_reference_min (the worst prompt), jaccard_paper_mean: coarse-set Jaccard against
    the reference's and the paper rule's; rel_error_median, rel_error_max: of each prompt's largest
    |score - ref| / scale; completeness_gap_mean: the mean of each prompt's pooled gap sum_l |sum_i Attr_i - delta_l|
    / sum_l |delta_l|; n_prompts. Nan Jaccards (both sets empty) are skipped."""
    df = result.rules
    order = {r: i for i, r in enumerate(list(result.settings.get("rules", RULES)) + [REFERENCE])}
    g = df.groupby(["rule", "steps"], sort=False)
    table = pd.DataFrame({
        "jaccard_reference_mean": g["jaccard_reference"].mean(),
        "jaccard_reference_min": g["jaccard_reference"].min(),
        "jaccard_paper_mean": g["jaccard_paper"].mean(),
        "rel_error_median": g["max_rel_error"].median(),
        "rel_error_max": g["max_rel_error"].max(),
        "completeness_gap_mean": g["gap_pooled"].mean(),
        "n_prompts": g["prompt"].nunique(),
    })
    keys = sorted(table.index, key=lambda k: (order.get(k[0], len(order)), k[1]))
    return table.loc[keys]


def slow_layers(result: ConvergenceResult, *, threshold: float = 0.05, min_share: float = 0.5,
                rule: str | None = None, steps: int | None = None) -> list[int]:
    """Layers where the rule (default: the paper's, right m = 20) converges slowly: those whose largest
    |score - ref| / (prompt's largest |ref|) exceeds ``threshold`` on at least a fraction ``min_share`` of the
    prompts. Returns the sorted layer indices."""
    rule = result.paper[0] if rule is None else rule
    steps = result.paper[1] if steps is None else int(steps)
    df = result.errors[(result.errors["rule"] == rule) & (result.errors["steps"] == steps)]
    if df.empty:
        raise ValueError(f"no rows for rule {rule!r} with m = {steps}")
    share = (df["max_rel_error"] > threshold).groupby(df["layer"]).mean()
    return sorted(int(l) for l, s in share.items() if s >= min_share)


def share_max_in_slow_layers(result: ConvergenceResult, layers: Sequence[int] | None = None, **slow_kw) -> float:
    """The fraction of prompts whose largest reference score lies in one of ``layers`` (default
    ``slow_layers(result, **slow_kw)``); nan without prompts."""
    layers = set(slow_layers(result, **slow_kw) if layers is None else (int(l) for l in layers))
    df = result.prompts
    return float(df["max_layer"].isin(layers).mean()) if len(df) else float("nan")


def cheapest_converged_rule(table: pd.DataFrame, min_mean_jaccard: float = 0.95,
                            min_worst_jaccard: float = 0.8) -> tuple[str, int] | None:
    """The (rule, m) with the fewest nodes per layer whose coarse sets match the reference's on average
    (jaccard_reference_mean >= min_mean_jaccard) with no prompt far worse: the worst prompt's Jaccard
    (jaccard_reference_min) >= min_worst_jaccard. Ties (same m) go to the higher mean Jaccard. The reference's own
    row is ignored. None when no rule qualifies."""
    rows = [(int(m), -float(r["jaccard_reference_mean"]), rule) for (rule, m), r in table.iterrows()
            if rule != REFERENCE and float(r["jaccard_reference_mean"]) >= min_mean_jaccard
            and float(r["jaccard_reference_min"]) >= min_worst_jaccard]
    if not rows:
        return None
    m, _, rule = min(rows)
    return rule, m


def spiky_integrand(loaded, ids, target: int, layer: int, neuron: int, n: int = 2001, *,
                    definition: str = "ffn_out_input") -> tuple[np.ndarray, np.ndarray]:
    """One neuron's integrand q_bar_i * dP/dq_i(alpha q_bar) on n equally spaced alphas of [0, 1] (only that layer's
    rows are computed): (alphas [n], values [n]) float64 ndarrays. Its integral is the neuron's score."""
    alphas = torch.linspace(0.0, 1.0, int(n), dtype=torch.float64)
    res = integrand(loaded, ids, int(target), alphas, layers=[int(layer)], neuron=definition)
    values = res.grads[:, 0, int(neuron)].double() * float(res.q_bar[0, int(neuron)])
    return alphas.numpy(), values.numpy()


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
                     batch_size: int = 32) -> DefinitionResult:
    """IG with neuron = "ffn_out_input" (the papers') and "pre_activation" (the forks') on the same prompts.

    Per prompt: the Jaccard of the two coarse sets (t = coarse_threshold, each relative to its own largest score),
    and a causal check: each definition's top_k neurons by score (flat ids: the same physical FFN unit under both
    definitions), and a random control with as many neurons per layer as the paper definition's top_k (seeded;
    drawn outside that top_k), suppressed (factor 0 at the last position, kn.interventions.answer_probabilities);
    change = (p_after - p_before) / p_before. Returns DefinitionResult; bootstrap the per-prompt columns over
    prompts with kn.stats."""
    from .experiments import matched_random
    from .interventions import answer_probabilities, change_rate

    prompts = [torch.as_tensor(x, dtype=torch.long).reshape(-1) for x in input_ids]
    targets = [int(x) for x in torch.as_tensor(target_ids).reshape(-1).tolist()]
    if len(targets) != len(prompts):
        raise ValueError(f"{len(targets)} target ids for {len(prompts)} prompts")
    H = loaded.adapter.n_neurons
    from .store import attribute

    ig = {d: attribute(loaded, prompts, targets, steps=steps, rule=rule, dtype="float32", neuron=d,
                       batch_prompts=batch_size) for d in NEURON_DEFINITIONS}
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


# --------------------------------------------------------------------------------------------------------------
# the converged setting as a rule
# --------------------------------------------------------------------------------------------------------------

ADAPTIVE_TOLERANCE = 1e-3  # of the prompt's largest score: the reference's bound in chapter 2b's default


def adaptive_integrated_gradients(loaded, input_ids, target_ids, *, tolerance: float = ADAPTIVE_TOLERANCE,
                                  neuron: str = "ffn_out_input", mesh: Sequence | None = None,
                                  max_evaluations: int = 2000):
    """Integrated gradients by the adaptive reference (``adaptive_integral`` per layer, from ``reference_mesh``), the
    converged setting: ``ig_rule: adaptive``. Same inputs and result as kn.attribution.integrated_gradients
    (IGResult: scores [prompt, layer, neuron], p_full / p_zero [prompt, layer]; steps 0, rule "adaptive"). About 120
    integrand evaluations per prompt and layer on SmolLM2-135M (six times the m = 20 rule's cost), more where a layer's
    integrand has a spike."""
    from .attribution import IGResult

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
