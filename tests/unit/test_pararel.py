"""PARAREL reading and adaptation: the counts the papers quote, and a clear error for each kind of bad input."""

import json
import re
import shutil
from pathlib import Path

import pytest
from kn.base.errors import DataFileError
from kn.base.params import StudyParams
from kn.data import pararel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def adapted(data_dir):
    return pararel.load_adapted(StudyParams(data_dir=str(data_dir)))


def test_counts_match_the_papers(adapted):
    summary = adapted.summary()
    assert summary["relations"] == 34
    assert summary["facts_raw"] == 27_738
    assert summary["facts_repeats_dropped"] == 21 and summary["facts"] == 27_717
    assert summary["prompts_full_templates"] == 253_448
    assert summary["templates_per_relation_adapted"] == [10]
    assert summary["prompts_adapted"] == 277_170
    assert summary["relations_with_4_y_final"] == 24
    assert summary["templates_authored"] == 159  # data/templates.csv


def test_214_of_329_templates_are_y_final(data_dir):
    """Template counts over all 39 PARAREL pattern files."""
    files = sorted((data_dir / "pararel" / "patterns").glob("P*.jsonl"))
    templates = [json.loads(line)["pattern"] for f in files for line in f.read_text().splitlines() if line.strip()]
    assert (len(files), len(templates), sum(map(pararel.is_y_final, templates))) == (39, 329, 214)


def test_adapted_templates_are_well_formed(adapted):
    templates = adapted.templates
    assert templates.groupby("relation").size().eq(10).all()
    assert templates["template"].map(pararel.is_y_final).all()
    assert (templates["template"].str.count(re.escape("[X]")) == 1).all()
    kept = templates[templates["provenance"] == "pararel"]
    # PARAREL's templates come first, in file order.
    for relation, group in templates.groupby("relation"):
        prov = group.sort_values("position")["provenance"].tolist()
        assert prov == sorted(prov, key=lambda p: p != "pararel")
    assert set(kept["template"]) <= set(adapted.templates_all["template"])


@pytest.mark.parametrize("template, subject, prompt", [
    ("[X] is located in [Y] .", "Paris", "Paris is located in"),
    ("[X] is located in [Y].", "Paris", "Paris is located in"),
    ("[X]'s occupation is [Y]", "Ada", "Ada's occupation is"),
    ("The capital of [X] is [Y] .", "France", "The capital of France is"),
])
def test_prompt_stem(template, subject, prompt):
    assert pararel.prompt_stem(template, subject) == prompt


def test_y_not_last_is_not_adapted():
    assert not pararel.is_y_final("[Y] is the capital of [X] .")
    with pytest.raises(ValueError, match="does not end with"):
        pararel.prompt_stem("[Y] is the capital of [X] .", "France")


def test_split_is_seeded_per_relation_and_model_free(adapted):
    facts = adapted.facts
    again = pararel.split_facts(facts.drop(columns="split"), 0.1, 0)
    assert (again["split"] == facts["split"]).all()
    other_seed = pararel.split_facts(facts.drop(columns="split"), 0.1, 1)
    assert (other_seed["split"] != facts["split"]).any()
    share = facts.groupby("relation")["split"].apply(lambda s: (s == "test").mean())
    assert share.between(0.09, 0.11).all()
    # A relation's split does not depend on which other relations are present.
    one = facts[facts["relation"] == "P19"].drop(columns="split")
    assert (pararel.split_facts(one, 0.1, 0)["split"] == facts.loc[one.index, "split"]).all()


def test_sample_is_a_stable_slice(adapted):
    params = StudyParams(relations=["P19", "P36"], train_facts_per_relation=5, test_facts_per_relation=2)
    sample = pararel.sample_facts(adapted.facts, params)
    assert sample.groupby(["relation", "split"]).size().to_dict() == {
        ("P19", "test"): 2, ("P19", "train"): 5, ("P36", "test"): 2, ("P36", "train"): 5}
    wider = pararel.sample_facts(adapted.facts, StudyParams(relations=["P19", "P36", "P101"],
                                                            train_facts_per_relation=5, test_facts_per_relation=2))
    assert wider[wider["relation"] != "P101"].reset_index(drop=True).equals(sample)
    with pytest.raises(DataFileError, match="P9999"):
        pararel.sample_facts(adapted.facts, StudyParams(relations=["P9999"]))


def test_prompt_table(adapted, embedded):
    sample = pararel.sample_facts(adapted.facts, StudyParams(relations=["P36"], train_facts_per_relation=2,
                                                             test_facts_per_relation=1))
    prompts = pararel.add_answer_tokens(pararel.build_prompts(sample, adapted.templates), embedded.tokenizer)
    assert len(prompts) == 3 * 10
    row = prompts.iloc[0]
    assert row["prompt"] == pararel.prompt_stem(row["template"], row["subject"])
    assert row["answer"] == " " + row["object"]
    ids = embedded.tokenizer(row["answer"], add_special_tokens=False)["input_ids"]
    assert row["target_id"] == ids[0] and row["answer_n_tokens"] == len(ids)
    assert prompts.groupby("fact_id")["template_position"].apply(list).map(lambda p: p == list(range(10))).all()


# --- bad input: each error names the file and the line or key -------------------------------------------
@pytest.fixture
def data_copy(data_dir, tmp_path):
    shutil.copytree(data_dir / "Hunter-DDM_knowledge-neurons" / "PARAREL", tmp_path / "Hunter-DDM_knowledge-neurons"
                    / "PARAREL", ignore=shutil.ignore_patterns("raw_data", "data_11.json"))
    shutil.copytree(data_dir / "pararel" / "patterns", tmp_path / "pararel" / "patterns")
    return tmp_path


def test_missing_fact_file(data_copy):
    (data_copy / pararel.FACTS_PATH).unlink()
    with pytest.raises(DataFileError, match="query_pairs.json is missing"):
        pararel.read_facts(data_copy)


def test_missing_template_file(data_copy):
    (data_copy / "pararel" / "patterns" / "P19.jsonl").unlink()
    with pytest.raises(DataFileError, match=r"P19\.jsonl is missing"):
        pararel.read_templates(data_copy, ["P19"])


def test_malformed_json_line_is_named(data_copy):
    path = data_copy / "pararel" / "patterns" / "P19.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = '{"pattern": "[X] was born in [Y]."'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match=r"P19\.jsonl: line 3: not valid JSON"):
        pararel.read_templates(data_copy, ["P19"])


def test_malformed_fact_file_is_named(data_copy):
    (data_copy / pararel.FACTS_PATH).write_text('{"P19": [["A", "B"],\n ["C"]')
    with pytest.raises(DataFileError, match=r"query_pairs\.json: line 2: not valid JSON"):
        pararel.read_facts(data_copy)


def test_template_without_x_is_named(data_copy):
    path = data_copy / "pararel" / "patterns" / "P19.jsonl"
    path.write_text(path.read_text() + '{"pattern": "Someone was born in [Y]."}\n')
    n = len(path.read_text().splitlines())
    with pytest.raises(DataFileError, match=rf"P19\.jsonl: line {n}: template .* must contain \[X\] exactly once"):
        pararel.read_templates(data_copy, ["P19"])


@pytest.mark.parametrize("pair, message", [
    (["", "Paris"], r"P19\[1\]: empty label"),
    (["Ada", " "], r"P19\[1\]: empty label"),
    (["Ada"], r"P19\[1\]: expected \[subject, object\]"),
])
def test_bad_fact_is_named(data_copy, pair, message):
    (data_copy / pararel.FACTS_PATH).write_text(json.dumps({"P19": [["Ada Lovelace", "London"], pair]}))
    with pytest.raises(DataFileError, match=message):
        pararel.read_facts(data_copy)


def _authored_copy(tmp_path, edit):
    rows = (ROOT / pararel.AUTHORED_TEMPLATES).read_text().splitlines()
    index = next(i for i, r in enumerate(rows) if ",authored," in r)
    rows[index] = edit(rows[index])
    path = tmp_path / "templates.csv"
    path.write_text("\n".join(rows) + "\n")
    return path, index + 1


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.replace("[Y].", "[Y] in total."), "must end with \\[Y\\]"),
    (lambda r: r.replace("[X]", "someone"), "must contain \\[X\\] exactly once"),
    (lambda r: r.replace(",authored,", ",invented,"), "provenance 'invented'"),
])
def test_bad_authored_template_is_named(adapted, tmp_path, edit, message):
    path, line = _authored_copy(tmp_path, edit)
    with pytest.raises(DataFileError, match=rf"templates\.csv: line {line}: .*{message}"):
        pararel.adapt_templates(adapted.templates_all, path)


def test_authored_file_must_agree_with_pararel(adapted, tmp_path):
    rows = (ROOT / pararel.AUTHORED_TEMPLATES).read_text().splitlines()
    index = next(i for i, r in enumerate(rows) if ",pararel," in r)
    rows[index] = rows[index].replace("[X]", "[X] (edited)")
    path = tmp_path / "templates.csv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataFileError, match="pararel rows .* differ"):
        pararel.adapt_templates(adapted.templates_all, path)


# --- one prompt, one row; the split keeps shared facts together ----------------------------------------------------
def test_no_prompt_and_answer_lies_on_both_sides_of_the_split(adapted):
    prompts = pararel.build_prompts(adapted.facts, adapted.templates)
    assert len(prompts) == 277_170 and prompts["prompt_id"].is_unique
    twins = prompts[prompts.duplicated(["prompt", "answer"], keep=False)]
    assert len(twins) == 540  # P176/P178, P364/P407, P495/P740, P39/P413
    assert (twins.groupby(["prompt", "answer"])["split"].nunique() == 1).all()
    # a pair held by two relations has one side in both
    sides = adapted.facts.groupby(["subject", "object"])["split"].nunique()
    assert (sides == 1).all()
    # and every relation keeps its share of test facts
    share = adapted.facts.groupby("relation")["split"].apply(lambda s: (s == "test").mean())
    assert share.between(0.09, 0.11).all()


def test_the_old_split_put_twins_on_both_sides(adapted):
    """What the linked split fixes: drawing each relation on its own puts 50 of the shared prompts on both sides."""
    import numpy as np

    facts = adapted.facts.drop(columns="split").copy()
    facts["split"] = "train"
    for relation, index in facts.groupby("relation").groups.items():
        order = pararel._relation_rng(relation, 0, "split").permutation(len(index))
        facts.loc[np.asarray(index)[order[: int(round(0.1 * len(index)))]], "split"] = "test"
    prompts = pararel.build_prompts(facts, adapted.templates)
    twins = prompts[prompts.duplicated(["prompt", "answer"], keep=False)]
    assert (twins.groupby(["prompt", "answer"])["split"].nunique() > 1).sum() == 50


def test_samples_draw_a_shared_fact_in_both_relations(adapted):
    params = StudyParams(relations=["P176", "P178"], train_facts_per_relation=40, test_facts_per_relation=5)
    sample = pararel.sample_facts(adapted.facts, params)
    p176 = set(zip(*[sample.loc[sample["relation"] == "P176", c] for c in ("subject", "object")]))
    p178 = set(zip(*[sample.loc[sample["relation"] == "P178", c] for c in ("subject", "object")]))
    all_176 = set(zip(*[adapted.facts.loc[adapted.facts["relation"] == "P176", c] for c in ("subject", "object")]))
    all_178 = set(zip(*[adapted.facts.loc[adapted.facts["relation"] == "P178", c] for c in ("subject", "object")]))
    shared_drawn = p176 & all_178
    assert shared_drawn and shared_drawn <= p178  # every shared pair drawn for P176 is drawn for P178 too


# --- the user's own facts ---------------------------------------------------------------------------------------
def test_example_facts_load(tmp_path):
    params = StudyParams(facts_file="data/example/facts.csv", templates_file="data/example/templates.csv",
                         templates_per_relation=4, test_fraction=0.25)
    data = pararel.load_adapted(params)
    assert data.source == "user" and len(data.facts) == 36 and data.templates.groupby("relation").size().eq(4).all()
    prompts = pararel.build_prompts(data.facts, data.templates)
    assert prompts.loc[prompts["prompt_id"] == "capital:0#0", "prompt"].item() == "The capital of France is"
    assert (data.facts.groupby("relation")["split"].apply(lambda s: (s == "test").sum()) == 3).all()


@pytest.mark.parametrize("facts, templates, message", [
    ("relation,subject\ncapital,France\n", None, "header must hold"),
    ("relation,subject,object\ncapital,France,\n", None, "line 2: field 'object' must be a non-empty string"),
    ("relation,subject,object\ncap ital,France,Paris\n", None, "line 2: relation 'cap ital'"),
    (None, "relation,template,provenance\ncapital,The capital of France is [Y].,authored\n", "must contain \\[X\\]"),
    (None, "relation,template,provenance\ncapital,[Y] is the capital of [X].,authored\n", "must end with \\[Y\\]"),
    (None, "relation,template,provenance\ncapital,The capital of [X] is [Y].,authored\n", "has 1 templates"),
])
def test_bad_user_files_are_named(tmp_path, facts, templates, message):
    facts_path, templates_path = tmp_path / "facts.csv", tmp_path / "templates.csv"
    facts_path.write_text(facts or "relation,subject,object\ncapital,France,Paris\ncapital,Spain,Madrid\n")
    templates_path.write_text(templates or "relation,template,provenance\n"
                              + "".join(f"capital,The capital {i} of [X] is [Y].,authored\n" for i in range(4)))
    params = StudyParams(facts_file=str(facts_path), templates_file=str(templates_path), templates_per_relation=2)
    with pytest.raises(DataFileError, match=message):
        pararel.load_adapted(params)


def test_user_facts_as_json_lines(tmp_path):
    facts = tmp_path / "facts.jsonl"
    facts.write_text('{"relation": "capital", "subject": "France", "object": "Paris"}\n\n'
                     '{"relation": "capital", "subject": "Spain", "object": "Madrid"}\n')
    assert pararel.read_user_facts(facts)["object"].tolist() == ["Paris", "Madrid"]
    facts.write_text('{"relation": "capital", "subject": "France"\n')
    with pytest.raises(DataFileError, match="line 1: not valid JSON"):
        pararel.read_user_facts(facts)
    with pytest.raises(DataFileError, match="is missing"):
        pararel.read_user_facts(tmp_path / "none.csv")
    (tmp_path / "facts.txt").write_text("x")
    with pytest.raises(DataFileError, match="use a .csv file"):
        pararel.read_user_facts(tmp_path / "facts.txt")
