import pandas as pd
import pytest

from kn.params import StudyParams
from kn.store import MissingArtifact, RunFolder


def test_tables_and_json_round_trip(tmp_path):
    run = RunFolder(tmp_path / "run")
    table = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    run.write_table("t", table)
    assert run.read_table("t").equals(table)
    run.write_json("j", {"k": 1})
    assert run.read_json("j") == {"k": 1}
    assert not [p for p in run.path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_missing_artifact_names_the_chapter(tmp_path):
    with pytest.raises(MissingArtifact, match="prompts.parquet does not exist: run chapter 1"):
        RunFolder(tmp_path).read_table("prompts", chapter="chapter 1")


def test_failed_write_keeps_the_old_file(tmp_path):
    run = RunFolder(tmp_path)
    run.write_table("t", pd.DataFrame({"a": [1]}))
    with pytest.raises(Exception):
        run.write_table("t", pd.DataFrame({"a": [object()]}))  # pyarrow cannot store this
    assert run.read_table("t")["a"].tolist() == [1]
    assert not [p for p in run.path.iterdir() if p.name.startswith(".")]


def test_run_defining_params_are_checked(tmp_path):
    run = RunFolder(tmp_path)
    run.record_params(StudyParams(seed=1), "01_data_adaptation")
    run.check_params(StudyParams(seed=1, ig_steps=50))  # attribution settings may differ per chapter
    with pytest.raises(ValueError, match="seed: run has 1, parameters say 2"):
        run.check_params(StudyParams(seed=2))
