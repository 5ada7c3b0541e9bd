import pandas as pd
import pytest
from kn.base.errors import MissingArtifact
from kn.base.params import StudyParams
from kn.base.rundir import RunFolder


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


def test_coarse_sets_are_looked_up_by_prompt_id_and_shared_texts_read_one_score(tmp_path):
    import numpy as np
    import pandas as pd
    from kn.attribution.store import AttributionStore
    from kn.base.errors import MissingArtifact

    store = AttributionStore(tmp_path / "s", identity="m", steps=20, rule="right", dtype="float32", threshold=0.05,
                             n_layers=1, n_neurons=4)
    prompts = pd.DataFrame({"prompt_id": ["P176:1#0", "P178:7#0", "P176:2#0"],
                            "prompt": ["Wii U is developed by", "Wii U is developed by", "iPod is developed by"],
                            "target_id": [5, 5, 6]})
    rows = [{"key": store.key(p, t), "prompt": p, "target_id": t, "max_score": 1.0,
             "neuron_ids": np.array(ids, np.int32), "neuron_scores": np.array(v, np.float32),
             "layer_sums": np.zeros(1, np.float32), "p_full": np.zeros(1, np.float32), "p_zero": np.zeros(1, np.float32)}
            for (p, t), ids, v in ((("Wii U is developed by", 5), [0, 2], [1.0, 0.5]),
                                   (("iPod is developed by", 6), [1], [1.0]))]
    store._write_part(rows, 0, 1)
    sets = store.coarse_sets_by_prompt(prompts, 0.2)
    assert sets == {"P176:1#0": frozenset({0, 2}), "P178:7#0": frozenset({0, 2}), "P176:2#0": frozenset({1})}
    with pytest.raises(MissingArtifact, match="1 of 4 prompts have no stored scores"):
        store.coarse_sets_by_prompt(pd.concat([prompts, pd.DataFrame({"prompt_id": ["x#0"], "prompt": ["new"],
                                                                      "target_id": [1]})]), 0.2)
