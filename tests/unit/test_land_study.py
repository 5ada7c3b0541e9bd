"""kn.experiments.land_operating: P chosen on validation facts (never test facts), the detectors of chapter 4 on a synthetic problem."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from kn.base.params import StudyParams
from kn.experiments import land_operating, land_robustness
from kn.experiments.land_operating import LandConfig
from kn.methods import counterexamples

torch.set_num_threads(1)
L, H = 2, 48


def _problem(n_train=8, n_test=3, relations=("r1", "r2"), seed=0):
    """Facts whose prompts share a fact-specific core of neurons (plus noise), and a relation-wide neuron."""
    rng = np.random.default_rng(seed)
    rows, coarse = [], {}
    for r_i, relation in enumerate(relations):
        for f in range(n_train + n_test):
            fact = f"{relation}:{f}"
            core = {int(i) for i in rng.choice(L * H, 3, replace=False)} | {r_i}
            for t in range(6):
                pid = f"{fact}#{t}"
                rows.append({"prompt_id": pid, "fact_id": fact, "relation": relation, "subject": f"s{r_i}{f}",
                             "object": f"o{f % 3}", "template_position": t,
                             "split": "train" if f < n_train else "test"})
                coarse[pid] = frozenset(core | {int(i) for i in rng.choice(L * H, 2, replace=False)})
    return pd.DataFrame(rows), coarse


def test_validation_split_takes_train_facts_only_per_relation():
    prompts, _ = _problem()
    labelled = counterexamples.validation_split(prompts, 0.25, seed=1)
    val = labelled[labelled["split"] == "validation"]
    assert val.groupby("relation")["fact_id"].nunique().tolist() == [2, 2]
    assert (prompts.loc[val.index, "split"] == "train").all()  # never a test fact
    assert labelled.equals(counterexamples.validation_split(prompts, 0.25, seed=1))


def test_choose_threshold_maximises_fact_specific_overlap_and_breaks_ties_low():
    sweep = pd.DataFrame({"fact_specific": [0.1, 0.3, 0.3, 0.6, np.nan], "within": [0.9, 0.5, 0.4, 0.6, np.nan],
                          "size": [30.0, 8.0, 4.0, 0.6, 0.0]}, index=pd.Index([0.5, 1.0, 2.0, 4.0, 5.0], name="P"))
    assert land_operating.choose_threshold(sweep)[0] == 4.0  # without a floor: sets of 0.6 neurons win
    assert land_operating.choose_threshold(sweep, 2.0)[0] == 1.0  # with Dai's lower bound of 2 neurons
    p, reason = land_operating.choose_threshold(sweep, 50.0)
    assert p == 0.5 and "no P of the grid" in reason
    with pytest.raises(ValueError, match="undefined on the validation facts"):
        land_operating.choose_threshold(sweep.assign(fact_specific=np.nan))


def test_land_study_never_reads_test_facts_to_choose_p():
    prompts, coarse = _problem()
    params = StudyParams(land_rank=8, land_epochs=20, land_lr=0.02, land_validation_fraction=0.25,
                         land_threshold_grid=[0.5, 1.0, 2.0, 3.0], land_counterexamples=1)
    study = land_operating.run_land_study(prompts, coarse, LandConfig.from_params(params), L, H)
    # the test facts' coarse sets changed to anything: the chosen P and the validation sweep stay the same
    scrambled = {p: (frozenset({L * H - 1}) if p in set(prompts.loc[prompts["split"] == "test", "prompt_id"]) else s)
                 for p, s in coarse.items()}
    again = land_operating.run_land_study(prompts, scrambled, LandConfig.from_params(params), L, H)
    assert again.hp.threshold == study.hp.threshold
    pd.testing.assert_frame_equal(again.validation_sweep, study.validation_sweep)
    assert study.ratio == 1.17 and "nothing chosen" in study.threshold_reason  # the paper's size, per prompt
    chosen = land_operating.run_land_study(prompts, coarse, LandConfig.from_params(
        dataclasses.replace(params, land_operating_point="fact_specific")), L, H)
    assert "validation facts" in chosen.threshold_reason
    again = land_operating.run_land_study(prompts, scrambled, LandConfig.from_params(
        dataclasses.replace(params, land_operating_point="fact_specific")), L, H)
    assert again.hp.threshold == chosen.hp.threshold
    assert set(study.sets) == set(land_operating.DETECTORS)
    assert study.overlap["constant"]["fact_specific"].eq(0).all()
    fixed = land_operating.run_land_study(prompts, coarse, LandConfig.from_params(dataclasses.replace(params, land_threshold=2.0)), L, H)
    assert fixed.hp.threshold == 2.0 and fixed.threshold_reason == "fixed by the parameter land_threshold"


def test_learning_curve_and_wordings_run_on_the_study():
    prompts, coarse = _problem()
    params = StudyParams(land_rank=8, land_epochs=10, land_lr=0.02, land_validation_fraction=0.25,
                         land_threshold_grid=[0.5, 1.0, 2.0], land_counterexamples=1,
                         learning_curve_fractions=[0.5, 1.0])
    study = land_operating.run_land_study(prompts, coarse, LandConfig.from_params(params), L, H)
    curve = land_robustness.learning_curve_study(study, prompts, coarse, LandConfig.from_params(params))
    assert curve["setting"].tolist() == ["paper's optimiser"] * 2 + ["this run's"] * 2
    # the curve trains on the fit facts (train less 2 validation facts per relation: 12 facts, 72 prompts), mean of
    # land_curve_seeds seeds
    assert curve["n_train_prompts"].tolist() == [36, 72, 36, 72] and (curve["n_seeds"] == 3).all()
    wordings = land_robustness.wording_study(study, prompts, coarse, LandConfig.from_params(params))
    assert set(wordings["condition"]) == {"new facts", "new wordings"} and set(wordings["method"]) == {"coarse", "land"}
    assert wordings[wordings["condition"] == "new wordings"]["fact_id"].str.startswith(("r1:", "r2:")).all()
