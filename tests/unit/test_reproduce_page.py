"""book/reproduce.md's scale table is `benchmarks/scale.py --markdown` of the committed results, and those results are
the paper's size, measured (not extrapolated) where the page says so."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- scale table: (?P<files>[^>]*?) -->\n(?P<table>.*?)\n<!-- end of scale table -->", re.S)


def _scale_module():
    spec = importlib.util.spec_from_file_location("scale_benchmark", ROOT / "benchmarks" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_pages_table_is_made_from_the_committed_results():
    found = BLOCK.search((ROOT / "book" / "reproduce.md").read_text())
    assert found, "book/reproduce.md has no scale table block"
    files = found.group("files").split()
    assert files and all((ROOT / f).is_file() for f in files), files
    assert found.group("table") == _scale_module().markdown([ROOT / f for f in files])


@pytest.mark.parametrize("name", ["scale_smollm2-135m.json", "scale_gpt2.json"])
def test_the_results_are_the_papers_size_with_land_trained_in_full(name):
    data = json.loads((ROOT / "benchmarks" / "results" / name).read_text())
    steps = {row["step"]: row for row in data["steps"]}
    assert data["complete"] and steps["prompts"]["prompts"] >= 277_000 and data["store"]["rows"] >= 276_000
    train = steps["land_train"]
    assert not train["extrapolated"] and train["pairs"] >= 249_000 and train["epochs"] == 3
    assert {"platform", "cpu_count", "torch_threads", "loadavg_start"} <= set(data["machine"])
    assert all(row["seconds"] > 0 and row["peak_rss_mb"] > 0 for row in data["steps"])
