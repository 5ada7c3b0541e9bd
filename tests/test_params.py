import json
from pathlib import Path

import pytest

from kn.params import ParameterError, StudyParams, load_params, params_from_namespace

ROOT = Path(__file__).resolve().parents[1]


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


def _parameters_cell(path: Path) -> dict:
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "parameters" in code[0].get("metadata", {}).get("tags", []), f"{path.name}: first code cell not tagged"
    namespace: dict = {}
    exec("".join(code[0]["source"]), {}, namespace)
    return namespace


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("0*.ipynb")), ids=lambda p: p.name)
def test_notebook_parameters_are_study_params_with_their_defaults(path):
    namespace = _parameters_cell(path)
    assert set(namespace) <= set(StudyParams.keys()), set(namespace) - set(StudyParams.keys())
    defaults = StudyParams()
    for key, value in namespace.items():
        assert value == getattr(defaults, key), f"{path.name}: {key} = {value!r}, StudyParams has {getattr(defaults, key)!r}"
    assert params_from_namespace(namespace) == defaults


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None
