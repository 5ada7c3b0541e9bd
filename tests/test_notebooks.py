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


def test_later_chapters_record_their_values(smoke_run):
    _, run, timings = smoke_run
    assert set(timings) == set(runner.CHAPTERS)
    attribution = run.read_json("attribution_summary")
    assert attribution["stored"] == attribution["prompts"] == 100
    # IG completeness with m = 20: the per-layer sums track P(w) - P(0) to a small fraction of its size
    assert attribution["completeness_mean_abs_gap"] < 0.25 * attribution["completeness_mean_delta"]
    overlap = run.read_json("overlap_summary")
    t4 = overlap["table4"]
    assert t4["N_uo"] == t4["N_s"] and t4["N_s"] <= t4["N_u"] and 0 < t4["R_so"] < 1
    assert t4["R_uo_mean_ratio"] == pytest.approx(t4["N_s"] / t4["N_u"], rel=0.5)
    assert set(overlap["p_used"]) == {"P36", "P103"}
    land = run.read_json("land_summary")
    assert land["n_parameters"] == 30 * 2 * 1536 * 64
    assert land["train_pairs"] == 6 * 10
    amplification = run.read_json("amplification_summary")
    assert set(amplification["amplify_mean"]["Same"]) == {"Baseline", "KN-refined", "LAND", "Random", "Constant"}
    editing = run.read_json("editing_summary")
    assert editing["facts"] == 4 and editing["success"]["Before"]["Same"] == 0.0
    assert set(editing["erasing"]["neurons"]) == {"P36", "P103"}
    prompts = run.read_table("prompts")
    assert len(run.read_table("land_sets")) == len(prompts)


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


def _chromium() -> str:
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("headless Chromium is needed for the browser test: `apt-get install chromium` (make setup does it as root)")
    return path


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=5000"]


def _render(page: Path, profile: Path, screenshot: Path | None = None) -> str:
    """The DOM after Chromium ran the page's scripts; optionally a full-page screenshot."""
    import subprocess

    base = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    if screenshot is not None:
        subprocess.run(base + ["--window-size=1280,2400", f"--screenshot={screenshot}", page.as_uri()],
                       check=True, capture_output=True, timeout=120)
    dom = subprocess.run(base + ["--dump-dom", page.as_uri()], check=True, capture_output=True, text=True, timeout=120)
    return dom.stdout


def test_book_pages_render_in_chromium(smoke_run, tmp_path):
    """Every chapter page, opened in headless Chromium, shows tables and figures and no executed cell shows an error."""
    root, _, _ = smoke_run
    runner.build_book(root)
    html = root / "book" / "_build" / "html"
    shots = ROOT / "artifacts" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    pages = [html / "book" / "runs" / "smoke" / f"{c}.html" for c in runner.CHAPTERS]
    pages.append(html / "book" / "generated" / "results.html")
    for page in pages:
        assert page.is_file(), f"{page} was not built"
        dom = _render(page, tmp_path / "profile", shots / f"{page.stem}.png")
        assert "<table" in dom, f"{page.name}: no table"
        assert page.stem == "results" or "<img" in dom, f"{page.name}: no figure"
        for marker in ("output traceback", "output error", "Traceback (most recent call last)"):
            assert marker not in dom, f"{page.name}: an executed cell shows an error ({marker})"
        assert (shots / f"{page.stem}.png").stat().st_size > 10_000


def test_attribution_shards_as_jobs_merge_to_the_chapter_store(smoke_run):
    """The scale-out example: shard jobs (scripts/shards_local.sh, as a SLURM array would run them) and a merge give
    exactly the rows chapter 2 computed in one process."""
    import subprocess

    import numpy as np

    from kn.store import AttributionStore

    root, run, _ = smoke_run
    subprocess.run(["bash", str(ROOT / "scripts" / "shards_local.sh"), str(root / "smoke.yaml"), "2", "4"], check=True,
                   capture_output=True, timeout=600)
    shard_dirs = sorted((run.path / "shards").iterdir())
    assert len(shard_dirs) == 2 and all(list(d.glob("part-*.parquet")) for d in shard_dirs)
    merged = AttributionStore.open(runner_merge(shard_dirs, run.path / "merged")).read().set_index("key")
    chapter = AttributionStore.open(run.path / "attribution").read().set_index("key")
    assert len(merged) == 4
    for key, row in merged.iterrows():
        for column in ("neuron_ids", "neuron_scores", "layer_sums", "p_full", "p_zero"):
            np.testing.assert_array_equal(row[column], chapter.loc[key, column])
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "slurm_attribution.sbatch")]).returncode == 0


def runner_merge(sources, target):
    from kn.shards import main

    assert main(["merge", *map(str, sources), "--into", str(target)]) == 0
    return target
