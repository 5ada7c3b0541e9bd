"""The `kn` command on stub chapters (seconds each, no model): bad input exits 2 with one line, overrides are parsed,
checked and recorded, only completed chapters reach the book, and progress goes to the terminal, not into pages."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
import yaml
from kn.book import build, cli, runner
from kn.book import submit as submit_module

ROOT = Path(__file__).resolve().parents[2]

PARAMETERS = 'params_file = ""\noverrides = {}\nprogress_file = ""'
SETUP = """\
import json, pathlib
import yaml
from kn.base import progress
from kn.base.params import StudyParams

progress.use_file(progress_file)
cfg = StudyParams.from_mapping({**(yaml.safe_load(open(params_file)) or {}), **overrides})
run = pathlib.Path(cfg.resolved_run_dir())
run.mkdir(parents=True, exist_ok=True)
with open(run / f"executed-{CHAPTER}.txt", "a") as log:
    log.write(f"{cfg.land_threshold}\\n")
"""
WORK = """\
for _ in progress.track(range(3), desc="stubwork", unit="prompt"):
    pass
print(f"{CHAPTER} ran with land_threshold={cfg.land_threshold}")
"""


def write_stub(folder: Path, chapter: str, body: str = "") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(f"# Stub {chapter}\n\nA stub chapter."),
                nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(f"CHAPTER = {chapter!r}\n" + SETUP),
                nbformat.v4.new_code_cell(WORK)]
    if body:
        nb.cells.append(nbformat.v4.new_code_cell(body))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{chapter}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def study(tmp_path, monkeypatch, data_dir):
    """A book root with two stub chapters and a params file whose run folder lies in it."""
    root = tmp_path / "root"
    notebooks = root / "notebooks"
    write_stub(notebooks, "01_data_adaptation")
    write_stub(notebooks, "02_attribution")
    params = root / "params" / "stub.yaml"
    params.parent.mkdir(parents=True)
    params.write_text(yaml.safe_dump({"model": "smollm2-135m", "run_dir": str(root / "runs" / "stub"),
                                      "land_threshold": 0.5}))
    monkeypatch.chdir(root)
    monkeypatch.setenv("KN_PROGRESS_SECONDS", "0")
    scratch = tmp_path / "tmp"  # staging folders and kept failed notebooks
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("TMPDIR", str(scratch))

    class Study:
        pass

    s = Study()
    s.root, s.notebooks, s.params = root, notebooks, params
    s.run_dir, s.book_dir = root / "runs" / "stub", root / "book" / "runs" / "stub"
    s.kn = lambda *args: cli.main([*args, "--no-book", "--book-root", str(root), "--notebooks", str(notebooks)])
    return s


def one_error_line(capsys, *needles):
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kn: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def nothing_left(study):
    assert not study.run_dir.exists() and not (study.root / "runs").exists()
    assert not study.book_dir.exists()


# --- bad input: one line, exit status 2, nothing created ------------------------------------------------------------
def test_unknown_key_via_p(study, capsys):
    assert study.kn("run", str(study.params), "-p", "land_treshold", "2.0") == 2
    one_error_line(capsys, "-p land_treshold: unknown parameter", "did you mean land_threshold")
    nothing_left(study)


def test_unknown_key_in_the_yaml(study, capsys):
    study.params.write_text(study.params.read_text() + "steps: 20\n")
    assert study.kn("run", str(study.params)) == 2
    one_error_line(capsys, "stub.yaml", "unknown parameter(s) steps")
    nothing_left(study)


@pytest.mark.parametrize("key, value, needle", [
    ("land_threshold", "abc", "land_threshold='abc' has type str, expected float"),
    ("seed", "1.5", "seed=1.5 has type float, expected int"),
    ("relations", "P36", "expected list"),
    ("ig_rule", "middle", "parameter ig_rule="),
    ("coarse_threshold", "0.01", "store_threshold"),  # valid alone, wrong against the YAML's store_threshold
    ("land_lr", "[1", "not a YAML value"),
])
def test_bad_value(study, capsys, key, value, needle):
    assert study.kn("chapter", str(study.params), "02", "-p", key, value) == 2
    one_error_line(capsys, needle)
    nothing_left(study)


def test_missing_params_file(study, capsys):
    assert study.kn("run", "params/nope.yaml") == 2
    one_error_line(capsys, "params file params/nope.yaml does not exist")


def test_missing_data_folder(study, capsys, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert study.kn("run", str(study.params), "-p", "data_dir", str(empty)) == 2
    one_error_line(capsys, f"data folder {empty} lacks")
    monkeypatch.setenv("KN_DATA_DIR", str(tmp_path / "missing"))
    assert study.kn("chapter", str(study.params), "01") == 2
    one_error_line(capsys, "KN_DATA_DIR", "lacks")
    nothing_left(study)


@pytest.mark.parametrize("chapter", ["09", "04_lands", "land"])
def test_unknown_chapter(study, capsys, chapter):
    assert study.kn("chapter", str(study.params), "01", chapter) == 2
    one_error_line(capsys, f"unknown chapter {chapter!r}", "chapters: 01_data_adaptation, 02_attribution")
    nothing_left(study)


def test_unknown_model_raised_in_the_chapter_leaves_no_run_behind(study, capsys):
    """The kernel's error is bad input too: one line naming the chapter; the run folder the chapter had made is gone,
    no book folder appears, and the failed notebook is kept where the output says."""
    write_stub(study.notebooks, "01_data_adaptation",
               "class UnknownModel(ValueError):\n    pass\n\n"
               "raise UnknownModel(\"unknown model 'nope': not a Hugging Face id,\\nnor a local folder\")")
    assert study.kn("run", str(study.params)) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines == ["kn: error: 01_data_adaptation: unknown model 'nope': not a Hugging Face id, nor a local folder"]
    nothing_left(study)
    failed = [line for line in captured.out.splitlines() if line.startswith("[01_data_adaptation] failed after")]
    assert len(failed) == 1 and "(UnknownModel)" in failed[0]
    kept = Path(failed[0].split("kept at ")[1])
    assert kept.is_file() and kept.name == "01_data_adaptation.ipynb"
    assert "UnknownModel" in kept.read_text()


def test_a_bug_in_chapter_1_of_a_new_run_leaves_nothing_but_the_kept_notebook(study, capsys):
    write_stub(study.notebooks, "01_data_adaptation", "raise RuntimeError('a bug')")
    with pytest.raises(runner.ChapterFailed) as failure:
        study.kn("run", str(study.params))
    nothing_left(study)
    (folder,) = (Path(tempfile.gettempdir()) / "kn-failed").iterdir()  # one folder per failure, named by run and time
    kept = folder / "01_data_adaptation.ipynb"
    assert folder.name.startswith("stub-") and failure.value.notebook == kept and kept.is_file()
    assert f"kept at {kept}" in capsys.readouterr().out
    assert [p.name for p in Path(tempfile.gettempdir()).iterdir()] == ["kn-failed"]  # no staging folder left


def test_a_bug_in_a_chapter_keeps_its_traceback(study):
    write_stub(study.notebooks, "02_attribution", "raise RuntimeError('a bug')")
    with pytest.raises(runner.ChapterFailed) as failure:
        study.kn("run", str(study.params))
    assert not failure.value.bad_input and failure.value.ename == "RuntimeError"
    assert failure.value.notebook == study.run_dir / "failed" / "02_attribution.ipynb"


def test_the_console_command_prints_one_line_and_exits_2(study):
    """The real process: nothing else on stderr (the kernel's own start-up log included), status 2."""
    write_stub(study.notebooks, "01_data_adaptation",
               "class UnknownModel(ValueError):\n    pass\n\nraise UnknownModel(\"unknown model 'nope'\")")
    command = [sys.executable, "-m", "kn", "run", str(study.params), "--no-book", "--book-root", str(study.root),
               "--notebooks", str(study.notebooks)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=study.root, timeout=300)
    assert (result.returncode, result.stderr) == (2, "kn: error: 01_data_adaptation: unknown model 'nope'\n")
    assert "[01_data_adaptation] failed after" in result.stdout
    nothing_left(study)
    result = subprocess.run(command[:3] + ["chapter", str(study.params), "4_land"], capture_output=True, text=True,
                            cwd=study.root, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "kn: error: unknown chapter '4_land'; chapters: " + ", ".join(runner.CHAPTERS)]


# --- overrides ----------------------------------------------------------------------------------------------------
def test_override_values_are_read_as_yaml():
    parsed = runner.parse_overrides([("land_threshold", "2"), ("coarse_threshold", "0.3"), ("n_relations", "null"),
                                     ("relations", "[P36, P103]"), ("edit_scaled", "true"), ("model", "gpt2")])
    assert parsed == {"land_threshold": 2, "coarse_threshold": 0.3, "n_relations": None,
                      "relations": ["P36", "P103"], "edit_scaled": True, "model": "gpt2"}
    params = runner.check_params(ROOT / "params" / "smoke.yaml", {"land_threshold": 2, "relations": None})
    assert params.land_threshold == 2.0 and isinstance(params.land_threshold, float) and params.relations is None


def test_overrides_reach_the_chapter_and_are_recorded(study, capsys):
    assert study.kn("run", str(study.params)) == 0
    assert study.kn("chapter", str(study.params), "2", "-p", "land_threshold", "2", "-p", "relations", "[P36, P103]") == 0
    run = study.run_dir
    assert json.loads((run / "overrides.json").read_text()) == {
        "01_data_adaptation": {}, "02_attribution": {"land_threshold": 2, "relations": ["P36", "P103"]}}
    # chapter 2 ran twice (0.5, then 2.0); chapter 1 once: `kn chapter` re-executes only the chapters named
    assert (run / "executed-02_attribution.txt").read_text().split() == ["0.5", "2.0"]
    assert (run / "executed-01_data_adaptation.txt").read_text().split() == ["0.5"]
    assert set(json.loads((run / "timings.json").read_text())) == {"01_data_adaptation", "02_attribution"}
    page = nbformat.read(study.book_dir / "02_attribution.ipynb", as_version=4)
    injected = [c for c in page.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "overrides = {\"land_threshold\": 2, \"relations\": [\"P36\", \"P103\"]}" in injected[0].source
    assert "overrides land_threshold=2, relations=['P36', 'P103']" in capsys.readouterr().out


def test_kn_chapter_04_with_an_override_after_the_default_run_re_executes_chapter_4_only(study, capsys):
    """The issue's check, on stub chapters named like the real ones: `kn run`, then
    `kn chapter PARAMS 04 -p land_threshold 2.0` executes chapter 4 alone, with the override, and records it."""
    for chapter in runner.CHAPTERS:
        write_stub(study.notebooks, chapter)
    assert study.kn("run", str(study.params)) == 0
    pages = {c: (study.book_dir / f"{c}.ipynb").read_text() for c in runner.CHAPTERS}
    capsys.readouterr()
    assert study.kn("chapter", str(study.params), "04", "-p", "land_threshold", "2.0") == 0
    out = capsys.readouterr().out
    assert {line.split("]")[0] + "]" for line in out.splitlines()} == {"[04_land]"}
    for chapter in runner.CHAPTERS:
        ran = (study.run_dir / f"executed-{chapter}.txt").read_text().split()
        assert ran == (["0.5", "2.0"] if chapter == "04_land" else ["0.5"])
        changed = (study.book_dir / f"{chapter}.ipynb").read_text() != pages[chapter]
        assert changed == (chapter == "04_land")
    assert json.loads((study.run_dir / "overrides.json").read_text())["04_land"] == {"land_threshold": 2.0}
    assert "04_land ran with land_threshold=2.0" in (study.book_dir / "04_land.ipynb").read_text()


LINEAGE = """\
import pandas as pd
from kn.base.rundir import RunFolder

folder = RunFolder(run, chapter=CHAPTER)  # as kn.book.report.open_chapter opens it
if CHAPTER == "01_data_adaptation":
    folder.write_table("t", pd.DataFrame({"v": [cfg.land_threshold]}))
else:
    folder.read_table("t")
folder.record_consumption("stub.yaml")
"""


def test_kn_names_the_chapters_a_re_run_left_stale_and_run_from_refreshes_them(study, capsys):
    """`kn chapter` re-runs chapter 1 with another output: kn names chapter 2 stale, with the command; `kn run --from 02`
    re-runs chapter 2 alone, and nothing is stale any more."""
    for chapter in ("01_data_adaptation", "02_attribution"):
        write_stub(study.notebooks, chapter, LINEAGE)
    assert study.kn("run", str(study.params)) == 0
    assert "[stale]" not in capsys.readouterr().out
    assert study.kn("chapter", str(study.params), "01", "-p", "land_threshold", "2") == 0
    out = capsys.readouterr().out
    assert "[stale] 02_attribution was computed from an older output of chapter 1 (01_data_adaptation): t\n" in out
    assert f"[stale] refresh: kn chapter {study.params} 02\n" in out
    assert study.kn("run", str(study.params), "--from", "02") == 0
    out = capsys.readouterr().out
    assert "[02_attribution] done" in out and "[01_data_adaptation]" not in out and "[stale]" not in out
    assert (study.run_dir / "executed-01_data_adaptation.txt").read_text().split() == ["0.5", "2.0"]
    assert (study.run_dir / "executed-02_attribution.txt").read_text().split() == ["0.5", "0.5"]
    assert study.kn("run", str(study.params), "--from", "9") == 2
    one_error_line(capsys, "unknown chapter '9'")


def test_the_book_build_drops_failed_pages_of_older_runners_and_empty_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    runs = tmp_path / "book" / "runs"
    (runs / "empty").mkdir(parents=True)
    good, bad = runs / "m" / "01_data_adaptation.ipynb", runs / "m" / "02_attribution.ipynb"
    good.parent.mkdir()
    for path, exception in ((good, None), (bad, True)):
        nb = nbformat.v4.new_notebook()
        nb.metadata["papermill"] = {"exception": exception}
        nbformat.write(nb, path)
    done = build.prune_book_runs(tmp_path)
    assert len(done) == 2 and sorted(p.name for p in runs.iterdir()) == ["m"]
    assert [p.name for p in (runs / "m").iterdir()] == ["01_data_adaptation.ipynb"]
    assert (tmp_path / "kn-failed" / "m" / "02_attribution.ipynb").is_file()


# --- what reaches the book ----------------------------------------------------------------------------------------
def test_pages_hide_the_parameter_cells_and_show_no_machine_path(study):
    assert study.kn("run", str(study.params)) == 0
    for chapter in ("01_data_adaptation", "02_attribution"):
        text = (study.book_dir / f"{chapter}.ipynb").read_text()
        page = nbformat.reads(text, as_version=4)
        tagged = {tag for c in page.cells for tag in c.metadata.get("tags", [])}
        assert {"parameters", "injected-parameters"} <= tagged
        for cell in page.cells:
            tags = cell.metadata.get("tags", [])
            if "parameters" in tags or "injected-parameters" in tags:
                assert "remove-cell" in tags
        injected = next(c for c in page.cells if "injected-parameters" in c.metadata.get("tags", []))
        assert 'params_file = "params/stub.yaml"' in injected.source and 'progress_file = ""' in injected.source
        assert str(study.root) not in text and "/tmp" not in text
        assert page.cells[0].source.startswith(f"# Stub {chapter} (smollm2-135m)")
    assert sorted(p.name for p in study.book_dir.iterdir()) == ["01_data_adaptation.ipynb", "02_attribution.ipynb"]


def test_a_failing_later_chapter_keeps_the_previous_good_page(study, capsys):
    assert study.kn("run", str(study.params)) == 0
    page = study.book_dir / "02_attribution.ipynb"
    good = page.read_text()
    timings = (study.run_dir / "timings.json").read_text()
    write_stub(study.notebooks, "02_attribution",
               "from kn.base.errors import MissingArtifact\nraise MissingArtifact('attribution store is missing: run 02')")
    assert study.kn("chapter", str(study.params), "02_attribution") == 2
    one_error_line(capsys, "02_attribution: attribution store is missing")
    assert page.read_text() == good  # the last good page stays; the failed one is kept aside
    assert (study.run_dir / "timings.json").read_text() == timings
    assert (study.run_dir / "failed" / "02_attribution.ipynb").is_file()
    assert sorted(p.name for p in study.book_dir.iterdir()) == ["01_data_adaptation.ipynb", "02_attribution.ipynb"]
    # fixed: the next good run replaces the page and clears the failed copy
    write_stub(study.notebooks, "02_attribution")
    assert study.kn("chapter", str(study.params), "02") == 0
    assert not (study.run_dir / "failed").exists()


def test_a_failing_chapter_1_of_an_existing_run_keeps_the_run(study, capsys):
    assert study.kn("run", str(study.params)) == 0
    write_stub(study.notebooks, "01_data_adaptation", "raise ValueError('a bug')")
    with pytest.raises(runner.ChapterFailed):
        study.kn("chapter", str(study.params), "01")
    assert (study.run_dir / "timings.json").is_file()
    assert (study.book_dir / "01_data_adaptation.ipynb").is_file()


def test_a_later_chapter_on_a_missing_run_leaves_nothing(study, capsys):
    write_stub(study.notebooks, "02_attribution",
               "from kn.base.errors import MissingArtifact\nraise MissingArtifact('prompts.parquet does not exist: run 01')")
    assert study.kn("chapter", str(study.params), "02") == 2
    one_error_line(capsys, "02_attribution: prompts.parquet does not exist")
    nothing_left(study)


# --- progress -----------------------------------------------------------------------------------------------------
def test_progress_reaches_the_terminal_and_not_the_page(study, capsys):
    assert study.kn("chapter", str(study.params), "01") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[01_data_adaptation] started (1/1): smollm2-135m, params/stub.yaml")
    progress = [line for line in out if line.startswith("[01_data_adaptation] stubwork: ")]
    assert progress[0] == "[01_data_adaptation] stubwork: 0/3 prompts (0%)"
    assert progress[-1].startswith("[01_data_adaptation] stubwork: 3/3 prompts (100%)")
    assert len(progress) == 4  # KN_PROGRESS_SECONDS=0: one line per prompt and the first
    assert out[-1].startswith("[01_data_adaptation] done in 0:")
    text = (study.book_dir / "01_data_adaptation.ipynb").read_text()
    page = nbformat.reads(text, as_version=4)
    outputs = json.dumps([c.get("outputs", []) for c in page.cells])
    assert "stubwork:" not in outputs and "prompts (" not in outputs  # the cells' outputs never show a bar
    assert "01_data_adaptation ran with land_threshold=0.5" in outputs


def test_progress_rate_limit_holds_through_the_runner(study, capsys, monkeypatch):
    monkeypatch.setenv("KN_PROGRESS_SECONDS", "1000")
    assert study.kn("chapter", str(study.params), "01") == 0
    out = capsys.readouterr().out
    assert [line.split(",")[0] for line in out.splitlines() if "stubwork" in line] == [
        "[01_data_adaptation] stubwork: 0/3 prompts (0%)", "[01_data_adaptation] stubwork: 3/3 prompts (100%)"]


# --- the other commands -------------------------------------------------------------------------------------------
def test_book_and_bench(monkeypatch, capsys, tmp_path):
    built = []
    monkeypatch.setattr(build, "build_book", lambda root=None: built.append(root) or tmp_path / "index.html")
    assert cli.main(["book"]) == 0 and built == [None]
    assert "[book] built in" in capsys.readouterr().out

    calls = []
    monkeypatch.setattr(cli.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    assert cli.main(["bench", "--prompts", "2", "--steps", "4"]) == 0
    assert cli.main(["bench", "--", "--help"]) == 0
    assert [c[1:] for c in calls] == [[str(ROOT / cli.BENCH_SCRIPT), "--prompts", "2", "--steps", "4"],
                                      [str(ROOT / cli.BENCH_SCRIPT), "--help"]]
    assert cli.main(["bench", "--help"]) == 0 and "usage: kn bench" in capsys.readouterr().out
    assert cli.main(["chapter", "--help"]) == 0 and "-p KEY VALUE" in capsys.readouterr().out


# --- kn submit: bad input before anything is written or submitted (the cluster itself: tests/book/test_slurm.py) -----------
@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch and scontrol on the PATH that only record that they were called, and a clean git checkout as the
    project root."""
    bin_dir, called = tmp_path / "bin", tmp_path / "called"
    bin_dir.mkdir()
    for name in ("sbatch", "scontrol"):
        refusal = "echo 'sbatch: error: invalid partition specified: nope' >&2\n" if name == "sbatch" else ""
        (bin_dir / name).write_text(f"#!/bin/sh\necho {name} >> {called}\n{refusal}exit 1\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    repo = tmp_path / "checkout"
    repo.mkdir()
    (repo / "tracked.txt").write_text("committed\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@localhost"]
    for args in (["init", "-q"], ["add", "tracked.txt"], ["commit", "-q", "-m", "one"]):
        subprocess.run([*git, *args], check=True)
    monkeypatch.setattr(submit_module, "project_root", lambda: repo)
    return repo, called


def nothing_submitted(study, called):
    assert not called.exists() and not study.run_dir.exists()


def test_submit_without_sbatch_says_what_it_needs(study, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no SLURM client commands
    assert cli.main(["submit", str(study.params), "--shards", "2"]) == 2
    one_error_line(capsys, "sbatch not found: kn submit needs a SLURM cluster's client commands")
    assert not study.run_dir.exists()


@pytest.mark.parametrize("args, needle", [
    (["--shards", "0"], "--shards 0: at least 1"),
    (["--shards", "2", "--cpus-per-task", "0"], "--cpus-per-task 0: at least 1"),
    (["--shards", "2", "--gpus-per-task", "-1"], "--gpus-per-task -1: 0 or more"),
])
def test_submit_bad_counts(study, capsys, fake_slurm, args, needle):
    assert cli.main(["submit", str(study.params), *args]) == 2
    one_error_line(capsys, needle)
    nothing_submitted(study, fake_slurm[1])


def test_submit_refuses_uncommitted_changes_unless_allowed(study, capsys, fake_slurm):
    repo, called = fake_slurm
    (repo / "tracked.txt").write_text("changed\n")
    assert cli.main(["submit", str(study.params), "--shards", "2"]) == 2
    one_error_line(capsys, "uncommitted changes to 1 tracked file(s) (tracked.txt)", "--allow-dirty")
    nothing_submitted(study, called)
    # allowed: the snapshot is HEAD's, and it says so (the fake sbatch then refuses the first job)
    assert cli.main(["submit", str(study.params), "--shards", "2", "--allow-dirty"]) == 2
    captured = capsys.readouterr()
    assert "the jobs run HEAD" in captured.out and "without them" in captured.out
    (snapshot,) = (study.run_dir / "slurm").glob("code-*")
    assert (snapshot / "tracked.txt").read_text() == "committed\n"


def test_submit_outside_a_git_checkout(study, capsys, fake_slurm, monkeypatch, tmp_path):
    monkeypatch.setattr(submit_module, "project_root", lambda: tmp_path / "bin")
    assert cli.main(["submit", str(study.params), "--shards", "2"]) == 2
    one_error_line(capsys, "is not a git checkout", "pins the code by its git commit")
    nothing_submitted(study, fake_slurm[1])


@pytest.mark.parametrize("device, gpus, needle", [
    ("cuda", "0", "device is cuda, but no GPU is requested: pass --gpus-per-task 1"),
    ("cpu", "1", "device is cpu, but --gpus-per-task 1 asks for GPUs"),
])
def test_submit_device_and_gpus_must_agree(study, capsys, fake_slurm, device, gpus, needle):
    study.params.write_text(study.params.read_text() + f"device: {device}\n")
    assert cli.main(["submit", str(study.params), "--shards", "2", "--gpus-per-task", gpus]) == 2
    one_error_line(capsys, needle)
    nothing_submitted(study, fake_slurm[1])


def test_submit_refused_by_sbatch_is_one_line(study, capsys, fake_slurm, monkeypatch):
    """sbatch's own refusal (a fake sbatch here) is reported in one line, exit 2: the run has no prompts yet, so
    chapter 1's job is the first one submitted."""
    (study.run_dir).mkdir(parents=True)
    assert cli.main(["submit", str(study.params), "--shards", "2", "--partition", "nope"]) == 2
    one_error_line(capsys, "sbatch refused the chapter 1 job: sbatch: error: invalid partition specified: nope")
    assert fake_slurm[1].read_text().split() == ["sbatch"]
