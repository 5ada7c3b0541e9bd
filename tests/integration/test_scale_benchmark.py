"""benchmarks/scale.py on ~2,000 prompts: the synthetic store is the store's own format, the steps run as the chapters
call them, and the JSON says what was measured and what extrapolated."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from kn.attribution.store import AttributionStore

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "scale.py"
STEPS = ["table4", "kn_refining", "land_train", "p_sweep"]


@pytest.fixture(scope="module")
def result(tmp_path_factory, data_dir):
    work = tmp_path_factory.mktemp("scale")
    out = work / "scale.json"
    subprocess.run([sys.executable, str(SCRIPT), "--arch", "gpt2", "--prompts", "2000", "--steps", ",".join(STEPS),
                    "--land-prompts", "160", "--land-epochs", "1", "--sizes-from", "", "--work", str(work / "store"),
                    "--out", str(out)], check=True, cwd=ROOT, timeout=600)
    return json.loads(out.read_text()), work


def test_json_names_the_machine_the_store_and_every_step(result):
    data, _ = result
    assert data["arch"] == "gpt2" and (data["n_layers"], data["n_neurons"]) == (12, 3072)
    assert {"platform", "cpu_count", "torch_threads", "loadavg_start", "loadavg_end"} <= set(data["machine"])
    assert data["size_source"]["kind"].startswith("lognormal")
    assert data["prompt_source"].startswith("PARAREL adapted")
    store = data["store"]
    assert store["rows"] == data["steps"][0]["prompts"] and store["parts"] >= store["rows"] / 16
    assert store["disk_mb"] > 0 and store["memory_mb"] > 0
    steps = {row["step"]: row for row in data["steps"]}
    # the requested steps and what they need, in order, each with its seconds and memory
    assert [r["step"] for r in data["steps"] if r["requested"]] == STEPS
    assert {"prompts", "store_write", "store_read", "coarse_sets", "land_training_data"} <= set(steps)
    for row in data["steps"]:
        assert row["seconds"] >= 0 and row["peak_rss_mb"] >= row["rss_before_mb"] > 0
    assert 1_900 <= steps["prompts"]["prompts"] <= 2_300 and steps["prompts"]["relations"] == 34


def test_land_training_on_a_fraction_is_extrapolated(result):
    data, _ = result
    train = next(r for r in data["steps"] if r["step"] == "land_train")
    assert data["extrapolated"] is True and train["extrapolated"] is True
    assert train["basis"]["pairs"] == 160 and train["basis"]["epochs"] == 1
    assert train["steps"] == 3 * -(-train["pairs"] // 8)  # the paper's schedule: 3 epochs at batch 8
    assert train["extrapolated_seconds"] == pytest.approx(
        train["measured_seconds"] * train["steps"] / train["basis"]["steps"], rel=0.01)


def test_synthetic_store_is_the_stores_own_format(result):
    _, work = result
    store = AttributionStore.open(work / "store" / "attribution")
    prompts = pd.read_parquet(work / "store" / "prompts.parquet")
    table = store.read()
    assert list(table.columns) == list(AttributionStore.PART_COLUMNS)
    coarse = store.coarse_sets_by_prompt(prompts, 0.2, table)  # every prompt has its row, keyed as chapter 2 keys it
    assert len(coarse) == len(prompts) and all(coarse.values())
    stored = table["neuron_ids"].map(len)
    assert (stored >= pd.Series([len(s) for s in store.coarse_sets(0.2, table).values()])).all()
    assert {"prompt_id", "relation", "fact_id", "split", "template_position", "prompt", "target_id",
            "correct"} <= set(prompts.columns)
