"""kn.book.findings.choices: chapter 2b's findings (the quadrature rules against the converged reference, the neuron
definitions) and its summary.

API
    choices_summary(...) -> ChoicesSummary
"""

from __future__ import annotations

import pandas as pd

from kn.base.stats import bootstrap_mean, compare, paired_difference
from kn.book.summaries import ChoicesSummary, Claim
from kn.experiments.convergence import (
    cheapest_converged_rule,
    share_max_in_slow_layers,
    slow_layers,
)

# --------------------------------------------------------------------------- chapter 2b


def choice_prompts(prompts: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """A seeded sample of ``n`` distinct (prompt, target) rows of the run (all of them if fewer)."""
    distinct = prompts.drop_duplicates(["prompt", "target_id"])
    return distinct.sample(n=min(n, len(distinct)), random_state=seed).reset_index(drop=True)


def reference_cost(result) -> pd.DataFrame:
    """Integrand evaluations per prompt: shared by all layers (the rules' nodes and the mesh) and the reference's own
    refinement, with seconds."""
    p = result.prompts
    return pd.DataFrame({"mean per prompt": {
        "alphas evaluated for every layer": p["shared_alphas"].mean(),
        "... of them the rules' nodes": p["rule_alphas"].mean(),
        "(alpha, layer) rows of the reference's refinement": p["refine_rows"].mean(),
        "layers not converged": float((~result.layers["converged"]).groupby(result.layers["prompt"]).sum().mean()),
        "seconds": p["seconds"].mean()}})


def layer_errors(result, specs) -> pd.DataFrame:
    """[layer x "rule, m"]: the median over prompts of the layer's largest error relative to the prompt's largest
    score, for the (rule, m) pairs ``specs``."""
    e = result.errors
    out = {}
    for rule, m in specs:
        part = e[(e["rule"] == rule) & (e["steps"] == m)]
        if len(part):
            out[f"{rule}, m = {m}"] = part.groupby("layer")["max_rel_error"].median()
    return pd.DataFrame(out)


def spiky_case(result, slow_layers) -> dict:
    """The (prompt, layer, neuron) where the paper's rule is furthest from the reference, preferring a slow layer."""
    e = result.errors
    rule, m = result.paper
    part = e[(e["rule"] == rule) & (e["steps"] == m)]
    if slow_layers:
        part = part[part["layer"].isin(slow_layers)]
    worst = part.loc[part["max_rel_error"].idxmax()]
    return {"prompt": int(worst["prompt"]), "layer": int(worst["layer"]), "neuron": int(worst["worst_neuron"])}


def definition_table(definitions, *, n_boot: int, seed: int) -> pd.DataFrame:
    """The two neuron definitions: coarse-set Jaccard, top-k overlap, and the change of P(answer) when each one's top-k
    (and a matched random set) is silenced, with intervals over prompts."""
    p = definitions.prompts
    k = definitions.settings["top_k"]
    rows = {"coarse sets: Jaccard of the two definitions": bootstrap_mean(p["jaccard_coarse"], n_boot=n_boot, seed=seed),
            f"top-{k}: shared share": bootstrap_mean(p["topk_overlap"], n_boot=n_boot, seed=seed)}
    for arm, label in (("ffn_out_input", "the papers' neurons"), ("pre_activation", "pre-activations"),
                       ("random", "random, matched per layer")):
        rows[f"P(answer) change, top-{k} of {label} silenced"] = bootstrap_mean(p[f"change_{arm}"], n_boot=n_boot,
                                                                                seed=seed)
    return pd.DataFrame({"mean [95% interval]": rows})


def choices_summary(params, result, table: pd.DataFrame, definitions, seconds: float) -> ChoicesSummary:

    n_boot, seed = params.bootstrap_samples, params.seed
    rule, m = result.paper
    paper_row = table.loc[(rule, m)]
    converged = bool(paper_row["jaccard_reference_mean"] >= 0.95 and paper_row["jaccard_reference_min"] >= 0.8)
    slow = slow_layers(result)
    share = share_max_in_slow_layers(result, slow)
    cheapest = cheapest_converged_rule(table)
    fixed = table.drop(index=[i for i in table.index if i[0] == "reference"])
    best = fixed["jaccard_reference_mean"].idxmax()
    claims = [Claim("the paper's rule is converged",
                    f"The paper's rule (right sum, m = {m}) gives coarse sets that agree with the converged reference at "
                    f"a mean Jaccard of {paper_row['jaccard_reference_mean']:.2f} (worst prompt "
                    f"{paper_row['jaccard_reference_min']:.2f}); its largest error is a median "
                    f"{paper_row['rel_error_median']:.1%} of the prompt's largest score (worst "
                    f"{paper_row['rel_error_max']:.0%}). "
                    + ("It gives the converged sets here." if converged else
                       "It does not give the converged sets here, so the papers' coarse sets carry this quadrature "
                       f"error. Among the fixed rules, {best[0]} with m = {best[1]} comes closest (mean Jaccard "
                       f"{table.loc[best, 'jaccard_reference_mean']:.2f}, worst {table.loc[best, 'jaccard_reference_min']:.2f}); "
                       "the converged setting is `ig_rule: adaptive` (the reference as an attribution rule)."),
                    None, converged)]
    if ("right", 1) in table.index:
        one = table.loc[("right", 1)]
        claims.append(Claim("m = 1", f"With m = 1 (EasyEdit's Llama setting: gradient times activation) the coarse sets "
                                     f"share {one['jaccard_reference_mean']:.0%} of the reference's on average: a "
                                     "different set of neurons.", None, None))
    claims.append(Claim("a cheaper rule",
                        "No rule cheaper than the paper's reaches a mean Jaccard of 0.95 with no prompt below 0.8."
                        if cheapest is None or cheapest[1] >= m else
                        f"{cheapest[0]} with m = {cheapest[1]} reaches a mean Jaccard of 0.95 with no prompt below 0.8 "
                        "against the reference.", None, None))
    claims.append(Claim("slow layers",
                        (f"{'Layers' if len(slow) > 1 else 'Layer'} {', '.join(map(str, slow))} "
                         f"{'converge' if len(slow) > 1 else 'converges'} slowly (the paper's rule misses by more than 5% of "
                         f"the largest score on at least half the prompts); the prompt's largest score sits there on "
                         f"{share:.0%} of the prompts.") if slow else
                        "No layer converges slowly under the paper's rule on most prompts.", None, None))
    p = definitions.prompts
    jac = bootstrap_mean(p["jaccard_coarse"], n_boot=n_boot, seed=seed)
    drops = {arm: bootstrap_mean(p[f"change_{arm}"], n_boot=n_boot, seed=seed)
             for arm in ("ffn_out_input", "pre_activation", "random")}
    diff = paired_difference(p["change_ffn_out_input"], p["change_pre_activation"], n_boot=n_boot, seed=seed)
    claims.append(Claim("which neuron",
                        f"The two definitions' coarse sets share {jac.format('{:.0%}')} (Jaccard). Silencing the top "
                        f"{definitions.settings['top_k']} changes P(answer) by {drops['ffn_out_input'].format('{:.0%}')} "
                        f"(papers' neurons), {drops['pre_activation'].format('{:.0%}')} (pre-activations) and "
                        f"{drops['random'].format('{:.0%}')} (random); "
                        + compare("the change after silencing the papers' neurons",
                                  "the change after silencing the pre-activations", diff, fmt="{:.1%}"),
                        diff, None))
    layer_evals = result.layers["evaluations"].mean()
    return ChoicesSummary(
        prompts=len(result.prompts),
        reference=f"adaptive composite Boole/Simpson per layer, tolerance {result.settings['tolerance']:g} of the "
                  "prompt's largest score", reference_points=float(layer_evals),
        convergence=table.reset_index().to_dict("records"), slow_layers=[int(x) for x in slow],
        share_max_in_slow_layer=float(share), definitions_jaccard=jac, definition_drop=drops,
        definition_difference=diff, claims=claims, seconds=seconds)
