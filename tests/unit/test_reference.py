"""kn.book.reference on hand-made run folders: what a reference run holds and leaves out, the numbers `kn verify`
compares (a changed number or verdict is named with both values; timings and prose are not), the code hash of a
chapter, and the README's Results block."""

import dataclasses
import hashlib
import json
import math
import shutil
import subprocess

import pandas as pd
import pytest
from kn.base.errors import MissingArtifact, ParameterError
from kn.base.rundir import RunFolder
from kn.base.stats import Interval, Rate
from kn.book import cli, reference, reference_book
from kn.book.summaries import (
    AttributionSummary,
    Claim,
    DataSummary,
    EditingSummary,
    LandSummary,
    OverlapSummary,
)

TORCH = "2.13.0+cpu"


def interval(mean, spread=0.1, n=12):
    return Interval(mean, mean - spread, mean + spread, n, mean)


def summaries():
    """One record per chapter as the chapters write them (kn.book.summaries), with timings, prose and verdicts."""
    data = DataSummary(
        model="HuggingFaceTB/SmolLM2-135M", model_identity="smollm2@1", counts={"relations": 2, "source": "pararel"},
        population="all", known_rule="", candidate_facts=40, known_candidate_facts=30, dropped_relations=[],
        sample_relations=2, sample_facts_train=6, sample_facts_test=2, sample_prompts=80, shared_prompt_rows=0,
        shared_prompts_split_mismatch=0, top1_accuracy=interval(0.25), multi_token_answer_share=0.1,
        claims=[Claim("split", "no pair on both sides", None, True)], seconds=12.5, top1_rate=Rate(20, 80, 0.16, 0.36))
    attribution = AttributionSummary(
        prompts=80, stored=80, computed_now=80, seconds_per_prompt=1.7, threads=2, batch_prompts=2, rule="right",
        steps=20, neuron="ffn_out_input", mean_coarse_size=21.5, median_coarse_size=20.0,
        completeness_mean_abs_gap=0.01, completeness_mean_delta=0.002, claims=[], seconds=136.0)
    overlap = OverlapSummary(
        table4_test={"N_s": interval(21.0, 2.0), "R_so": interval(0.31, 0.05)},
        table4_all={"N_s": interval(22.0, 2.0)}, r_uo_eq5_pooled_test=0.2, refined_per_fact=interval(3.5),
        intra_relation=1.1, inter_relation=0.1, p_used={"P36": 0.7}, refined_size={"P36": 3.0}, size_range_missed=[],
        sweep=[{"p": 0.5, "size": 4.0, "seconds": 3.2}, {"p": 0.7, "size": 3.0, "seconds": 3.1}],
        claims=[Claim("paraphrases overlap little", "R_so is 31%", interval(0.31, 0.05), True)], seconds=40.0)
    land = LandSummary(
        n_layers=30, n_neurons=1536, rank=64, n_parameters=5_898_240, train_pairs=540, threshold=2.0,
        threshold_reason="the paper's ratio", validation_sweep=[{"threshold": 2.0, "R_Lo": 0.5, "elapsed": 1.0}],
        final_loss=0.25, table7={"N_s": interval(21.0, 2.0), "R_so": interval(0.31, 0.05),
                                 "N_L": interval(27.5, 3.0), "R_Lo": interval(0.55, 0.08)},
        detectors={"land": {"size": interval(27.5, 3.0)}}, constant_k=27, learning_curve=[], wordings={},
        claims=[Claim("LAND's overlap, at the paper's read-out", "R_Lo is 55%, below the paper's 96.6%",
                      interval(0.55, 0.08), False),
                Claim("LAND beats the relation prior", "not distinguishable", interval(0.01, 0.05), None)],
        seconds=300.0, operating_rule="paper_ratio")
    editing = EditingSummary(
        facts=2, success={"LAND": {"Same": interval(0.3), "Related": interval(0.2), "Unrelated": interval(0.01, 0.01)}},
        changed_same={"LAND": interval(0.4)}, ppl_within_relative={}, ppl_across_relative={}, ppl_within_change={},
        ppl_across_change={}, erasing=[], claims=[], seconds=90.0)
    return [data, attribution, overlap, land, editing]


CHAPTERS = {"01_data_adaptation": 12.5, "02_attribution": 136.0, "03_overlap": 40.0, "04_land": 300.0,
            "06_editing": 90.0}


def make_run(path, records=None):
    """A run folder as the runner leaves it: summaries, small tables and records, the attribution store, LAND's
    weights, logs, a failed notebook, a lock and a table too big to publish."""
    run = RunFolder(path)
    for summary in records or summaries():
        summary.write(run)
    run.write_table("prompts", pd.DataFrame({"prompt": ["a", "b"], "answer": ["x", "y"]}))
    (path / "big.parquet").write_bytes(b"\0" * (reference.MAX_TABLE_BYTES + 1))
    (path / "timings.json").write_text(json.dumps(CHAPTERS))
    env = {"python": "3.11.9", "kn_version": "0.1.0", "packages": {"torch": TORCH, "transformers": "5.24.0"},
           "commit": None, "dirty": None}
    (path / "environment.json").write_text(json.dumps({c: env for c in CHAPTERS}))
    (path / "params.json.lock").write_text("")
    for folder, name in (("attribution", "part-0.npz"), ("land", "detector.safetensors"), ("logs", "04_land.log"),
                         ("failed", "05_amplification.ipynb"), ("slurm", "submit.json")):
        (path / folder).mkdir()
        (path / folder / name).write_text("x")
    return path


def make_checkout(root):
    """A checkout in miniature: a lock, notebooks importing a small kn library."""
    (root / "requirements").mkdir(parents=True)
    (root / "requirements" / "lock-cpu.txt").write_text("torch==2.13.0+cpu \\\n    --hash=sha256:00\n")
    lib = root / "lib" / "kn"
    (lib / "base").mkdir(parents=True)
    (lib / "book").mkdir()
    for path, text in {"__init__.py": "", "base/__init__.py": "", "base/stats.py": "X = 1\n",
                       "base/unrelated.py": "Y = 2\n", "book/__init__.py": "",
                       "book/land.py": "from kn.base import stats\nfrom ..base.stats import X\n"}.items():
        (lib / path).write_text(text)
    (root / "notebooks").mkdir()
    for chapter in CHAPTERS:
        notebook(root / "notebooks" / f"{chapter}.ipynb", ["import kn.book.land as land\n%matplotlib inline", "1 + 1"])
    return root


def notebook(path, cells, output="2"):
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# A chapter"}] +
          [{"cell_type": "code", "metadata": {}, "source": source, "execution_count": 1,
            "outputs": [{"output_type": "execute_result", "data": {"text/plain": output}}]} for source in cells],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))


def pages(path):
    path.mkdir(parents=True)
    for chapter in CHAPTERS:
        notebook(path / f"{chapter}.ipynb", ["x = 1"])
    return path


@pytest.fixture()
def published(tmp_path):
    """A run, and its reference published from a miniature checkout: (run folder, reference folder)."""
    run = make_run(tmp_path / "runs" / "smoke")
    root = make_checkout(tmp_path / "checkout")
    target = reference.publish(run, pages(tmp_path / "book" / "runs" / "smoke"), tmp_path / "reference" / "smoke",
                               command="kn reference runs/smoke", params_file="params/smoke.yaml", root=root)
    return run, target


def edit(path, name, change):
    """Change the summary record ``name`` of a run folder in place, as another run's would differ."""
    record = json.loads((path / name).read_text())
    change(record)
    (path / name).write_text(json.dumps(record))


def rerun(tmp_path, run):
    copy = tmp_path / "runs" / "again" / "smoke"
    shutil.copytree(run, copy)
    return copy


# --- publishing ------------------------------------------------------------------------------------------------------
def test_publish_keeps_the_small_records_and_pages_and_leaves_out_the_store_weights_and_big_tables(published, tmp_path):
    run, target = published
    record = {p.name for p in (target / "record").iterdir()}
    assert {"data_summary.json", "land_summary.json", "prompts.parquet", "timings.json", "environment.json"} <= record
    assert "big.parquet" not in record and not any(name.endswith(".lock") for name in record)
    assert not {"attribution", "land", "logs", "failed", "slurm"} & {p.name for p in target.rglob("*")}
    assert {p.name for p in (target / "pages").iterdir()} == {f"{c}.ipynb" for c in CHAPTERS}
    provenance = json.loads((target / "provenance.json").read_text())
    lock = (tmp_path / "checkout" / "requirements" / "lock-cpu.txt").read_bytes()
    assert provenance["lock_sha256"] == hashlib.sha256(lock).hexdigest()
    assert provenance["run"] == "smoke" and provenance["params_file"] == "params/smoke.yaml"
    assert provenance["command"] == "kn reference runs/smoke" and provenance["date"].endswith("+00:00")
    assert provenance["commit"] is None  # the miniature checkout is no git repository
    assert provenance["versions"] == {"python": "3.11.9", "kn": "0.1.0", "torch": TORCH, "transformers": "5.24.0"}
    assert provenance["chapter_seconds"] == CHAPTERS and set(provenance["chapter_code"]) == set(CHAPTERS)
    assert provenance["left_out"] == ["big.parquet (2.0 MiB)"]
    assert set(provenance["machine"]["flags"] or []) <= set(reference.NUMERIC_FLAGS)
    assert provenance["size_bytes"] == sum(p.stat().st_size for p in target.rglob("*")
                                           if p.is_file() and p.name != "provenance.json")


def test_publish_replaces_a_reference_whole_and_leaves_nothing_beside_it(published, tmp_path):
    run, target = published
    (target / "record" / "from_before.json").write_text("{}")
    (run / "new_table.json").write_text("{}")
    reference.publish(run, tmp_path / "book" / "runs" / "smoke", target, command="kn reference", params_file="",
                      root=tmp_path / "checkout")
    names = {p.name for p in (target / "record").iterdir()}
    assert "new_table.json" in names and "from_before.json" not in names
    assert [p.name for p in target.parent.iterdir()] == ["smoke"]  # no staging or old folder left


def test_publish_refuses_a_run_without_chapter_1_or_with_stale_chapters(tmp_path):
    root = make_checkout(tmp_path / "checkout")
    site = pages(tmp_path / "pages")
    unfinished = make_run(tmp_path / "runs" / "unfinished")
    (unfinished / "timings.json").write_text(json.dumps({"02_attribution": 1.0}))
    with pytest.raises(ParameterError, match="chapter 1"):
        reference.publish(unfinished, site, tmp_path / "ref" / "a", command="", params_file="", root=root)
    stale = make_run(tmp_path / "runs" / "stale")
    first = RunFolder(stale, chapter="01_data_adaptation")
    first.write_table("objects", pd.DataFrame({"v": [1]}))
    third = RunFolder(stale, chapter="03_overlap")
    third.read_table("objects")
    third.record_consumption("params/smoke.yaml")
    first.write_table("objects", pd.DataFrame({"v": [2]}))  # chapter 1 again, with another result
    with pytest.raises(ParameterError, match="stale chapters \\(03_overlap\\).*kn chapter params/smoke.yaml 03"):
        reference.publish(stale, site, tmp_path / "ref" / "b", command="", params_file="", root=root)
    assert not (tmp_path / "ref").exists() or not any((tmp_path / "ref").iterdir())


def test_publish_refuses_a_chapter_made_by_a_commit_whose_code_differs_now(tmp_path):
    root = make_checkout(tmp_path / "checkout")
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "one"], check=True)
    commit = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    run = make_run(tmp_path / "runs" / "smoke")
    env = json.loads((run / "environment.json").read_text())
    (run / "environment.json").write_text(json.dumps({c: {**e, "commit": commit} for c, e in env.items()}))
    notebook(root / "notebooks" / "03_overlap.ipynb", ["import kn.book.land as land\n%matplotlib inline", "1 + 1"],
             output="another output")  # outputs are not code: still publishable
    target = reference.publish(run, pages(tmp_path / "pages"), tmp_path / "ref" / "smoke", command="",
                               params_file="", root=root)
    provenance = json.loads((target / "provenance.json").read_text())
    assert provenance["commit"] == commit and provenance["dirty"] is True
    assert provenance["chapter_code"]["04_land"]["commit"] == commit
    (root / "lib" / "kn" / "base" / "stats.py").write_text("X = 3\n")
    with pytest.raises(ParameterError, match="01_data_adaptation was made by commit .*lib/kn/base/stats.py"):
        reference.publish(run, tmp_path / "pages", tmp_path / "ref" / "smoke", command="", params_file="", root=root)


# --- the numbers -----------------------------------------------------------------------------------------------------
def test_numbers_name_every_result_and_leave_out_timings_and_prose(tmp_path):
    found = reference.numbers(make_run(tmp_path / "run"))
    assert found["land_summary.json:table7.N_L.mean"] == 27.5 and found["land_summary.json:table7.N_L.lo"] == 24.5
    assert found["land_summary.json:claims[LAND's overlap, at the paper's read-out].holds"] == 0.0
    assert math.isnan(found["land_summary.json:claims[LAND beats the relation prior].holds"])  # None: undecided
    assert found["data_summary.json:claims[split].holds"] == 1.0 and found["data_summary.json:top1_rate.k"] == 20
    assert found["overlap_summary.json:sweep[1].size"] == 3.0
    assert found["attribution_summary.json:prompts"] == 80
    assert not [name for name in found if any(word in name for word in ("seconds", "threads", "elapsed",
                                                                         "computed_now", "batch_prompts"))]
    assert not [name for name in found if "sentence" in name or name.endswith(".model")]
    assert all(name.split(":")[0].endswith("_summary.json") for name in found)


def test_verify_finds_a_faithful_rerun_equal_whatever_its_timings_and_prose(published, tmp_path, capsys):
    run, target = published
    again = rerun(tmp_path, run)
    edit(again, "land_summary.json", lambda r: r.update(seconds=1.0, threshold_reason="other words"))
    edit(again, "attribution_summary.json", lambda r: r.update(seconds_per_prompt=0.2, threads=16, computed_now=0,
                                                               batch_prompts=8))
    edit(again, "overlap_summary.json", lambda r: r["sweep"][0].update(seconds=99.0))
    result = reference.verify(again, target)
    assert result.ok and result.equal == len(reference.numbers(target / "record")) > 50
    assert cli.main(["verify", str(again), "--reference", str(target)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"reproduces the reference: {result.equal} numbers equal"


def test_verify_names_a_changed_number_with_both_values(published, tmp_path, capsys):
    run, target = published
    again = rerun(tmp_path, run)
    edit(again, "land_summary.json", lambda r: r["table7"]["N_L"]["__interval__"].update(mean=27.75))
    result = reference.verify(again, target)
    assert not result.ok
    assert result.differ == [("land_summary.json:table7.N_L.mean", 27.5, 27.75, pytest.approx(0.25 / 27.75))]
    assert cli.main(["verify", str(again), "--reference", str(target)]) == 1
    out = capsys.readouterr().out
    assert ("land_summary.json:table7.N_L.mean: reference 27.5, this run 27.75 (relative difference 0.00901)"
            in out.splitlines())


def test_verify_sees_a_verdict_that_flips_or_becomes_undecided(published, tmp_path):
    run, target = published
    again = rerun(tmp_path, run)

    def flip(record):
        record["claims"][0]["holds"] = True
        record["claims"][1]["holds"] = False

    edit(again, "land_summary.json", flip)
    edit(again, "overlap_summary.json", lambda r: r["claims"][0].update(holds=None))
    differ = {name: (a, b) for name, a, b, _ in reference.verify(again, target).differ}
    assert differ["land_summary.json:claims[LAND's overlap, at the paper's read-out].holds"] == (0.0, 1.0)
    assert math.isnan(differ["land_summary.json:claims[LAND beats the relation prior].holds"][0])
    assert math.isnan(differ["overlap_summary.json:claims[paraphrases overlap little].holds"][1])


def test_verify_says_how_many_verdicts_agree_when_numbers_differ(published, tmp_path, capsys):
    """A run on another CPU instruction set differs in many numbers at rounding level; what a reader must learn first
    is whether any claim's verdict moved: the count of equal verdicts, and the names of those that differ."""
    run, target = published
    again = rerun(tmp_path, run)
    edit(again, "land_summary.json", lambda r: r["table7"]["N_L"]["__interval__"].update(mean=27.75))
    result = reference.verify(again, target)
    n = result.verdicts_compared
    assert n == 4 and result.verdicts_differ == []  # data, overlap and land's two claims
    assert f"verdicts: {n} of {n} equal" in result.lines()
    edit(again, "land_summary.json", lambda r: r["claims"][1].update(holds=True))
    result = reference.verify(again, target)
    assert result.verdicts_differ == ["land_summary.json:claims[LAND beats the relation prior].holds"]
    assert cli.main(["verify", str(again), "--reference", str(target)]) == 1
    assert (f"verdicts: {n - 1} of {n} equal; these differ: land_summary.json:claims[LAND beats the relation prior]."
            "holds") in capsys.readouterr().out.splitlines()


def test_the_results_page_says_per_run_whether_it_reproduces_its_reference(published, tmp_path):
    run, target = published
    same = rerun(tmp_path, run)
    moved = tmp_path / "runs" / "moved" / "smoke"
    shutil.copytree(run, moved)
    edit(moved, "land_summary.json", lambda r: r["claims"][1].update(holds=True))
    other = tmp_path / "runs" / "other"
    shutil.copytree(run, other)
    table = reference_book.reproduction_table({"smoke": same, "other": other}, target.parent)
    assert table.loc["smoke", "against the reference"].startswith("reproduces the reference: ")
    assert table.loc["other", "against the reference"] == "no reference run of this name"
    row = reference_book.reproduction_table({"smoke": moved}, target.parent).loc["smoke"]
    assert row["against the reference"].startswith("does not reproduce the reference: 1 numbers differ")
    assert row["against the reference"].endswith("verdicts: 3 of 4 equal; these differ: "
                                                 "land_summary.json:claims[LAND beats the relation prior].holds")


def test_verify_counts_missing_and_extra_numbers(published, tmp_path, capsys):
    run, target = published
    again = rerun(tmp_path, run)
    (again / "editing_summary.json").unlink()
    edit(again, "land_summary.json", lambda r: r["detectors"]["land"].update(within={"__interval__": {
        "mean": 0.5, "lo": 0.4, "hi": 0.6, "n": 3, "median": 0.5, "n_clusters": 0}}))
    result = reference.verify(again, target)
    assert not result.ok and result.differ == []
    assert "editing_summary.json:success.LAND.Same.mean" in result.missing
    assert "land_summary.json:detectors.land.within.mean" in result.extra
    assert cli.main(["verify", str(again), "--reference", str(target)]) == 1
    out = capsys.readouterr().out
    assert f"{len(result.missing)} numbers of the reference are missing from this run" in out
    assert f"{len(result.extra)} numbers of this run are not in the reference" in out


def test_a_tolerance_is_used_only_when_asked_and_says_why(published, tmp_path, capsys):
    run, target = published
    again = rerun(tmp_path, run)
    edit(again, "overlap_summary.json", lambda r: r.update(intra_relation=1.1 * (1 + 1e-9)))
    env = json.loads((again / "environment.json").read_text())
    (again / "environment.json").write_text(json.dumps({c: {**e, "packages": {**e["packages"], "torch": "2.12.0"}}
                                                        for c, e in env.items()}))
    assert not reference.verify(again, target).ok  # exact by default
    result = reference.verify(again, target, rtol=1e-6)
    assert result.ok and result.close == 1
    assert result.environment_differs == [f"torch: reference {TORCH}, this run 2.12.0"]
    assert reference.tolerance_reason(result) == "--rtol 1e-06: a different torch build"
    assert cli.main(["verify", str(again), "--reference", str(target), "--rtol", "1e-6"]) == 0
    out = capsys.readouterr().out
    assert "--rtol 1e-06: a different torch build" in out and f"environment: torch: reference {TORCH}" in out


def test_verify_without_a_run_folder_or_a_reference_is_bad_input(published, tmp_path, capsys):
    run, target = published
    assert cli.main(["verify", str(tmp_path / "runs" / "nothing"), "--reference", str(target)]) == 2
    assert capsys.readouterr().err.startswith("kn: error: no run folder")
    assert cli.main(["verify", str(run), "--reference", str(tmp_path / "reference" / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kn: error: no reference run at") and len(err.strip().splitlines()) == 1
    with pytest.raises(MissingArtifact):
        reference.verify(run, tmp_path / "elsewhere")


# --- the code a chapter depends on -----------------------------------------------------------------------------------
def test_the_code_hash_follows_imports_and_ignores_outputs_and_unrelated_modules(tmp_path):
    root = make_checkout(tmp_path)
    nb, lib = root / "notebooks" / "04_land.ipynb", root / "lib"
    first = reference.chapter_code(nb, lib)
    assert first["files"] == ["lib/kn/__init__.py", "lib/kn/base/__init__.py", "lib/kn/base/stats.py",
                              "lib/kn/book/__init__.py", "lib/kn/book/land.py", "notebooks/04_land.ipynb"]
    (lib / "kn" / "base" / "unrelated.py").write_text("Y = 3\n")
    notebook(nb, ["import kn.book.land as land\n%matplotlib inline", "1 + 1"], output="another output")
    assert reference.chapter_code(nb, lib) == first
    (lib / "kn" / "base" / "stats.py").write_text("X = 2\n")  # imported through kn.book.land: a change counts
    second = reference.chapter_code(nb, lib)
    assert second["hash"] != first["hash"]
    notebook(nb, ["import kn.book.land as land\n%matplotlib inline", "1 + 2"])
    assert reference.chapter_code(nb, lib)["hash"] != second["hash"]


def test_stale_code_lists_the_reference_chapters_whose_code_changed(published, tmp_path, capsys):
    _, target = published
    root = tmp_path / "checkout"
    assert reference.stale_code(target, root / "notebooks", root / "lib") == {}
    recorded = json.loads((target / "provenance.json").read_text())["chapter_code"]
    notebook(root / "notebooks" / "03_overlap.ipynb", ["import kn.base.unrelated"])
    stale = reference.stale_code(target, root / "notebooks", root / "lib")
    assert list(stale) == ["03_overlap"] and stale["03_overlap"][1] == recorded["03_overlap"]["hash"]
    now = reference.chapter_code(root / "notebooks" / "03_overlap.ipynb", root / "lib")["hash"]
    assert stale["03_overlap"][2] == now != recorded["03_overlap"]["hash"]
    assert cli.main(["verify", "runs/smoke", "--reference", str(target), "--stale",
                     "--notebooks", str(root / "notebooks")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "03_overlap: made by an older commit (unknown); its code changed since" in lines


def test_kn_reference_publishes_with_the_command_as_typed(tmp_path, capsys):
    run = make_run(tmp_path / "runs" / "smoke")
    target = tmp_path / "reference" / "smoke"
    assert cli.main(["reference", str(run), "--pages", str(pages(tmp_path / "pages")), "--target", str(target)]) == 0
    provenance = json.loads((target / "provenance.json").read_text())
    assert provenance["command"].startswith("kn reference ") and provenance["command"].endswith(str(target))
    assert "[reference] left out (over 2 MiB): big.parquet" in capsys.readouterr().out
    assert cli.main(["reference", str(tmp_path / "runs" / "none"), "--pages", str(tmp_path / "pages")]) == 2


# --- the README ------------------------------------------------------------------------------------------------------
def test_the_results_block_sets_the_papers_numbers_beside_ours(published):
    _, target = published
    text = reference.results_markdown(target.parent)
    assert "**Reference run `smoke`** (HuggingFaceTB/SmolLM2-135M)" in text
    assert "| LAND, GPT-2 | 23.79 | 21.0% | 27.93 | 96.6% |" in text  # LAND's Tables 4 and 7
    assert "27.50 [24.50, 30.50]" in text and "55.0% [47.0%, 63.0%]" in text  # ours, mean [lo, hi]
    assert "| LAND, GPT-2 | LAND | 25.8% | 21.6% | 2.9% |" in text  # Table 10
    assert "LAND, GPT-2: 96.6%; LAND, Llama-3.2-1B: 97.7% | 55.0% [47.0%, 63.0%] | does not hold |" in text
    assert "0.0% of their prompts" in text and "commit unknown" in text


def test_the_readme_check_fails_when_the_block_and_the_references_disagree(published, tmp_path):
    _, target = published
    readme = tmp_path / "README.md"
    readme.write_text(f"# Study\n\n## Results\n{reference.README_START}\nold numbers\n{reference.README_END}\n\nmore\n")
    assert not reference.readme_matches(readme, target.parent)
    reference.update_readme(readme, target.parent)
    assert reference.readme_matches(readme, target.parent)
    assert reference.readme_block(readme.read_text()) == reference.results_markdown(target.parent)
    assert readme.read_text().endswith(f"{reference.README_END}\n\nmore\n")
    edit(target / "record", "land_summary.json", lambda r: r["table7"]["N_L"]["__interval__"].update(mean=30.0))
    assert not reference.readme_matches(readme, target.parent)
    readme.write_text("# Study without a results block\n")
    assert not reference.readme_matches(readme, target.parent)
    with pytest.raises(ParameterError, match="no results block"):
        reference.update_readme(readme, target.parent)


def test_without_reference_runs_the_block_says_so(tmp_path):
    assert reference.results_markdown(tmp_path / "reference").startswith("No reference run is published yet")
    assert dataclasses.is_dataclass(reference.Verification)
