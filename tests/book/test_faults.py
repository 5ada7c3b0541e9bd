"""Faults a long study meets, each asserted through the `kn` command or the store as a user meets it: a full disk (a
real tmpfs when the tests run as root), a second kn on the same run folder (a real second process), a damaged store
part, bad values that used to pass the checks, files from the real world (not UTF-8, a byte-order mark, a prompt past
the model's context), a run on the user's own facts without PARAREL, and the litter of killed or repeated runs.
Each asserts the exact one-line message and that nothing already computed was lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kn.attribution.store import AttributionStore
from kn.base.errors import MissingArtifact
from kn.book import runner
from test_cli import ROOT, study, write_stub  # noqa: F401  (the stub-chapter study fixture)


def _error_line(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# --------------------------------------------------------------------------- a full disk
@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MiB tmpfs, filled to its last few KiB (root only: mounting needs it)."""
    if os.geteuid() != 0:
        pytest.skip("a real full file system needs root to mount a tmpfs (the tests run as root in CI)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_keeps_the_chapters_own_error(study, small_disk, capsys):
    """Chapter 1 fails on a bad facts header with the run folder on a full disk: the header error is what the user
    sees, then that the notebook could not be kept; no truncated notebook is left in failed/."""
    run_dir = small_disk / "runs" / "stub"
    run_dir.mkdir(parents=True)
    (run_dir / "earlier.txt").write_text("computed before\n")
    write_stub(study.notebooks, "01_data_adaptation",  # the disk fills (another process's output), then the error
               f"with open({str(small_disk / 'filler')!r}, 'wb', buffering=0) as out:\n"
               "    try:\n        while True:\n            out.write(bytes(4096))\n    except OSError:\n        pass\n"
               "from kn.base.errors import DataFileError\n"
               "raise DataFileError('facts.csv: line 1: header must hold relation, subject, object')")
    values = yaml.safe_load(study.params.read_text()) | {"run_dir": str(run_dir)}
    study.params.write_text(yaml.safe_dump(values))
    assert study.kn("chapter", str(study.params), "01") == 2
    (line,) = _error_line(capsys)
    assert line == ("kn: error: 01_data_adaptation: facts.csv: line 1: header must hold relation, subject, object; "
                    f"the executed notebook could not be kept (no space left on {small_disk})")
    assert (run_dir / "earlier.txt").read_text() == "computed before\n"
    assert not (run_dir / "failed").exists() or not any((run_dir / "failed").iterdir())


def test_a_chapter_that_fills_the_disk_says_so_and_keeps_what_was_written(study, small_disk, capsys):
    run_dir = small_disk / "runs" / "stub"
    values = yaml.safe_load(study.params.read_text()) | {"run_dir": str(run_dir)}
    study.params.write_text(yaml.safe_dump(values))
    assert study.kn("chapter", str(study.params), "01") == 0
    write_stub(study.notebooks, "02_attribution",
               "with open(run / 'part-0.bin', 'wb') as out:\n    out.write(b'x' * 10_000)\n"
               "with open(run / 'part-1.bin', 'wb') as out:\n    out.write(b'x' * (8 << 20))")
    assert study.kn("chapter", str(study.params), "02") == 2
    (line,) = _error_line(capsys)
    assert line.startswith(f"kn: error: no space left on {small_disk}: 02_attribution stopped; kept: everything "
                           "written before it")
    assert (run_dir / "part-0.bin").stat().st_size == 10_000 and (run_dir / "executed-01_data_adaptation.txt").is_file()


# --------------------------------------------------------------------------- two runs on one folder
def _kn_process(study, *args) -> subprocess.Popen:
    code = ("import sys; from kn.book import cli; sys.exit(cli.main(sys.argv[1:]))")
    return subprocess.Popen([sys.executable, "-c", code, *args, "--no-book", "--book-root", str(study.root),
                             "--notebooks", str(study.notebooks)], cwd=study.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": tempfile.gettempdir()})


def _wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.2)


def test_a_second_kn_on_the_same_run_folder_stops_at_once(study):
    write_stub(study.notebooks, "02_attribution",
               "(run / 'started').write_text('')\nimport time\nwhile not (run / 'go').exists():\n    time.sleep(0.1)")
    first = _kn_process(study, "run", str(study.params))
    try:
        _wait_for(study.run_dir / "started")
        started = time.monotonic()
        second = subprocess.run([sys.executable, "-c", "import sys; from kn.book import cli; sys.exit(cli.main(sys.argv[1:]))",
                                 "chapter", str(study.params), "02", "--no-book", "--book-root", str(study.root),
                                 "--notebooks", str(study.notebooks)], cwd=study.root, capture_output=True, text=True,
                                timeout=120)
        assert time.monotonic() - started < 30
        assert second.returncode == 2
        (line,) = second.stderr.strip().splitlines()
        assert line.startswith(f"kn: error: run folder {study.run_dir} is in use by another kn (PID {first.pid}: ")
        assert "run " + str(study.params) in line and line.endswith("wait for it to end, or choose another run_dir")
        (study.run_dir / "go").write_text("")
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
    timings = yaml.safe_load((study.run_dir / "timings.json").read_text())
    assert set(timings) == {"01_data_adaptation", "02_attribution"}  # the first run's records are whole


def test_the_lock_of_a_killed_kn_is_not_stale(study, capsys):
    write_stub(study.notebooks, "02_attribution", "(run / 'started').write_text('')\nimport time\ntime.sleep(600)")
    first = _kn_process(study, "run", str(study.params))
    _wait_for(study.run_dir / "started")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    write_stub(study.notebooks, "02_attribution")
    assert study.kn("chapter", str(study.params), "02") == 0
    stale = [p for p in Path(tempfile.gettempdir()).glob("kn-staging-*")]
    assert stale == [], "the killed run's staging folder is removed by the next kn"


# --------------------------------------------------------------------------- a damaged part
def _row(store, prompt, target, ids):
    return {"key": store.key(prompt, target), "prompt": prompt, "target_id": target, "max_score": 1.0,
            "neuron_ids": np.array(ids, np.int32), "neuron_scores": np.ones(len(ids), np.float32),
            "layer_sums": np.zeros(1, np.float32), "p_full": np.zeros(1, np.float32), "p_zero": np.zeros(1, np.float32)}


def test_a_damaged_part_is_set_aside_named_and_its_prompts_asked_for(tmp_path, capsys):
    store = AttributionStore(tmp_path / "attribution", identity="m", steps=20, rule="right", dtype="float32",
                             threshold=0.05, n_layers=1, n_neurons=4)
    good = store._write_part([_row(store, "Paris is in", 5, [0, 1])], 0, 1)
    bad = store._write_part([_row(store, "Rome is in", 6, [2])], 0, 1)
    bad.write_bytes(bad.read_bytes()[:40])  # truncated, as a killed copy or a full disk leaves it
    prompts = pd.DataFrame({"prompt_id": ["a#0", "b#0"], "prompt": ["Paris is in", "Rome is in"], "target_id": [5, 6]})
    reopened = AttributionStore.open(tmp_path / "attribution")
    with pytest.raises(MissingArtifact) as missing:
        reopened.coarse_sets_by_prompt(prompts, 0.2)
    assert str(missing.value) == ("1 of 2 prompts have no stored scores in attribution/ (1 damaged part(s) were moved "
                                  "to damaged/): b#0; complete them with `kn chapter <params file> 02` (only the "
                                  "missing prompts are computed)")
    assert (tmp_path / "attribution" / "damaged" / bad.name).is_file() and not bad.exists() and good.is_file()
    notice = capsys.readouterr().err
    assert f"damaged attribution part {bad.name}" in notice and "moved to attribution/damaged/" in notice
    assert AttributionStore.open(tmp_path / "attribution").done_keys() == {store.key("Paris is in", 5)}


# --------------------------------------------------------------------------- bad values, found before any work
@pytest.mark.parametrize("text, needle", [
    ("relations: []\n", "parameter relations=[]: must name at least one relation (or be null for all)"),
    ("seed: -1\n", "parameter seed=-1: must be 0 or more"),
    ("amplify_factor: .nan\n", "parameter amplify_factor=nan must be a finite number"),
    ("land_threshold: .inf\n", "parameter land_threshold=inf must be a finite number"),
    ("edit_lambda1: -.inf\n", "parameter edit_lambda1=-inf must be a finite number"),
    ("land_min_set_size: .nan\n", "parameter land_min_set_size=nan must be a finite number"),
    ("land_threshold_grid: [1.0, .nan]\n", "parameter land_threshold_grid=nan must be a finite number"),
    ("convergence_prompts: -1\n", "parameter convergence_prompts=-1: must be 0 or more"),
    ("seed: 1\nseed: 2\n", "line 2: key 'seed' is given twice (first on line 1)"),
    ("", "is empty: give at least `model:`"),
    ("- model: smollm2-135m\n", "expected a mapping of parameter names to values, got list"),
    ("device: cuda:7\n", "parameter device='cuda:7': this machine has"),
    ("device: cudaX\n", "parameter device='cudaX': use auto, cpu, cuda or cuda:N"),
])
def test_bad_values_stop_before_any_work(study, capsys, text, needle):
    if text.startswith("device: cuda:7"):
        import torch

        if torch.cuda.device_count() > 7:
            pytest.skip("this machine has 8 CUDA devices")
    study.params.write_text(text)
    assert study.kn("run", str(study.params)) == 2
    (line,) = _error_line(capsys)
    assert line.startswith("kn: error: ") and needle in line, line
    assert not study.run_dir.exists()


def test_a_params_path_that_is_a_folder(study, capsys):
    assert study.kn("run", str(study.root)) == 2
    assert _error_line(capsys) == [f"kn: error: params file {study.root} is a folder, not a YAML file"]


# --------------------------------------------------------------------------- files from the real world
def test_files_that_are_not_utf8_are_refused_with_file_and_line(study, capsys, tmp_path):
    study.params.write_bytes(b"model: smollm2-135m\n# caf\xe9\n")
    assert study.kn("run", str(study.params)) == 2
    assert _error_line(capsys) == [f"kn: error: {study.params}: line 2: not UTF-8 (byte 0xe9); save the file as UTF-8"]
    from kn.data.pararel import read_user_facts

    facts = tmp_path / "facts.csv"
    facts.write_bytes("relation,subject,object\ncapital,France,Paris\n".encode() + b"capital,M\xfcnchen,Bayern\n")
    with pytest.raises(Exception) as err:
        read_user_facts(facts)
    assert str(err.value) == f"{facts}: line 3: not UTF-8 (byte 0xfc); save the file as UTF-8"


def test_a_csv_with_a_byte_order_mark_is_read(tmp_path):
    from kn.data.pararel import read_user_facts

    facts = tmp_path / "facts.csv"
    facts.write_bytes("\ufeffrelation,subject,object\ncapital,München,Bayern\n".encode("utf-8"))
    table = read_user_facts(facts)
    assert list(table.columns[:3]) == ["relation", "fact_index", "subject"] and table.loc[0, "subject"] == "München"


def test_a_prompt_longer_than_the_context_is_refused():
    import torch
    from kn.core.models import tiny_model
    from kn.core.scoring import check_prompt_lengths, context_size

    loaded = tiny_model("gpt2", n_layers=1, n_neurons=8)
    limit = context_size(loaded)
    assert isinstance(limit, int) and limit > 0
    check_prompt_lengths(loaded, [torch.zeros(limit, dtype=torch.long)], ["fits"])
    with pytest.raises(Exception) as err:
        check_prompt_lengths(loaded, [torch.zeros(limit + 1, dtype=torch.long)], ["X" * 10_000])
    assert type(err.value).__name__ == "PromptTooLong"
    assert str(err.value).startswith(f"a prompt of {limit + 1} tokens is longer than the model's context of {limit} "
                                     "positions: 'XXX")


def test_own_facts_never_touch_pararel(study, monkeypatch, capsys):
    def no_pararel(*args, **kwargs):
        raise AssertionError("PARAREL was asked for")

    monkeypatch.setattr(runner, "resolve_data_dir", no_pararel)
    monkeypatch.delenv("KN_DATA_DIR", raising=False)
    values = yaml.safe_load(study.params.read_text()) | {"facts_file": str(ROOT / "data/example/facts.csv"),
                                                         "templates_file": str(ROOT / "data/example/templates.csv"),
                                                         "templates_per_relation": 4}
    study.params.write_text(yaml.safe_dump(values))
    assert study.kn("chapter", str(study.params), "01") == 0
    import kn.data.pararel as pararel
    from kn.base.paramfiles import load_params

    monkeypatch.setattr(pararel, "resolve_data_dir", no_pararel)
    data = pararel.load_adapted(load_params(ROOT / "params" / "example.yaml"))
    assert data.source == "user" and len(data.facts) == 36


# --------------------------------------------------------------------------- litter
def test_failed_notebooks_of_runs_with_one_name_do_not_overwrite_each_other(study, capsys):
    write_stub(study.notebooks, "01_data_adaptation", "raise RuntimeError('a bug')")
    for _ in range(2):
        with pytest.raises(runner.ChapterFailed):
            study.kn("run", str(study.params))
    kept = sorted((Path(tempfile.gettempdir()) / "kn-failed").iterdir())
    assert len(kept) == 2 and all((k / "01_data_adaptation.ipynb").is_file() for k in kept)


def test_a_dead_processes_staging_folder_is_removed(study):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    litter = Path(tempfile.gettempdir()) / f"kn-staging-{dead.pid}-abc"
    litter.mkdir()
    alive = Path(tempfile.gettempdir()) / f"kn-staging-{os.getppid()}-abc"  # a live process's folder stays
    alive.mkdir()
    assert study.kn("run", str(study.params)) == 0
    assert not litter.exists() and alive.exists()
