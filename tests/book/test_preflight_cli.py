"""Values that cannot work at the run's size, own facts that a later chapter cannot use, and a run folder that cannot
take the run are refused by the `kn` command in one line, exit status 2, before any chapter starts (stub chapters,
seconds each; kn.book.preflight)."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from test_cli import one_error_line, study  # noqa: F401  (the stub-chapter study fixture)

CAPITALS = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
            ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Chile", "Santiago"), ("Cuba", "Havana")]
TEMPLATES = ["The capital of [X] is [Y].", "[X]'s capital city is [Y].", "The capital city of [X] is called [Y].",
             "The seat of government of [X] is [Y]."]


def own_facts(folder, relations: dict) -> tuple:
    """facts.csv and templates.csv: {relation: [(subject, object), ...]}, four templates each."""
    facts, templates = folder / "facts.csv", folder / "templates.csv"
    facts.write_text("relation,subject,object\n" + "".join(f"{r},{s},{o}\n" for r, pairs in relations.items()
                                                           for s, o in pairs))
    templates.write_text("relation,template,provenance\n" + "".join(f"{r},{t},authored\n" for r in relations
                                                                    for t in TEMPLATES))
    return facts, templates


def use(study, **values) -> None:
    study.params.write_text(yaml.safe_dump(yaml.safe_load(study.params.read_text()) | values))


def test_the_default_learning_curve_on_two_relations_of_four_train_facts_stops_before_chapter_1(study, capsys):
    """The smoke run's size with the default fractions: chapter 4 fits LAND on 4 facts (2 relations x 4 train facts
    less 2 validation facts each), and 0.125 of 4 facts is none: refused before chapter 1, naming the smallest share."""
    use(study, relations=["P176", "P178"], train_facts_per_relation=4, test_facts_per_relation=2)
    assert study.kn("run", str(study.params), "-p", "learning_curve_fractions", "[0.125, 0.25, 0.5, 1.0]") == 2
    line = one_error_line(capsys, "learning_curve_fractions=[0.125, 0.25, 0.5, 1.0]", "0.125", "4 facts",
                          "smallest share that works is 0.25")
    assert "2 validation facts" in line
    assert not study.run_dir.exists()
    assert study.kn("run", str(study.params), "-p", "learning_curve_fractions", "[0.25, 0.5, 1.0]") == 0


@pytest.mark.parametrize("values, needles", [
    ({"relations": ["P176", "P178"], "train_facts_per_relation": 1},
     ["train_facts_per_relation=1", "no validation fact"]),
    ({"relations": ["P176", "P178"], "train_facts_per_relation": 2, "land_validation_fraction": 0.8},
     ["land_validation_fraction=0.8", "leaves no train fact"]),
    ({"relations": ["P176"]}, ["relations=['P176']", "unrelated_pairing: same_relation"]),
    ({"n_relations": 1}, ["n_relations=1", "unrelated_pairing: same_relation"]),
    ({"relations": ["P176", "P178"], "test_facts_per_relation": 1, "unrelated_pairing": "same_relation"},
     ["test_facts_per_relation=1", "unrelated_pairing=same_relation"]),
    ({"related_templates": 10}, ["related_templates=10", "templates_per_relation=10"]),
])
def test_sizes_that_cannot_work_stop_before_any_chapter(study, capsys, values, needles):
    use(study, **values)
    assert study.kn("run", str(study.params)) == 2
    one_error_line(capsys, *needles)
    assert not study.run_dir.exists()


def test_a_facts_file_of_one_relation_is_refused_with_the_file_and_the_way_out(study, capsys, tmp_path):
    facts, templates = own_facts(tmp_path, {"capital": CAPITALS})
    use(study, facts_file=str(facts), templates_file=str(templates), templates_per_relation=4, test_fraction=0.3,
        learning_curve_fractions=[0.5, 1.0])
    assert study.kn("run", str(study.params)) == 2
    one_error_line(capsys, str(facts), "one relation (capital)", "unrelated_pairing: same_relation")
    assert not study.run_dir.exists()
    assert study.kn("run", str(study.params), "-p", "unrelated_pairing", "same_relation") == 0


def test_a_relation_with_one_object_is_refused(study, capsys, tmp_path):
    one_object = [(s, "Europe") for s, _ in CAPITALS]
    facts, templates = own_facts(tmp_path, {"capital": CAPITALS, "continent": one_object})
    use(study, facts_file=str(facts), templates_file=str(templates), templates_per_relation=4, test_fraction=0.3,
        learning_curve_fractions=[0.5, 1.0])
    assert study.kn("run", str(study.params)) == 2
    one_error_line(capsys, str(facts), "relation continent", "one object ('Europe')", "chapter 6")
    assert not study.run_dir.exists()


@pytest.mark.parametrize("line, needle", [
    ("capital,France,Paris\n", "line 12: the fact (capital, France, Paris) repeats line 2"),
    ("capital,Atlantis,\n", "line 12: field 'object' must be a non-empty string"),
    ("capital, ,Poseidonis\n", "line 12: field 'subject' must be a non-empty string"),
])
def test_repeated_and_empty_rows_of_own_facts_are_refused_with_file_and_line(study, capsys, tmp_path, line, needle):
    facts, templates = own_facts(tmp_path, {"capital": CAPITALS, "capital_of": [(o, s) for s, o in CAPITALS]})
    text = facts.read_text().splitlines(keepends=True)
    facts.write_text("".join(text[:11] + [line] + text[11:]))
    use(study, facts_file=str(facts), templates_file=str(templates), templates_per_relation=4, test_fraction=0.3,
        learning_curve_fractions=[0.5, 1.0])
    assert study.kn("run", str(study.params)) == 2
    one_error_line(capsys, f"{facts}: {needle}")


def test_an_empty_provenance_names_the_values_it_may_take(study, capsys, tmp_path):
    facts, templates = own_facts(tmp_path, {"capital": CAPITALS, "capital_of": [(o, s) for s, o in CAPITALS]})
    templates.write_text(templates.read_text().replace(",authored", ", ", 1))
    use(study, facts_file=str(facts), templates_file=str(templates), templates_per_relation=4, test_fraction=0.3,
        learning_curve_fractions=[0.5, 1.0])
    assert study.kn("run", str(study.params)) == 2
    one_error_line(capsys, f"{templates}: line 2: field 'provenance' must be a non-empty string",
                   "pararel for a PARAREL template, authored for one you wrote")


# --------------------------------------------------------------------------- the run folder
MANIFEST = {"model_identity": "smollm2-135m@abc", "steps": 20, "rule": "right", "dtype": "float32", "threshold": 0.05,
            "n_layers": 30, "n_neurons": 1536, "neuron": "ffn_out_input"}


def test_chapter_2_on_a_store_made_with_other_settings_stops_before_any_model_loads(study, capsys):
    store = study.run_dir / "attribution"
    store.mkdir(parents=True)
    (store / "manifest.json").write_text(json.dumps(MANIFEST))
    started = time.perf_counter()
    assert study.kn("chapter", str(study.params), "02", "-p", "ig_steps", "4", "-p", "ig_neuron", "pre_activation") == 2
    seconds = time.perf_counter() - started
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kn: error: "), captured.err
    for needle in ("runs/stub/attribution", "other attribution settings", "ig_steps: store 20, parameters 4",
                   "ig_neuron: store 'ffn_out_input', parameters 'pre_activation'", "-p run_dir runs/NAME"):
        assert needle in lines[0], (needle, lines[0])
    assert "started" not in captured.out and not (study.run_dir / "executed-02_attribution.txt").exists()
    assert seconds < 5  # no kernel started, no model loaded
    assert json.loads((store / "manifest.json").read_text()) == MANIFEST
    # the store's own settings, or a chapter that only reads the store, go ahead
    assert study.kn("chapter", str(study.params), "02", "-p", "ig_steps", "20") == 0
    assert study.kn("chapter", str(study.params), "01", "-p", "ig_steps", "4") == 0


def test_a_run_dir_that_is_a_file_is_refused(study, capsys):
    taken = study.root / "runs" / "taken"
    taken.parent.mkdir(parents=True)
    taken.write_text("not a folder\n")
    assert study.kn("run", str(study.params), "-p", "run_dir", str(taken)) == 2
    one_error_line(capsys, f"run_dir={str(taken)!r}", "is a file, not a folder")
    assert study.kn("run", str(study.params), "-p", "run_dir", str(taken / "below")) == 2
    one_error_line(capsys, "is a file, not a folder")
    assert taken.read_text() == "not a folder\n"
