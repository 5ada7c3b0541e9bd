"""The paper-size profiles (params/*-paper.yaml): every relation and fact, the paper's split and LAND schedule, and a
`-p` slice that validates and draws a stratified sample."""

from pathlib import Path

import pytest
from kn.base.errors import ParameterError
from kn.base.paramfiles import load_params, read_params_file
from kn.base.params import DEFAULT_PARAMS_FILE, StudyParams
from kn.book.runner import check_params, parse_overrides
from kn.data import pararel

ROOT = Path(__file__).resolve().parents[2]
PROFILES = {"smollm2-135m-paper.yaml": "smollm2-135m", "gemma3-270m-paper.yaml": "gemma3-270m"}
SLICE = [("train_facts_per_relation", "20"), ("test_facts_per_relation", "5")]


@pytest.mark.parametrize("name, model", PROFILES.items())
def test_profile_is_the_papers_scale(name, model):
    params = load_params(ROOT / "params" / name)
    defaults = StudyParams()
    assert params.model == model
    assert params.population == "all"
    assert params.relations is None and params.n_relations is None
    assert params.train_facts_per_relation is None and params.test_facts_per_relation is None
    assert params.candidate_facts_per_relation is None
    # the paper's split and LAND schedule are the defaults, untouched
    for key in ("test_fraction", "seed", "templates_per_relation", "land_lr", "land_epochs", "land_batch_size",
                "land_rank", "ig_steps", "ig_rule", "ig_dtype", "ig_neuron"):
        assert getattr(params, key) == getattr(defaults, key), key
    assert (params.land_lr, params.land_epochs, params.land_batch_size) == (1e-4, 3, 8)
    assert params.coarse_threshold == 0.2
    # a run folder of its own: the default book run is never overwritten
    default_run = load_params(ROOT / DEFAULT_PARAMS_FILE).resolved_run_dir()
    assert params.resolved_run_dir() != default_run
    assert params.resolved_run_dir().name == name.removesuffix(".yaml")


@pytest.mark.parametrize("name", PROFILES)
def test_profile_documents_its_slice_and_choices(name):
    text = (ROOT / "params" / name).read_text()
    assert f"kn run params/{name} -p train_facts_per_relation 20 -p test_facts_per_relation 5" in text
    for words in ("chapter 1's table", "ig_dtype float32", "one prompt per kernel call", "Table 3"):
        assert words in text, words


@pytest.mark.parametrize("name", PROFILES)
def test_slice_override_validates(name):
    path = ROOT / "params" / name
    params = check_params(path, parse_overrides(SLICE))
    assert (params.train_facts_per_relation, params.test_facts_per_relation) == (20, 5)
    assert params.population == "all" and params.model == read_params_file(path)["model"]
    with pytest.raises(ParameterError, match="train_facts_per_relation"):
        check_params(path, parse_overrides([("train_facts_per_relation", "0")]))


def test_profile_and_slice_on_the_data(data_dir):
    """The full profile is 34 relations x every fact x 10 templates; the slice keeps 20 + 5 facts of each relation."""
    path = ROOT / "params" / "smollm2-135m-paper.yaml"
    params = load_params(path)
    data = pararel.load_adapted(params)
    full = pararel.sample_facts(data.facts, params)
    assert len(full) == 27_717 and full["relation"].nunique() == 34
    assert len(pararel.build_prompts(full, data.templates)) == 277_170
    assert full["split"].value_counts().to_dict() == {"train": 24_945, "test": 2_772}
    sliced = pararel.sample_facts(data.facts, check_params(path, parse_overrides(SLICE)))
    per = sliced.groupby(["relation", "split"]).size().unstack()
    assert len(per) == 34 and (per["train"] == 20).all() and (per["test"] == 5).all()


@pytest.mark.parametrize("name, t", [("gpt2.yaml", 0.3), ("llama-3.2-1b.yaml", 0.2)])
def test_the_papers_own_models_files_are_the_same_study(name, t):
    """params/gpt2.yaml and params/llama-3.2-1b.yaml: the paper profile's population, split and LAND schedule, at the
    coarse threshold LAND's Table 3 gives each model."""
    params, paper = load_params(ROOT / "params" / name), load_params(ROOT / "params" / "smollm2-135m-paper.yaml")
    for key in ("population", "relations", "n_relations", "train_facts_per_relation", "test_facts_per_relation",
                "candidate_facts_per_relation", "test_fraction", "seed", "land_lr", "land_epochs", "land_batch_size",
                "land_rank", "ig_steps", "ig_rule", "ig_dtype"):
        assert getattr(params, key) == getattr(paper, key), key
    assert params.coarse_threshold == t
    assert params.land_operating_ratio == {0.3: 1.17, 0.2: 1.24}[t]  # the paper's N_L / N_s of that model


@pytest.mark.parametrize("name", ["smollm2-135m.yaml", "smollm2-135m-paper.yaml", "gemma3-270m.yaml",
                                  "gemma3-270m-paper.yaml", "smoke.yaml", "example.yaml"])
def test_llama_like_runs_read_land_at_llamas_ratio(name):
    """SmolLM2 is of the Llama family and Gemma 3 follows Llama's coarse threshold: both read LAND at Llama-3.2-1B's
    N_L / N_s (20.43 / 16.50 = 1.24), not GPT-2's 1.17 (the parameter's default)."""
    assert load_params(ROOT / "params" / name).land_operating_ratio == 1.24
