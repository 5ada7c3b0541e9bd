"""kn.experiments.convergence: how far each quadrature rule of integrated gradients is from the integral it approximates, and which
quantity ("neuron") the attribution is about.

IG approximates, per neuron i of layer l, Attr_i = q_bar_i * int_0^1 dP/dq_i(alpha q_bar) d alpha by a rule with m
nodes (kn.attribution.quadrature). This module computes, per prompt, a converged reference of that integral and every
rule's scores from ONE set of integrand evaluations (kn.attribution.kernel.integrand), and compares them: neuron by neuron
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
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from kn.attribution.adaptive import (
    DEFAULT_STEPS,
    REFERENCE,
    PromptConvergence,
    prompt_convergence,
    rule_specs,
)
from kn.attribution.kernel import integrand
from kn.attribution.quadrature import RULES
from kn.base.neurons import coarse_set, jaccard

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

    loaded: kn.core.models.LoadedModel; input_ids: list of [seq] LongTensors; target_ids: [prompt] ints.
    rules, steps: the rules and m compared (the paper's rule is added if missing); tolerance: the reference's bound,
    a fraction of the prompt's largest |reference score|; coarse_threshold: t of the coarse sets (score > t * max);
    paper: the (rule, m) whose coarse set the others are also compared with; progress: None, or a callable
    (total, desc, unit) -> context manager with .update(n) (kn.base.progress.progress), called as
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
