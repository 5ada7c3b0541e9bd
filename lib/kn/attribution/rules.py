"""kn.attribution.rules: the run's attribution rule (``ig_rule``) as one call: a fixed quadrature rule with m points
(kn.attribution.kernel), or "adaptive", the converged reference of chapter 2b (kn.attribution.adaptive).

API
    attribute(loaded, input_ids, target_ids, *, steps, rule, dtype, neuron, batch_prompts) -> IGResult  (the run's rule)
"""

from __future__ import annotations

from kn.attribution.adaptive import adaptive_integrated_gradients
from kn.attribution.kernel import integrated_gradients
from kn.core.models import torch_dtype


def attribute(loaded, input_ids, target_ids, *, steps: int, rule: str, dtype: str, neuron: str,
              batch_prompts: int | None):
    """IGResult of the prompts by the run's rule: a quadrature rule with ``steps`` points (kn.attribution), or
    "adaptive", the converged reference of chapter 2b (kn.attribution.adaptive.adaptive_integrated_gradients; float32)."""
    if rule == "adaptive":

        return adaptive_integrated_gradients(loaded, input_ids, target_ids, neuron=neuron)

    return integrated_gradients(loaded, input_ids, target_ids, steps=steps, rule=rule, dtype=torch_dtype(dtype),
                                neuron=neuron, batch_prompts=batch_prompts)
