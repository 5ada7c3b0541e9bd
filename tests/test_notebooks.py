"""Execute the chapters with papermill on the smoke params, check the values they recorded, and build the book."""

import json
from pathlib import Path

import pytest
import yaml

from kn import runner
from kn.store import RunFolder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = runner.prepare_book_root(tmp_path_factory.mktemp("book"))
    values = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    values["run_dir"] = str(root / "runs" / "smoke")
    params = root / "smoke.yaml"
    params.write_text(yaml.safe_dump(values))
    timings = runner.execute_chapters(params, book_root=root, progress=False)
    return root, RunFolder(values["run_dir"]), timings


def test_chapter_1_records_the_adapted_data(smoke_run):
    root, run, timings = smoke_run
    summary = run.read_json("data_summary")
    assert (summary["relations"], summary["facts_raw"], summary["facts"]) == (34, 27_738, 27_717)
    assert summary["prompts_full_templates"] == 253_448
    assert summary["templates_per_relation_adapted"] == [10]
    prompts = run.read_table("prompts")
    # smoke: P36 and P103, 3 train + 2 test facts each, 10 templates per fact
    assert len(prompts) == summary["sample_prompts"] == 2 * 5 * 10
    assert sorted(prompts["relation"].unique()) == ["P103", "P36"]
    assert prompts.groupby("split")["fact_id"].nunique().to_dict() == {"test": 4, "train": 6}
    assert summary["top1_accuracy"] == pytest.approx(prompts["correct"].mean())
    assert 0.0 < summary["top1_accuracy"] < 1.0
    assert "01_data_adaptation" in timings


def test_executed_notebooks_have_no_errors(smoke_run):
    root, _, _ = smoke_run
    executed = sorted((root / "book" / "runs" / "smoke").glob("*.ipynb"))
    assert [p.stem for p in executed] == list(runner.CHAPTERS)
    for path in executed:
        for cell in json.loads(path.read_text())["cells"]:
            for output in cell.get("outputs", []):
                assert output["output_type"] != "error", f"{path.name}: {output.get('ename')}"


def test_book_builds_with_warnings_as_errors(smoke_run):
    root, _, _ = smoke_run
    index = runner.build_book(root)
    page = root / "book" / "_build" / "html" / "book" / "runs" / "smoke" / "01_data_adaptation.html"
    assert index.is_file() and page.is_file()
    html = page.read_text()
    assert "smollm2-135m" in html and "<table" in html and "<img" in html
