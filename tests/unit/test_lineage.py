"""Staleness (kn.base.lineage) on hand-made run folders: what each chapter read, in which version, and which chapters a
re-run of an earlier one leaves behind; the label a stale page gets and the results page's line."""

import json

import nbformat
import pandas as pd
from kn.base import lineage
from kn.base.rundir import RunFolder
from kn.book import build, results

PARAMS = "params/x.yaml"


def chapter(path, name, reads=(), writes=None, store=None, complete=True):
    """One execution of chapter ``name``: read ``reads`` (tables; "attribution/" the store), write ``writes``
    ({table: values}; "constant_set" as JSON), write to the store ``store`` ({part: text}); record what it read."""
    run = RunFolder(path, chapter=name)
    for record in reads:
        if record.endswith("/"):
            run.folder(record[:-1])
        elif record == "constant_set":
            run.read_json(record)
        else:
            run.read_table(record)
    for table, values in (writes or {}).items():
        if table == "constant_set":
            run.write_json(table, {"neuron_ids": values})
        else:
            run.write_table(table, pd.DataFrame({"v": values}))
    if store is not None:
        for part, text in store.items():
            (run.path / "attribution").mkdir(exist_ok=True)
            (run.path / "attribution" / part).write_text(text)
        run.wrote_folder("attribution")
    if complete:
        run.record_consumption(PARAMS)
    return run


def study(path):
    """Chapters 1, 2, 3, 4, 5 and 6 as the book's chapters read each other."""
    chapter(path, "01_data_adaptation", writes={"prompts": [1, 2, 3]})
    chapter(path, "02_attribution", reads=["prompts"], store={"manifest.json": "{}", "part-0.parquet": "ab"})
    chapter(path, "03_overlap", reads=["prompts", "attribution/"], writes={"refined_sets": [7]})
    chapter(path, "04_land", reads=["prompts", "attribution/"], writes={"detector_sets": [1], "constant_set": [4]})
    for later in ("05_amplification", "06_editing"):
        chapter(path, later, reads=["prompts", "attribution/", "detector_sets", "constant_set", "refined_sets"])


def test_a_complete_run_has_no_stale_chapter_and_records_what_each_read(tmp_path):
    study(tmp_path)
    assert lineage.stale_chapters(tmp_path) == {}
    consumed = json.loads((tmp_path / "consumed.json").read_text())
    assert set(consumed["05_amplification"]["inputs"]) == {"prompts.parquet", "attribution/", "detector_sets.parquet",
                                                           "constant_set.json", "refined_sets.parquet"}
    assert consumed["05_amplification"]["inputs"]["detector_sets.parquet"]["chapter"] == "04_land"
    assert consumed["05_amplification"]["params_file"] == PARAMS
    versions = json.loads((tmp_path / "versions.json").read_text())
    assert versions["constant_set.json"]["chapter"] == "04_land" and versions["attribution/"]["chapter"] == "02_attribution"
    assert lineage.stale_report(tmp_path) == []


def test_re_running_chapter_4_with_another_result_stales_chapters_5_and_6(tmp_path):
    study(tmp_path)
    chapter(tmp_path, "04_land", reads=["prompts", "attribution/"], writes={"detector_sets": [2], "constant_set": [4]})
    stale = lineage.stale_chapters(tmp_path)
    assert list(stale) == ["05_amplification", "06_editing"]
    assert stale["05_amplification"].older == {"04_land": ["detector_sets.parquet"]}
    assert stale["06_editing"].reason() == "was computed from an older output of chapter 4 (04_land): detector_sets"
    assert lineage.stale_report(tmp_path) == [
        "05_amplification was computed from an older output of chapter 4 (04_land): detector_sets",
        "06_editing was computed from an older output of chapter 4 (04_land): detector_sets",
        f"refresh: kn chapter {PARAMS} 05 06"]
    # refreshing chapter 5 leaves chapter 6 alone
    chapter(tmp_path, "05_amplification", reads=["prompts", "attribution/", "detector_sets", "constant_set"])
    assert list(lineage.stale_chapters(tmp_path)) == ["06_editing"]


def test_an_identical_re_run_stales_nothing_and_a_chapter_reading_its_own_output_is_not_stale(tmp_path):
    study(tmp_path)
    chapter(tmp_path, "04_land", reads=["prompts", "attribution/"], writes={"detector_sets": [1], "constant_set": [4]})
    assert lineage.stale_chapters(tmp_path) == {}
    chapter(tmp_path, "04_land", reads=["detector_sets"], writes={"detector_sets": [9]})
    assert "04_land" not in lineage.stale_chapters(tmp_path)
    assert "detector_sets.parquet" not in json.loads((tmp_path / "consumed.json").read_text())["04_land"]["inputs"]


def test_staleness_passes_through_a_stale_chapter_and_the_store_counts_as_one_record(tmp_path):
    study(tmp_path)
    chapter(tmp_path, "02_attribution", reads=["prompts"], store={"part-1.parquet": "cd"})  # a new part
    (tmp_path / "attribution" / "part-0.parquet.lock").write_text("")  # locks and temporary files are not content
    (tmp_path / "attribution" / ".part-2.parquet.tmp").write_text("x")
    stale = lineage.stale_chapters(tmp_path)
    assert list(stale) == ["03_overlap", "04_land", "05_amplification", "06_editing"]
    assert stale["04_land"].older == {"02_attribution": ["attribution/"]} and stale["04_land"].via == []
    assert stale["05_amplification"].via == ["03_overlap", "04_land"]
    assert "itself stale" in stale["05_amplification"].reason()
    assert lineage.stale_report(tmp_path)[-1] == f"refresh: kn chapter {PARAMS} 03 04 05 06"


def test_a_failed_chapter_keeps_what_its_last_good_execution_read(tmp_path):
    study(tmp_path)
    chapter(tmp_path, "04_land", reads=["prompts", "attribution/"], writes={"detector_sets": [2]})
    chapter(tmp_path, "05_amplification", reads=["detector_sets"], complete=False)  # failed: its old page stays
    assert list(lineage.stale_chapters(tmp_path)) == ["05_amplification", "06_editing"]


def test_a_folder_opened_outside_a_chapter_records_no_read_and_untracked_records_are_ignored(tmp_path):
    study(tmp_path)
    RunFolder(tmp_path).read_table("detector_sets")
    (tmp_path / "legacy.parquet").write_bytes(b"")  # written before the bookkeeping: not tracked
    run = RunFolder(tmp_path, chapter="05_amplification")
    run.path.joinpath("legacy.json").write_text("{}")
    run.read_json("legacy")
    assert run.inputs == {}
    assert lineage.stale_chapters(tmp_path) == {}


def test_refresh_commands_repeat_each_chapters_overrides():
    overrides = {"05_amplification": {"amplify_factor": 3.0, "relations": ["P36"]}, "06_editing": {}}
    assert lineage.refresh_commands("params/my model.yaml", ["06_editing", "05_amplification", "02b_x"], overrides) == [
        "kn chapter 'params/my model.yaml' 02b 06",
        "kn chapter 'params/my model.yaml' 05 -p amplify_factor 3.0 -p relations '[\"P36\"]'"]


def _page(path, title):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nIntro."), nbformat.v4.new_code_cell("x = 1")]
    nb.metadata["papermill"] = {"parameters": {"params_file": "params/r.yaml"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def test_the_book_labels_stale_pages_and_unlabels_them_once_refreshed(tmp_path):
    run = tmp_path / "runs" / "r"
    study(run)
    pages = tmp_path / "book" / "runs" / "r"
    for name in ("04_land", "05_amplification", "06_editing"):
        _page(pages / f"{name}.ipynb", name)
    assert build.mark_stale_pages(tmp_path) == []
    chapter(run, "04_land", reads=["prompts", "attribution/"], writes={"detector_sets": [2], "constant_set": [5]})
    assert build.mark_stale_pages(tmp_path) == ["r/05_amplification", "r/06_editing"]
    assert build.mark_stale_pages(tmp_path) == ["r/05_amplification", "r/06_editing"]  # idempotent: one label
    cells = nbformat.read(pages / "05_amplification.ipynb", as_version=4).cells
    assert len(cells) == 3 and cells[0].source.startswith("# 05") and build.STALE_TAG in cells[1].metadata.tags
    assert cells[1].source.startswith(":::{admonition} Stale chapter")
    assert ("This chapter was computed from an older output of chapter 4 (04_land): constant_set, detector_sets. "
            "Re-run: `kn chapter params/r.yaml 05 06`") in cells[1].source
    assert len(nbformat.read(pages / "04_land.ipynb", as_version=4).cells) == 2
    note = results.stale_note({"r": RunFolder(run)})
    assert "**r**, stale chapters: 05_amplification was computed from an older output of chapter 4" in note
    assert "Refresh: `kn chapter params/x.yaml 05 06`" in note
    for name in ("05_amplification", "06_editing"):
        chapter(run, name, reads=["detector_sets", "constant_set"])
    assert build.mark_stale_pages(tmp_path) == [] and results.stale_note({"r": RunFolder(run)}) == ""
    assert len(nbformat.read(pages / "05_amplification.ipynb", as_version=4).cells) == 2
