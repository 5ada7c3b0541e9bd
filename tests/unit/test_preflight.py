"""kn.book.preflight's counts are the chapters' own (validation split, nested learning-curve samples), every params
file passes it, own files with repeated rows or an empty provenance are refused with file and line, and chapter 4
skips a learning-curve share that the real (known) count leaves without a fact, saying so."""

from __future__ import annotations

from pathlib import Path

import pytest
from kn.base.errors import DataFileError, ParameterError
from kn.base.paramfiles import load_params
from kn.base.params import StudyParams
from kn.book import preflight
from kn.data import pararel
from kn.experiments import land_robustness
from kn.experiments.land_operating import LandConfig
from kn.methods import counterexamples, detectors
from test_land_study import L, H, _problem

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "params").glob("*.yaml")), ids=lambda p: p.name)
def test_every_params_file_passes(path):
    preflight.check_run(load_params(path), ())


@pytest.mark.parametrize("n_train", [1, 2, 3, 4, 5, 9])
@pytest.mark.parametrize("share", [0.2, 0.5, 0.8])
def test_the_counts_are_the_chapters_own(n_train, share):
    prompts, _ = _problem(n_train=n_train, n_test=1)
    labelled = counterexamples.validation_split(prompts, share, seed=3)
    held = labelled[labelled["split"] == "validation"].groupby("relation")["fact_id"].nunique()
    assert held.reindex(["r1", "r2"], fill_value=0).tolist() == [counterexamples.validation_count(n_train, share)] * 2
    fit = 2 * (n_train - counterexamples.validation_count(n_train, share))
    for fraction in (0.125, 0.25, 0.5, 1.0):
        usable = land_robustness.usable_fractions([fraction], fit) == [fraction]
        if usable:
            assert detectors.nested_fact_samples(range(fit), [fraction], seed=0)[0]
        else:
            with pytest.raises(ValueError, match="leaves no fact"):
                detectors.nested_fact_samples(range(fit), [fraction], seed=0)


def test_the_smallest_share_named_works():
    for fit in range(1, 40):
        params = StudyParams(relations=["a", "b"], train_facts_per_relation=fit, land_validation_fraction=0.01,
                             learning_curve_fractions=[1e-4])  # 2 relations, fit - 2 fit facts each where fit >= 4
        try:
            preflight.check_sizes(params, preflight.run_sizes(params))
        except ParameterError as err:
            if "smallest share that works is " not in str(err):
                continue
            smallest = float(str(err).rsplit(" ", 1)[-1])
            n_fit = int(str(err).split(" facts LAND is fitted on")[0].rsplit(" ", 1)[-1])
            assert land_robustness.usable_fractions([smallest], n_fit) == [smallest]
            assert land_robustness.usable_fractions([smallest - 1e-3], n_fit) == []


def _files(tmp_path, facts: str, templates: str):
    (tmp_path / "facts.csv").write_text("relation,subject,object\n" + facts)
    (tmp_path / "templates.csv").write_text("relation,template,provenance\n" + templates)
    return tmp_path / "facts.csv", tmp_path / "templates.csv"


def test_repeated_rows_and_an_empty_provenance_are_named(tmp_path):
    facts, templates = _files(tmp_path, "capital,France,Paris\ncapital,Spain,Madrid\ncapital, France , Paris\n",
                              "capital,The capital of [X] is [Y].,authored\ncapital,the capital of [X] is  [Y],pararel\n")
    with pytest.raises(DataFileError, match=r"facts.csv: line 4: the fact \(capital, France, Paris\) repeats line 2$"):
        pararel.read_user_facts(facts)
    with pytest.raises(DataFileError, match=r"templates.csv: line 3: template .* repeats line 2 of capital$"):
        pararel.read_user_templates(templates)
    templates.write_text("relation,template,provenance\ncapital,The capital of [X] is [Y].,translated\n")
    assert pararel.read_user_templates(templates)["provenance"].tolist() == ["translated"]  # any label is kept
    templates.write_text("relation,template,provenance\ncapital,The capital of [X] is [Y].,\n")
    with pytest.raises(DataFileError, match=r"line 2: field 'provenance' must be a non-empty string, got '' "
                                            r"\(provenance: pararel for a PARAREL template, authored for one you wrote\)"):
        pararel.read_user_templates(templates)


def test_chapter_4_skips_a_share_the_known_facts_leave_empty_and_says_so():
    """Two relations whose known facts are 4 train facts each (2 fit facts each after validation): 0.125 of 4 is no
    fact; the curve skips it and its caption says so, the other shares are as before."""
    prompts, coarse = _problem(n_train=4, n_test=2)
    params = StudyParams(land_rank=4, land_epochs=1, land_lr=0.02, land_threshold_grid=[1.0], land_counterexamples=1,
                         learning_curve_fractions=[0.125, 0.5, 1.0], land_seeds=[0], land_curve_seeds=1)
    curve = land_robustness.learning_curve_seeds(prompts, coarse, LandConfig.from_params(params), L, H)
    assert sorted(set(curve["fraction"])) == [0.5, 1.0] and sorted(set(curve["n_train_facts"])) == [2, 4]
    assert curve.attrs["skipped"] == {0.125: 4}
    assert land_robustness.skipped_sizes_note(curve) == (
        "Sizes skipped, as they leave no fact: 0.125 of 4 fit facts (the known facts are fewer than the parameters "
        "declared)")
    fine = land_robustness.learning_curve_seeds(prompts, coarse, LandConfig.from_params(
        StudyParams(**{**params.as_dict(), "learning_curve_fractions": [0.5, 1.0]})), L, H)
    assert fine.attrs["skipped"] == {} and land_robustness.skipped_sizes_note(fine) is None
    with pytest.raises(ParameterError, match=r"learning_curve_fractions=\[0.125\]: no share leaves a fact of the 4"):
        land_robustness.learning_curve_seeds(prompts, coarse, LandConfig.from_params(
            StudyParams(**{**params.as_dict(), "learning_curve_fractions": [0.125]})), L, H)
