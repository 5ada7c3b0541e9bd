import json
from pathlib import Path

import pytest
from kn.base.errors import ParameterError
from kn.base.paramfiles import load_params, parameters_cell, resolve_notebook_params
from kn.base.params import CHAPTER_KEYS, StudyParams

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_valid_and_frozen():
    params = StudyParams()
    with pytest.raises(Exception):
        params.seed = 3  # frozen


def test_unknown_key_is_named():
    with pytest.raises(ParameterError, match="unknown parameter.*sample_facts"):
        StudyParams.from_mapping({"sample_facts": 3})


@pytest.mark.parametrize("key, value, expected", [
    ("seed", "0", "seed='0' has type str, expected int"),
    ("seed", True, "expected int"),
    ("test_fraction", "0.1", "expected float"),
    ("relations", "P19", "expected list"),
    ("relations", [19], "expected str"),
    ("n_relations", 2.5, "expected int"),
])
def test_mistyped_value_is_named(key, value, expected):
    with pytest.raises(ParameterError, match=expected):
        StudyParams.from_mapping({key: value})


@pytest.mark.parametrize("values, key", [
    ({"test_fraction": 1.0}, "test_fraction"),
    ({"ig_rule": "middle"}, "ig_rule"),
    ({"dtype": "float64"}, "dtype"),
    ({"device": "tpu"}, "device"),
    ({"n_relations": 0}, "n_relations"),
    ({"relations": ["P19"], "n_relations": 2}, "n_relations"),
    ({"shard_index": 2, "shard_count": 2}, "shard_index"),
    ({"coarse_threshold": 0.2, "store_threshold": 0.3}, "store_threshold"),
    ({"population": "famous"}, "population"),
    ({"ig_rule": "trapezoid"}, "ig_rule"),
    ({"ig_neuron": "gate"}, "ig_neuron"),
    ({"land_threshold": -1.0}, "land_threshold"),
    ({"facts_file": "x.csv"}, "facts_file"),
    ({"known_min_templates": 11}, "known_min_templates"),
    ({"refine_size_range": [5.0, 2.0]}, "refine_size_range"),
])
def test_bad_value_is_named(values, key):
    with pytest.raises(ParameterError, match=f"parameter {key}="):
        StudyParams.from_mapping(values)


def test_int_accepted_for_float_and_null_for_optional():
    params = StudyParams.from_mapping({"test_fraction": 0.2, "coarse_threshold": 0.3, "n_relations": None})
    assert params.test_fraction == 0.2 and params.n_relations is None


@pytest.mark.parametrize("path", sorted((ROOT / "params").glob("*.yaml")), ids=lambda p: p.name)
def test_every_params_file_loads(path):
    assert load_params(path).model


def test_params_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: gpt2\nsteps: 20\n")
    with pytest.raises(ParameterError, match=r"bad\.yaml: unknown parameter\(s\) steps"):
        load_params(bad)
    with pytest.raises(ParameterError, match="does not exist"):
        load_params(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("model: [gpt2\n")
    with pytest.raises(ParameterError, match="not valid YAML"):
        load_params(tmp_path / "broken.yaml")


def test_relative_run_dir_starts_at_project_root():
    assert StudyParams(run_dir="runs/x").resolved_run_dir() == ROOT / "runs" / "x"
    assert StudyParams(model="meta-llama/Llama-3.2-1B").resolved_run_dir().name == "llama-3-2-1b"


def _parameters_cell(path: Path):
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "parameters" in code[0].get("metadata", {}).get("tags", []), f"{path.name}: first code cell not tagged"
    return "".join(code[0]["source"])


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("0*.ipynb")), ids=lambda p: p.name)
def test_notebook_parameters_cell_is_generated_from_study_params(path):
    """Each chapter lists its keys with StudyParams' defaults and meanings (kn.base.paramfiles.parameters_cell), so the
    comments a reader sees stay in step with the checks."""
    source = _parameters_cell(path)
    assert source == parameters_cell(path.stem), f"{path.name}: regenerate its parameters cell from kn.base.params"
    namespace: dict = {}
    exec(source, {}, namespace)
    assert namespace["params_file"] == "" and namespace["overrides"] == {}
    defaults = StudyParams()
    for key in CHAPTER_KEYS[path.stem]:
        assert namespace[key] == getattr(defaults, key), key
        assert StudyParams.help(key) in source


def test_notebook_values_resolve_against_the_params_file(tmp_path):
    params = tmp_path / "run.yaml"
    params.write_text("model: gpt2\nland_lr: 0.01\nland_epochs: 10\n")
    cell = {"params_file": str(params), "overrides": {}, "land_lr": 1e-4, "land_epochs": 3, "seed": 0}
    resolved, origin = resolve_notebook_params(cell)  # the cell as written: the params file's run
    assert (resolved.model, resolved.land_lr, resolved.land_epochs) == ("gpt2", 0.01, 10)
    assert origin == {"model": "params file", "land_lr": "params file", "land_epochs": "params file"}
    resolved, origin = resolve_notebook_params(cell | {"land_epochs": 5})  # a value edited in the cell wins
    assert resolved.land_epochs == 5 and origin["land_epochs"] == "notebook cell"
    resolved, origin = resolve_notebook_params(cell | {"land_epochs": 5, "overrides": {"land_epochs": 7, "seed": 2}})
    assert (resolved.land_epochs, resolved.seed) == (7, 2) and origin["seed"] == "override"
    with pytest.raises(ParameterError, match="unknown parameter.*land_speed"):
        resolve_notebook_params(cell | {"overrides": {"land_speed": 1}})
    with pytest.raises(ParameterError, match="does not exist"):
        resolve_notebook_params(cell | {"params_file": str(tmp_path / "none.yaml")})


def test_help_texts_parse_as_papermill_parameters():
    """papermill reads the parameters cell line by line; an '=' or a quote in a comment breaks its parser."""
    for key in StudyParams.keys():
        assert "=" not in StudyParams.help(key) and "'" not in StudyParams.help(key), key


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None
