"""kn.book.summaries and kn.book.report: typed records round-trip through the run folder; pages show parameters without paths."""

import dataclasses
import json

import pytest
from kn.base.params import StudyParams, project_root
from kn.base.rundir import RunFolder
from kn.base.stats import Interval
from kn.book.report import fmt, parameters_table
from kn.book.summaries import AmplificationSummary, Claim, DataSummary


def _data_summary(**changes):
    base = dict(model="m", model_identity="m@1", counts={"relations": 2, "source": "pararel"}, population="known",
                known_rule="top-5 on >= 5", candidate_facts=10, known_candidate_facts=4, dropped_relations=["P9"],
                sample_relations=2,
                sample_facts_train=3, sample_facts_test=1, sample_prompts=40, shared_prompt_rows=2,
                shared_prompts_split_mismatch=0, top1_accuracy=Interval(0.25, 0.1, 0.4, 4, 0.2),
                multi_token_answer_share=0.1, claims=[Claim("split", "no pair on both sides", None, True)],
                seconds=1.5)
    return DataSummary(**(base | changes))


def test_records_round_trip_with_their_types(tmp_path):
    run = RunFolder(tmp_path)
    summary = _data_summary()
    summary.write(run)
    back = DataSummary.read(run)
    assert back == summary and isinstance(back.top1_accuracy, Interval) and isinstance(back.claims[0], Claim)
    nested = AmplificationSummary(facts=2, set_sizes={"LAND": 3.0},
                                  amplify={"LAND": {"Same": Interval(1.0, 0.5, 1.5, 2, 0.9)}},
                                  suppress={"LAND": {"Same": Interval(-0.5, -0.9, -0.1, 2, -0.4)}},
                                  claims=[Claim("c", "s", Interval(0.1, -0.1, 0.3, 2, 0.1), None)], seconds=3.0)
    nested.write(run)
    assert AmplificationSummary.read(run) == nested


def test_a_record_with_other_fields_is_refused(tmp_path):
    run = RunFolder(tmp_path)
    _data_summary().write(run)
    raw = json.loads((tmp_path / "data_summary.json").read_text())
    raw["accuracy"] = raw.pop("top1_accuracy")
    (tmp_path / "data_summary.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="accuracy.*re-run chapter 1"):
        DataSummary.read(run)


def test_parameters_table_marks_what_changed_and_shows_no_machine_path(tmp_path):
    params = StudyParams(run_dir=str(project_root() / "runs" / "x"), data_dir=str(tmp_path / "data"), seed=3)
    table = parameters_table(params, {"seed": "override", "run_dir": "params file"}, "02_attribution")
    assert table.loc["seed", "value"] == "3" and table.loc["seed", "set by"] == "override"
    assert table.loc["run_dir", "value"] == "runs/x" and table.loc["data_dir", "value"] == "data"
    assert table.loc["ig_steps", "set by"] == ""
    assert not any(str(tmp_path) in v or str(project_root()) in v for v in table["value"])


def test_cells_format_intervals_and_missing_values():
    assert fmt(Interval(0.5, 0.25, 0.75, 3), "{:.0%}") == "50% [25%, 75%]"
    assert fmt(float("nan")) == "–" and fmt(None) == "–" and fmt(3, "{:,.0f}") == "3" and fmt("x") == "x"
    assert dataclasses.is_dataclass(Claim)


def test_across_models_reads_a_claim_without_direction_by_its_interval():
    """A claim with holds None (no direction claimed) says "differs" where its interval excludes zero, and never
    counts as "holds for none"; claims with a direction keep holds / does not hold / not distinguishable run by run,
    and only declared primary contrasts are counted across runs."""
    from types import SimpleNamespace

    from kn.base.stats import Interval
    from kn.book.summaries import Claim
    from kn.book.verdicts import across_models

    def run(label, neuron_interval, beats):
        choices = SimpleNamespace(claims=[Claim("which neuron", "", neuron_interval, None)])
        land = SimpleNamespace(claims=[Claim("LAND beats the prior", "", Interval(0.2, 0.1, 0.3, 9), beats)])
        return SimpleNamespace(label=label, choices=choices, overlap=None, land=land, amplification=None,
                               editing=None)

    frame = across_models([run("a", Interval(-0.02, -0.05, -0.01, 25), True),
                           run("b", Interval(0.01, -0.01, 0.03, 50), None)])
    row = frame.loc[("choices", "which neuron")]
    assert row["a"].startswith("differs") and row["b"].startswith("not distinguishable")
    assert row["across runs"] == "differs in 1 of 2 runs"
    # not a declared primary contrast: shown run by run, not counted (issue 22: only corrected primary contrasts count)
    assert frame.loc[("land", "LAND beats the prior"), "across runs"] == "a single check of the paper: not counted"
    neither = across_models([run("a", Interval(0.0, -0.1, 0.1, 9), None), run("b", Interval(0.0, -0.1, 0.1, 9), None)])
    assert neither.loc[("choices", "which neuron"), "across runs"] == "a single check of the paper: not counted"


def test_every_page_states_the_runs_scale_against_the_papers():
    """kn.book.results.scale_sentence: the default slice (79 facts, 790 prompts) against the papers' 277,170."""
    from kn.book.results import scale_sentence

    data = _data_summary(sample_relations=10, sample_facts_train=60, sample_facts_test=19, sample_prompts=790)
    sentence = scale_sentence(data)
    assert sentence == ("Scale: this run has 79 facts of 10 relations, 790 prompts, 600 train-split prompts and 19 test "
                        "facts; the papers have 27,717 facts of 34, 277,170 prompts, 249,450 train-split prompts and "
                        "2,772 test facts (0.3% of their prompts).")
