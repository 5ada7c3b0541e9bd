"""kn.experiments.convergence: the adaptive reference (on plain functions with spikes and on tiny models against a brute-force
20,001-point Simpson rule), every rule from shared evaluations against integrated_gradients, the study's frames and
summaries, and the neuron-definition study's causal arms."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from kn.attribution.adaptive import (
    DEFAULT_STEPS,
    REFERENCE,
    prompt_convergence,
    rule_specs,
)
from kn.attribution.kernel import integrand, integrated_gradients
from kn.attribution.quadrature import (
    RULES,
    AdaptiveIntegral,
    adaptive_integral,
    quadrature,
    reference_mesh,
)
from kn.base.neurons import coarse_set, jaccard
from kn.experiments.convergence import (
    ConvergenceResult,
    cheapest_converged_rule,
    convergence_study,
    convergence_table,
    share_max_in_slow_layers,
    slow_layers,
    spiky_integrand,
)
from kn.experiments.definitions import DefinitionResult, definition_study
from kn.methods.interventions import answer_probabilities
from tiny_models import PROMPTS, _argmax_targets, _one_thread, _tiny  # noqa: F401 (_one_thread: fixture)

# --- plain functions -------------------------------------------------------------------------------------------------


def _gauss(a, centre, width, height=1.0):
    return height * np.exp(-(((np.asarray(a) - centre) / width) ** 2))


def _gauss_integral(centre, width, height=1.0):
    """Integral over [0, 1] of height * exp(-((a - centre) / width)^2)."""
    return height * width * math.sqrt(math.pi) / 2 * (math.erf((1 - centre) / width) + math.erf(centre / width))


def _spiky(a):
    """[n, 3]: a spike between 0.02 and 0.08 (narrower than the 0.01 grid would resolve) whose integral is the
    largest (0.886, as neuron 767 of SmolLM2's layer 0 holds its prompt's largest score), a smooth sine, and a
    spike of width 0.0005 at 0.003 (between the grid's 0 and 0.01)."""
    return np.stack([_gauss(a, 0.05, 0.01, 50.0), np.sin(3 * np.asarray(a)), _gauss(a, 0.003, 0.0005, 100.0)], axis=1)


SPIKY_EXACT = np.array([_gauss_integral(0.05, 0.01, 50.0), (1 - math.cos(3)) / 3,
                        _gauss_integral(0.003, 0.0005, 100.0)])


def test_reference_mesh():
    mesh = reference_mesh()
    assert mesh[0] == 0 and mesh[-1] == 1 and all(b > a for a, b in zip(mesh, mesh[1:]))
    assert [float(x) for x in mesh[:7]] == [0.0, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08]
    assert len(mesh) == 30  # 0, 4 geometric points, 25 multiples of 0.04
    assert [float(x) for x in reference_mesh(2, 0)] == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError):
        reference_mesh(0)


@pytest.mark.parametrize("tolerance", [1e-3, 1e-6])
def test_adaptive_finds_spikes_that_gauss_legendre_misses(tolerance):
    """The adaptive rule meets its tolerance (relative to the largest integral) on every component and its error
    estimates bound the true errors; a 20-point Gauss-Legendre rule is off by more than 100 times the tolerance on
    the spikes."""
    calls = []

    def evaluate(a):
        calls.append(len(a))
        return _spiky(a)

    got = adaptive_integral(evaluate, tolerance=tolerance)
    assert isinstance(got, AdaptiveIntegral) and got.integral.shape == (3,) and got.error.shape == (3,)
    scale = float(np.abs(SPIKY_EXACT).max())
    assert abs(got.scale - scale) <= tolerance * scale  # the largest estimate
    err = np.abs(got.integral.numpy() - SPIKY_EXACT)
    assert bool(got.converged)
    assert np.all(err <= tolerance * scale)
    assert np.all(err <= got.error.numpy() + 1e-12)
    assert int(got.evaluations) == sum(calls) == int(got.new_evaluations) <= 2000
    nodes, weights = quadrature("gauss_legendre", 20)
    gl = (weights.numpy()[:, None] * _spiky(nodes.numpy())).sum(0)
    assert abs(gl[0] - SPIKY_EXACT[0]) > 100 * 1e-3 * scale and abs(gl[2] - SPIKY_EXACT[2]) > 100 * 1e-3 * scale
    assert abs(gl[1] - SPIKY_EXACT[1]) < 1e-12  # the sine is smooth


def test_adaptive_groups_refine_separately_and_reuse_known():
    """Per group: a smooth group converges on the known mesh evaluations, with no call; only the spiky group is
    refined, and evaluate receives only its index. A fixed scale sets the bound."""
    mesh = reference_mesh()
    points = sorted({float(a + (b - a) * j / 4) for a, b in zip(mesh, mesh[1:]) for j in range(5)})
    assert len(points) == 117

    def both(a):  # [n, 2 groups, 2]
        a = np.asarray(a)
        smooth = np.stack([np.cos(a), a**2], axis=1)
        spiky = np.stack([_gauss(a, 0.05, 0.01), _gauss(a, 0.3, 0.02)], axis=1)
        return np.stack([smooth, spiky], axis=1)

    seen = []

    def evaluate(a, groups):
        seen.append(list(groups))
        return both(a)[:, groups]

    got = adaptive_integral(evaluate, groups=2, tolerance=1e-4, scale=1.0, known=(np.array(points), both(points)))
    assert got.integral.shape == (2, 2) and got.converged.tolist() == [True, True]
    assert seen and all(g == [1] for g in seen)
    assert got.new_evaluations.tolist()[0] == 0 and got.evaluations.tolist()[0] == 117
    assert got.new_evaluations.tolist()[1] > 0 and got.evaluations.tolist()[1] == 117 + got.new_evaluations.tolist()[1]
    exact = np.array([[math.sin(1.0), 1 / 3], [_gauss_integral(0.05, 0.01), _gauss_integral(0.3, 0.02)]])
    assert np.all(np.abs(got.integral.numpy() - exact) <= 1e-4)
    assert got.scale == 1.0


def test_adaptive_cap_and_errors():
    got = adaptive_integral(_spiky, tolerance=1e-9, max_evaluations=150)
    assert not bool(got.converged) and int(got.evaluations) <= 150
    with pytest.raises(ValueError, match="mesh"):
        adaptive_integral(_spiky, mesh=[0.0, 0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match="evaluate returned"):
        adaptive_integral(lambda a: np.zeros((len(a) + 1, 3)))
    with pytest.raises(ValueError, match="tolerance"):
        adaptive_integral(_spiky, tolerance=0.0)


def test_rule_specs_and_jaccard():
    specs = rule_specs(("right", "gauss_legendre"), (1, 8), ("right", 20))
    assert specs == [("right", 1), ("right", 8), ("gauss_legendre", 1), ("gauss_legendre", 8), ("right", 20)]
    assert rule_specs(RULES, DEFAULT_STEPS)[-1] == ("gauss_legendre", 100)  # the paper's rule is among them
    with pytest.raises(ValueError):
        rule_specs(("middle",), (1,))
    assert jaccard({1, 2}, {2, 3}) == pytest.approx(1 / 3) and math.isnan(jaccard(set(), set()))


# --- tiny models -----------------------------------------------------------------------------------------------------


def _simpson_brute(loaded, ids, target, n=20_001):
    """Each neuron's integral by the composite Simpson rule on n equally spaced alphas: [L, H] float64."""
    a = torch.linspace(0, 1, n, dtype=torch.float64)
    w = torch.ones(n, dtype=torch.float64)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    w /= 3 * (n - 1)
    res = integrand(loaded, ids, target, a)
    return res.q_bar.double() * (w[:, None, None] * res.grads.double()).sum(0)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_reference_meets_tolerance_against_brute_force(family):
    """The reference (default mesh, and a 3-point mesh that must refine) is within tolerance * (largest |score|) of
    a 20,001-point composite Simpson rule on every neuron, and its error estimate bounds that distance."""
    loaded = _tiny(family, seed=7)
    ids = PROMPTS[0]
    target = _argmax_targets(loaded, [ids])[0]
    brute = _simpson_brute(loaded, ids, target)
    scale = float(brute.abs().max())
    for mesh, tolerance in ((None, 1e-3), (reference_mesh(2, 0), 1e-5)):
        pc = prompt_convergence(loaded, ids, target, tolerance=tolerance, mesh=mesh)
        ref = pc.reference
        assert ref.integral.shape == (3, 32) and ref.converged.tolist() == [True] * 3
        distance = (ref.integral - brute).abs()
        assert float(distance.max()) <= tolerance * scale
        assert torch.all(distance <= ref.error + 1e-6 * scale)  # + float32 noise of the brute force itself
        if mesh is not None:
            assert pc.refine_rows > 0 and max(len(p) for p in ref.panels) > 2  # refined where it mattered


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_rules_from_shared_evaluations_equal_integrated_gradients(family):
    """Every rule and m from one integrand call equals integrated_gradients(rule, m) to 1e-5 of the largest score;
    the union of the nodes is 289 alphas (right and left on the grid j/200, 0.125 ... 0.875, 184 Gauss-Legendre
    nodes; the middle node of m = 1 is 0.5) plus the mesh's 16 points near 0; P(0) and P(q_bar) are the kernel's."""
    loaded = _tiny(family, seed=2)
    ids = PROMPTS[2]
    target = _argmax_targets(loaded, [ids])[0]
    pc = prompt_convergence(loaded, ids, target)
    assert pc.rule_alphas == 289 and pc.mesh_alphas == 16 and pc.shared_alphas.numel() == 305
    assert set(pc.scores) == set(rule_specs(RULES, DEFAULT_STEPS))
    for (rule, m), scores in pc.scores.items():
        ig = integrated_gradients(loaded, [ids], [target], steps=m, rule=rule)
        rel = float((scores - ig.scores[0]).abs().max() / ig.scores[0].abs().max())
        assert rel <= 1e-5, (rule, m, rel)
    torch.testing.assert_close(pc.p_zero, ig.p_zero[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(pc.p_full, ig.p_full[0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_reference_completeness_far_tighter_than_right_20(family):
    loaded = _tiny(family, seed=7)
    targets = _argmax_targets(loaded, PROMPTS)
    largest = 0.0
    for ids, target in zip(PROMPTS, targets):
        pc = prompt_convergence(loaded, ids, target)
        delta = (pc.p_full - pc.p_zero).double()
        gap_ref = (pc.reference.integral.sum(-1) - delta).abs()
        gap_right = (pc.scores[("right", 20)].double().sum(-1) - delta).abs()
        largest = max(largest, float(delta.abs().max()))
        assert float(gap_ref.max()) <= float(gap_right.max()) / 100
        assert torch.all(gap_ref <= 1e-4 * delta.abs() + 1e-6)
    assert largest > 0.1  # the FFN layers matter in this model


class _Bar:
    def __init__(self, log, total, desc, unit):
        self.log, self.n = log, 0
        log.append((total, desc, unit))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.log.append(("closed", self.n))

    def update(self, n=1):
        self.n += n


@pytest.fixture(scope="module")
def tiny_study():
    """One study of a tiny GPT-2 on the three prompts (one thread, as the function-scoped _one_thread fixture)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loaded = _tiny("gpt2", seed=7)
        targets = _argmax_targets(loaded, PROMPTS)
        log = []
        result = convergence_study(loaded, PROMPTS, targets, progress=lambda *a: _Bar(log, *a))
    finally:
        torch.set_num_threads(threads)
    return loaded, targets, result, log


def test_study_frames(tiny_study):
    loaded, targets, result, log = tiny_study
    assert isinstance(result, ConvergenceResult)
    assert log == [(3, "convergence", "prompt"), ("closed", 3)]
    n_specs, L = len(RULES) * len(DEFAULT_STEPS), 3
    assert len(result.errors) == 3 * n_specs * L and len(result.rules) == 3 * (n_specs + 1)
    assert len(result.layers) == 3 * L and len(result.prompts) == 3
    assert result.paper == ("right", 20) and result.settings["layers"] == [0, 1, 2]
    assert result.prompts["target"].tolist() == targets
    assert result.prompts["converged"].all() and result.layers["converged"].all()
    assert (result.prompts["shared_rows"] == 305 * L).all()
    # the largest reference score's layer, and the coarse sets from the stored scores
    for p, ref in enumerate(result.reference_scores):
        assert ref.shape == (3, 32)
        row = result.prompts.iloc[p]
        assert float(ref[row["max_layer"], row["max_neuron"]]) == pytest.approx(float(ref.max()))
        assert row["n_coarse"] == len(coarse_set(ref, 0.2))
        paper = result.rules[(result.rules.prompt == p) & (result.rules.rule == "right") & (result.rules.steps == 20)]
        assert float(paper["jaccard_paper"].iloc[0]) == 1.0
        assert float(paper["jaccard_reference"].iloc[0]) == pytest.approx(
            jaccard(coarse_set(result.paper_scores[p], 0.2), coarse_set(ref, 0.2)))
    # per-layer errors agree with the per-rule maxima
    worst = result.errors.groupby(["prompt", "rule", "steps"])["max_rel_error"].max()
    rules = result.rules[result.rules.rule != REFERENCE].set_index(["prompt", "rule", "steps"])["max_rel_error"]
    pd.testing.assert_series_equal(worst.sort_index(), rules.sort_index(), check_names=False)


def test_table_and_summaries(tiny_study):
    _, _, result, _ = tiny_study
    table = convergence_table(result)
    assert list(table.index[-1]) == [REFERENCE, 0] and len(table) == len(RULES) * len(DEFAULT_STEPS) + 1
    assert table.loc[(REFERENCE, 0), "jaccard_reference_mean"] == 1.0
    assert table.loc[(REFERENCE, 0), "jaccard_reference_min"] == 1.0
    assert table.loc[("right", 20), "jaccard_paper_mean"] == 1.0
    for rule in RULES:  # a smooth tiny model: m = 100 finds the reference's coarse sets
        assert table.loc[(rule, 100), "jaccard_reference_mean"] >= 0.9
        assert table.loc[(rule, 100), "rel_error_max"] < 0.02
    assert table.loc[("gauss_legendre", 8), "rel_error_max"] < 1e-4
    assert table.loc[(REFERENCE, 0), "completeness_gap_mean"] < table.loc[("right", 20), "completeness_gap_mean"] / 100
    assert table.loc[("right", 1), "rel_error_median"] > table.loc[("right", 100), "rel_error_median"]
    assert (table["n_prompts"] == 3).all()

    slow = slow_layers(result, threshold=0.0, min_share=1.0)  # every layer has some error at right m = 20
    assert slow == [0, 1, 2]
    assert slow_layers(result, threshold=10.0) == []
    assert share_max_in_slow_layers(result, threshold=0.0, min_share=1.0) == 1.0
    assert share_max_in_slow_layers(result, layers=[]) == 0.0
    with pytest.raises(ValueError):
        slow_layers(result, rule="left", steps=3)

    cheapest = cheapest_converged_rule(table)
    assert cheapest is not None and cheapest[1] <= 8 and cheapest[0] in RULES
    assert cheapest_converged_rule(table, min_mean_jaccard=1.01) is None


def test_cheapest_converged_rule_bounds():
    index = pd.MultiIndex.from_tuples([("right", 8), ("gauss_legendre", 8), ("right", 20), ("gauss_legendre", 4),
                                       (REFERENCE, 0)], names=["rule", "steps"])
    table = pd.DataFrame({"jaccard_reference_mean": [0.97, 0.99, 0.99, 0.96, 1.0],
                          "jaccard_reference_min": [0.85, 0.9, 0.95, 0.5, 1.0]}, index=index)
    assert cheapest_converged_rule(table) == ("gauss_legendre", 8)  # GL 4: one prompt far worse
    assert cheapest_converged_rule(table, min_worst_jaccard=0.4) == ("gauss_legendre", 4)
    assert cheapest_converged_rule(table, min_mean_jaccard=0.995) is None


def test_spiky_integrand_integrates_to_the_score(tiny_study):
    loaded, targets, result, _ = tiny_study
    layer, neuron = int(result.prompts["max_layer"][0]), int(result.prompts["max_neuron"][0])
    alphas, values = spiky_integrand(loaded, PROMPTS[0], targets[0], layer, neuron, n=401)
    assert alphas.shape == values.shape == (401,) and alphas[0] == 0.0 and alphas[-1] == 1.0
    trapezoid = (values[1:] + values[:-1]).sum() / 2 / 400
    assert trapezoid == pytest.approx(float(result.reference_scores[0][layer, neuron]), rel=1e-4)


# --- neuron definitions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_definition_study(family):
    loaded = _tiny(family, seed=5)
    targets = _argmax_targets(loaded, PROMPTS)
    got = definition_study(loaded, PROMPTS, targets, steps=5, top_k=5, seed=3)
    assert isinstance(got, DefinitionResult)
    assert len(got.prompts) == 3 and len(got.arms) == 9
    assert set(got.arms["arm"]) == {"ffn_out_input", "pre_activation", "random"}
    for col in ("jaccard_coarse", "topk_overlap", "p_before", "change_ffn_out_input", "change_pre_activation",
                "change_random", "n_coarse_ffn_out_input", "n_coarse_pre_activation"):
        assert col in got.prompts.columns
    assert got.prompts["jaccard_coarse"].between(0, 1).all()
    H = loaded.adapter.n_neurons
    for d in ("ffn_out_input", "pre_activation"):
        ig = integrated_gradients(loaded, PROMPTS, targets, steps=5, neuron=d)
        for p in range(3):
            assert got.top_sets[d][p] == frozenset(ig.scores[p].reshape(-1).topk(5).indices.tolist())
    for p in range(3):
        top, rand = got.top_sets["ffn_out_input"][p], got.top_sets["random"][p]
        assert len(rand) == 5 and not (rand & top)
        assert sorted(f // H for f in rand) == sorted(f // H for f in top)  # matched per layer
    # the paper definition's arm is exactly answer_probabilities with factor 0 on its top-k
    before, after = answer_probabilities(loaded, PROMPTS, targets, got.top_sets["ffn_out_input"], 0.0)
    np.testing.assert_array_equal(got.prompts["p_before"].to_numpy(), before)
    np.testing.assert_array_equal(got.prompts["change_ffn_out_input"].to_numpy(), (after - before) / before)
    arm = got.arms[got.arms.arm == "ffn_out_input"].sort_values("prompt")
    np.testing.assert_array_equal(arm["p_after"].to_numpy(), after)
    # seeded: the same random control again
    again = definition_study(loaded, PROMPTS, targets, steps=5, top_k=5, seed=3)
    assert again.top_sets["random"] == got.top_sets["random"]


def test_the_definition_studys_gradients_run_at_the_kernels_batch_not_the_scoring_batch(monkeypatch):
    """The scoring batch (eval_batch_size, 32) once set the IG batch too: 32 prompts x layers x (steps + 1) rows, each
    with a float32 [vocab] logit row (SmolLM2: a 4 GB buffer, chapter 2b's 14.3 GiB peak). Whatever the scoring batch,
    no IG call may hold more rows than the kernel's own batch (2 prompts on a CPU)."""
    from kn.attribution import kernel

    loaded = _tiny("llama", seed=5)
    targets = _argmax_targets(loaded, PROMPTS)
    rows = []
    real = kernel._head_buffer
    monkeypatch.setattr(kernel, "_head_buffer", lambda adapter, n, dtype: rows.append(n) or real(adapter, n, dtype))
    got = definition_study(loaded, PROMPTS, targets, steps=5, top_k=5, seed=3, batch_size=32)
    per_prompt = loaded.adapter.n_layers * (5 + 1)  # the right rule: m nodes and alpha 0, per layer
    assert rows and max(rows) == 2 * per_prompt  # 3 prompts: batches of 2 and 1, not one of 3
    again = definition_study(loaded, PROMPTS, targets, steps=5, top_k=5, seed=3, batch_size=1)
    assert again.top_sets == got.top_sets  # the scoring batch changes nothing of what the study finds


def test_the_adaptive_rule_is_the_reference_as_an_attribution_rule(tmp_path):
    """ig_rule: adaptive stores the converged reference's scores: complete to the tolerance, unlike the right sum."""
    import torch
    from kn.attribution.adaptive import (
        adaptive_integrated_gradients,
        prompt_convergence,
    )
    from kn.attribution.kernel import integrated_gradients
    from kn.attribution.store import AttributionStore

    loaded = _tiny("llama")
    ids = PROMPTS[:2]
    targets = _argmax_targets(loaded, ids)
    result = adaptive_integrated_gradients(loaded, ids, targets)
    single = prompt_convergence(loaded, ids[1], targets[1], rules=(), steps=(), paper=None)
    assert torch.allclose(result.scores[1], single.reference.integral.float())
    assert result.rule == "adaptive" and result.scores.shape == (2, 3, 32)
    gap = (result.scores.sum(-1) - (result.p_full - result.p_zero)).abs().max()
    right = integrated_gradients(loaded, ids, targets, steps=20)
    right_gap = (right.scores.sum(-1) - (right.p_full - right.p_zero)).abs().max()
    assert gap < 1e-3 * result.scores.abs().max() and gap < right_gap / 10
    store = AttributionStore(tmp_path, identity="t", steps=0, rule="adaptive", dtype="float32", threshold=0.05,
                             n_layers=3, n_neurons=32)
    store.compute(loaded, ["a", "b"], ids, targets)
    stored = store.read().set_index("prompt")
    assert float(stored.loc["b", "max_score"]) == float(result.scores[1].max())
