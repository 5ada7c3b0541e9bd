"""`kn submit` on a real SLURM cluster: a single-node cluster (Debian's slurm-wlm and munge, `make slurm`) started for
these tests as root, with its configuration, state and logs in a temporary folder, and stopped by process id at the end.

The smoke params (the smoke_run fixture's slice of PARAREL) go to it with 3 shards from a git repository holding this
working tree as one commit. The first submission has one task killed mid-shard (KN_TEST_KILL_SHARD, a SIGKILL after its
first part): the dependent job does not run and `--wait` names the task and its log. Meanwhile the checkout's
kn.attribution.shards is broken on purpose: the queued tasks must run the submitted snapshot. Submitting again computes only the
missing prompts and runs chapters 2-6 and the book. The run's store then equals, bit for bit, one process's scores of
the same prompts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
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
from kn.base.rundir import RunFolder
from kn.book import runner
from smoke_slice import write_smoke_slice
from test_notebooks import page_problems  # the book's one page check

ROOT = Path(__file__).resolve().parents[2]
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "scontrol", "squeue", "scancel", "sinfo")
SHARDS, KILLED = 3, 1
# One CPU per task: two tasks run side by side on the 2-core machine, each with one torch thread (a 2-thread task beside
# other work loses far more than its share: OpenMP threads wait for each other).
CPUS_PER_TASK = 1
WAIT_SECONDS = 1500  # one submission with --wait (about 4 minutes each on the idle 2-core machine)
REFERENCE_PROMPTS = 3  # at least this many prompts in the single-process reference, and enough for every shard


def _program(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name)
                                       if p.is_file()), None)


def _cannot_run() -> str | None:
    if os.geteuid() != 0:
        return "the SLURM test starts munged, slurmctld and slurmd as root: run it as root"
    missing = [name for name in DAEMONS + CLIENTS if _program(name) is None]
    if missing:
        return (f"{', '.join(missing)} not installed: `make slurm` installs Debian's slurm-wlm and munge packages "
                "(as root)")
    if shutil.which("git") is None:
        return "git is needed: kn submit pins the code by its commit"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """The test's SLURM cluster: env (SLURM_CONF set) for the client commands, and its folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.conf = folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.daemons: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> None:
        log = open(self.folder / f"{name}.out", "w")
        self.daemons[name] = subprocess.Popen([_program(name), *args], stdout=log, stderr=subprocess.STDOUT,
                                              env=self.env, start_new_session=True)
        log.close()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text().splitlines()[-15:])
                         for p in sorted(self.folder.glob("*.out")))

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([_program(command[0]), *command[1:]], env=self.env, capture_output=True, text=True,
                              check=check)

    def stop(self) -> None:
        """Cancel every job (its processes end with it), then stop the daemons by their process ids."""
        if "slurmctld" in self.daemons and self.daemons["slurmctld"].poll() is None:
            jobs = self.run("squeue", "--noheader", "--format=%A", check=False).stdout.split()
            if jobs:
                self.run("scancel", *jobs, check=False)
                deadline = time.monotonic() + 30
                while self.run("squeue", "--noheader", check=False).stdout.strip() and time.monotonic() < deadline:
                    time.sleep(1)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.daemons.get(name)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _slurm_conf(folder: Path, munge_socket: Path) -> str:
    host = socket.gethostname().split(".")[0]
    node = subprocess.run([_program("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    node = " ".join(field for field in node.split() if not field.startswith(("NodeName=", "UpTime=")))
    return "\n".join([
        "ClusterName=kntest", f"SlurmctldHost={host}(127.0.0.1)", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", f"AuthInfo=socket={munge_socket}", "CredType=cred/munge",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        f"StateSaveLocation={folder / 'state'}", f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}", f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}", f"SlurmdLogFile={folder / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU", "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none",
        "JobAcctGatherType=jobacct_gather/none", "MpiDefault=none", "ReturnToService=2", "KillWait=5",
        "MinJobAge=900",  # finished jobs stay visible to scontrol for the whole test
        f"NodeName={host} NodeAddr=127.0.0.1 {node} State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""])


@pytest.fixture(scope="module")
def cluster():
    reason = _cannot_run()
    if reason:
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="kn-slurm-"))
    folder.chmod(0o755)  # munged wants every folder above its socket searchable by all
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    munge_socket = folder / "munge.socket"
    cluster = Cluster(folder)
    try:
        cluster.start("munged", "--foreground", f"--socket={munge_socket}", f"--key-file={key}",
                      f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
                      f"--seed-file={folder / 'munged.seed'}")
        _until(lambda: munge_socket.exists(), 20, "munged did not create its socket", cluster)
        cluster.conf.write_text(_slurm_conf(folder, munge_socket))
        cluster.start("slurmctld", "-D", "-f", str(cluster.conf))
        _until(lambda: cluster.run("scontrol", "ping", check=False).stdout.count("UP") > 0, 30,
               "slurmctld did not answer", cluster)
        cluster.start("slurmd", "-D", "-f", str(cluster.conf))
        _until(lambda: cluster.run("sinfo", "--noheader", "--format=%T", check=False).stdout.strip() == "idle", 60,
               "the node did not become idle", cluster)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _until(condition, seconds: float, what: str, cluster: Cluster) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {seconds} s:\n{cluster.logs()}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A git repository holding this working tree (tracked and untracked, not ignored files) as one commit: what a
    researcher submits from, whatever state the real checkout is in while the project is being edited."""
    target = tmp_path_factory.mktemp("checkout")
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    git = ["git", "-C", str(target), "-c", "user.name=kn test", "-c", "user.email=kn-test@localhost"]
    subprocess.run([*git, "init", "--quiet"], check=True)
    subprocess.run([*git, "add", "--all"], check=True)
    subprocess.run([*git, "commit", "--quiet", "--no-verify", "-m", "the working tree under test"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    return target, commit


def _kn(checkout: Path, cluster: Cluster, *args: str, env: dict | None = None, **popen):
    """`python -m kn ...` of the checkout (its lib first on PYTHONPATH), as the researcher runs it there."""
    environment = {**cluster.env, "PYTHONPATH": str(checkout / "lib"), "KN_PROGRESS_SECONDS": "60", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "kn", *args], cwd=checkout, env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def _finish(process: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"kn submit did not end within {timeout} s:\n{out}{err}")
    return process.returncode, out, err


@pytest.fixture(scope="module")
def cluster_run(cluster, checkout, tmp_path_factory, data_dir):
    """Submit, fail one task, check the refusals, submit again; returns what each step printed and took."""
    repo, commit = checkout
    values = yaml.safe_load((repo / "params" / "smoke.yaml").read_text())
    values["data_dir"] = str(write_smoke_slice(data_dir, tmp_path_factory.mktemp("smoke-data")))
    params = repo / "params" / "smoke-slurm.yaml"  # untracked: the checkout stays clean
    params.write_text(yaml.safe_dump(values))
    run = RunFolder(repo / values["run_dir"])  # relative in the params file: kn submit makes it absolute for the jobs
    submit_file = run.path / "slurm" / "submit.json"
    command = ["submit", str(params.relative_to(repo)), "--shards", str(SHARDS), "--cpus-per-task", str(CPUS_PER_TASK),
               "--wait", "--poll-seconds", "2"]
    steps = {}

    started = time.monotonic()
    first = _kn(repo, cluster, *command, env={"KN_TEST_KILL_SHARD": str(KILLED)})
    deadline = time.monotonic() + 60
    while not submit_file.is_file():
        if first.poll() is not None or time.monotonic() > deadline:
            first.kill()
            pytest.fail(f"kn submit wrote no {submit_file.name}: {first.communicate()}")
        time.sleep(0.2)
    # the checkout changes while the jobs are queued: a task that imported the checkout's kn.attribution.shards would fail here
    shards_py = repo / "lib" / "kn" / "attribution" / "shards.py"
    pristine = shards_py.read_text()
    broken = 'raise ImportError("the checkout\'s kn.attribution.shards ran, not the submitted snapshot\'s")\n'
    shards_py.write_text(broken + pristine)
    steps["first"] = (*_finish(first, WAIT_SECONDS), time.monotonic() - started)
    steps["first_record"] = json.loads(submit_file.read_text())
    killed_parts = list((run.path / "attribution").glob(f"part-s{KILLED:03d}of{SHARDS:03d}-*.parquet"))
    steps["killed_rows"] = sum(len(pd.read_parquet(part, columns=["key"])) for part in killed_parts)
    steps["chapters_after_first"] = list(json.loads((run.path / "timings.json").read_text()))
    steps["pages_after_first"] = sorted(p.stem for p in (repo / "book" / "runs" / run.path.name).glob("*.ipynb"))

    steps["dirty"] = _finish(_kn(repo, cluster, "submit", str(params.relative_to(repo)), "--shards", "3"), 60)
    shards_py.write_text(pristine)

    started = time.monotonic()
    steps["second"] = (*_finish(_kn(repo, cluster, *command), WAIT_SECONDS), time.monotonic() - started)
    steps["second_record"] = json.loads(submit_file.read_text())
    for name in ("first", "second"):
        print(f"--- kn {' '.join(command)} ({name}: exit {steps[name][0]}, {steps[name][3]:.0f} s)\n"
              f"{steps[name][1]}{steps[name][2]}")
    return repo, commit, run, params, steps


def _task_stats(log: Path) -> dict:
    """The JSON line kn.attribution.shards prints when its shard is done."""
    return json.loads([line for line in log.read_text().splitlines() if line.startswith("{")][-1])


@pytest.mark.slow
def test_a_killed_task_stops_the_dependent_job_and_wait_names_it(cluster_run):
    repo, commit, run, _, steps = cluster_run
    code, out, err, _ = steps["first"]
    record = steps["first_record"]
    array = record["jobs"]["attribution"]
    killed_log = Path(record["logs"]["attribution"].replace("%a", str(KILLED)))
    assert code == 1, out + err
    assert f"attribution task {KILLED} (job {array}_{KILLED}) FAILED" in err
    assert f"its log: {killed_log.relative_to(repo)}" in err
    assert f"chapters 02-06 and the book (job {record['jobs']['chapters 02-06 and the book']}) did not run" in err
    assert "again computes only the prompts still missing" in err
    assert "KN_TEST_KILL_SHARD" in killed_log.read_text()
    # the other tasks completed; chapter 1 ran as the first job; nothing after the attribution ran
    for task in set(range(SHARDS)) - {KILLED}:
        assert f"attribution task {task} (job {array}_{task}) COMPLETED" in out
    assert "chapter 1 (job" in out and set(steps["second_record"]["earlier"][0]["jobs"]) == set(record["jobs"])
    assert steps["chapters_after_first"] == steps["pages_after_first"] == ["01_data_adaptation"]


@pytest.mark.slow
def test_a_dirty_checkout_is_refused_in_one_line(cluster_run):
    code, out, err = cluster_run[4]["dirty"]
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("kn: error: the checkout has uncommitted changes to 1 tracked file")
    assert "lib/kn/attribution/shards.py" in err and "--allow-dirty" in err


@pytest.mark.slow
def test_submitting_again_computes_only_the_missing_prompts_and_runs_the_later_chapters(cluster_run):
    repo, commit, run, _, steps = cluster_run
    code, out, err, seconds = steps["second"]
    assert code == 0, out + err
    assert "every job completed" in out
    record = steps["second_record"]
    assert "chapter 1" not in record["jobs"]  # the run has its prompts: no chapter 1 job
    store = AttributionStore.open(run.path / "attribution")
    table = store.read()
    prompts = run.read_table("prompts")
    distinct = prompts.drop_duplicates(["prompt", "target_id"])
    # every prompt scored exactly once over all parts: no two tasks wrote the same prompt, nothing was redone
    rows = sum(len(pd.read_parquet(part, columns=["key"])) for part in store.parts())
    assert len(table) == rows == len(distinct)
    assert not list(store.folder.glob(".part-*"))  # no temporary file of a half-written part either
    by_shard = {i: sum(store.shard_of(k, SHARDS) == i for k in table["key"]) for i in range(SHARDS)}
    # the killed task left complete parts only (it died after its first, before its compute log), and the resumed
    # task computed exactly the rest; the other tasks found their shards complete and computed nothing
    assert 0 < steps["killed_rows"] < by_shard[KILLED]
    for shard in range(SHARDS):
        (entry,) = json.loads((store.folder / f"compute-s{shard:03d}of{SHARDS:03d}.json").read_text())
        assert entry["threads"] == CPUS_PER_TASK  # the CPUs SLURM gave the task
        resumed = _task_stats(Path(record["logs"]["attribution"].replace("%a", str(shard))))
        if shard == KILLED:
            assert entry["computed"] == resumed["computed"] == by_shard[shard] - steps["killed_rows"]
        else:
            assert entry["computed"] == by_shard[shard] and resumed["computed"] == 0
    assert not (store.folder / "compute-s000of001.json").exists()  # chapter 2 computed nothing
    timings = json.loads((run.path / "timings.json").read_text())
    assert list(timings) == list(runner.CHAPTERS)
    html = repo / "book" / "_build" / "html"
    for chapter in runner.CHAPTERS:
        assert (repo / "book" / "runs" / run.path.name / f"{chapter}.ipynb").is_file()
        assert (html / "book" / "runs" / run.path.name / f"{chapter}.html").is_file()
    assert (html / "index.html").is_file()


@pytest.mark.slow
def test_the_cluster_run_pages_show_no_machine_path_or_warning(cluster_run):
    """The pages the dependent job built pass the book's page check (on the built HTML; test_notebooks opens a local
    run's pages in Chromium): the jobs' absolute paths (snapshot, submitted params, logs) never reach a page."""
    repo, _, run, _, _ = cluster_run
    for chapter in runner.CHAPTERS:
        page = repo / "book" / "_build" / "html" / "book" / "runs" / run.path.name / f"{chapter}.html"
        assert page_problems(page.read_text()) == [], chapter


@pytest.mark.slow
def test_queued_tasks_run_the_submitted_commit(cluster_run):
    repo, commit, run, _, steps = cluster_run
    for name in ("first_record", "second_record"):
        record = steps[name]
        snapshot = Path(record["snapshot"])
        assert record["commit"] == commit and snapshot.parent == run.path / "slurm"
        assert subprocess.run(["git", "-C", str(snapshot), "rev-parse", "HEAD"], capture_output=True, text=True
                              ).stdout.strip() == commit
        for shard in range(SHARDS):
            if name == "first_record" and shard == KILLED:
                continue  # killed before it printed
            stats = _task_stats(Path(record["logs"]["attribution"].replace("%a", str(shard))))
            assert stats["kn"] == str(snapshot / "lib" / "kn")  # not the checkout's (broken meanwhile), not /work's
    environment = run.read_json("environment")
    assert {env["commit"] for env in environment.values()} == {commit}
    assert not any(env["dirty"] for env in environment.values())
    submitted = yaml.safe_load(Path(steps["second_record"]["submitted_params"]).read_text())
    assert submitted["run_dir"] == str(run.path) and submitted["device"] == "cpu"


@pytest.mark.slow
def test_the_run_store_equals_a_single_process_run_bit_for_bit(cluster_run, tmp_path):
    repo, commit, run, _, steps = cluster_run
    record = steps["second_record"]
    store = AttributionStore.open(run.path / "attribution")
    # the first prompts of the run's table, enough of them for every task's shard (the killed one's included)
    shards = [store.shard_of(k, SHARDS) for k in store.keys_for(run.read_table("prompts"))]
    limit = max(REFERENCE_PROMPTS, 1 + max(shards.index(i) for i in range(SHARDS)))
    reference = tmp_path / "reference"
    environment = {**os.environ, "PYTHONPATH": str(Path(record["snapshot"]) / "lib")}
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "kn.attribution.shards", "run", "--params", record["submitted_params"], "--index", "0",
                    "--count", "1", "--store", str(reference), "--limit", str(limit),
                    "--threads", str(CPUS_PER_TASK)], env=environment, check=True, capture_output=True, timeout=900)
    single = AttributionStore.open(reference).read().set_index("key")
    cluster = store.read().set_index("key")
    assert {store.shard_of(k, SHARDS) for k in single.index} == set(range(SHARDS))  # every task's work
    assert set(single.index) <= set(cluster.index)
    for key, row in single.iterrows():
        assert cluster.loc[key, "prompt"] == row["prompt"] and cluster.loc[key, "target_id"] == row["target_id"]
        assert cluster.loc[key, "max_score"] == row["max_score"]
        for column in ("neuron_ids", "neuron_scores", "layer_sums", "p_full", "p_zero"):
            np.testing.assert_array_equal(cluster.loc[key, column], row[column], err_msg=f"{key} {column}")
    by_shard = {i: sum(store.shard_of(k, SHARDS) == i for k in single.index) for i in range(SHARDS)}
    print(f"--- the run's store against one process ({limit} prompts, {CPUS_PER_TASK} thread, "
          f"{time.monotonic() - started:.0f} s): {len(single)} keys (by shard {by_shard}), each of max_score, "
          f"neuron_ids, neuron_scores, layer_sums, p_full, p_zero equal bit for bit")


# --------------------------------------------------------------------------- a kill in the middle of writing a part

KILL_MID_WRITE = """
import os, signal, sys
import numpy as np
import pandas as pd
from kn.attribution.store import AttributionStore

store = AttributionStore(sys.argv[1], identity="test", steps=2, rule="right", dtype="float32", threshold=0.05,
                         n_layers=1, n_neurons=2)
row = {"key": "0" * 24, "prompt": "p", "target_id": 1, "max_score": 1.0, "neuron_ids": np.array([0], np.int32),
       "neuron_scores": np.array([1.0], np.float32), "layer_sums": np.array([1.0], np.float32),
       "p_full": np.array([0.5], np.float32), "p_zero": np.array([0.1], np.float32)}
store._write_part([row], 0, 1)  # one complete part
real = pd.DataFrame.to_parquet

def half_then_die(self, path, **kwargs):
    real(self, path, **kwargs)
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)  # half of the file is on disk
    os.kill(os.getpid(), getattr(signal, sys.argv[2]))

pd.DataFrame.to_parquet = half_then_die
if sys.argv[2] == "SIGTERM":
    from kn.attribution.shards import _stop_on_sigterm
    _stop_on_sigterm()  # as `python -m kn.attribution.shards run` does
store._write_part([{**row, "key": "1" * 24}], 0, 1)
"""


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_a_task_killed_while_writing_a_part_leaves_no_part(tmp_path, signal_name):
    """SIGKILL (no clean-up at all) leaves only a hidden temporary file, which the store never reads; SIGTERM
    (scancel, a time limit) unwinds and removes it. Either way the store holds the complete part only."""
    done = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, str(tmp_path), signal_name], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == (-signal.SIGKILL if signal_name == "SIGKILL" else 128 + signal.SIGTERM), done.stderr
    store = AttributionStore.open(tmp_path)
    assert len(store.parts()) == 1 and list(store.read()["key"]) == ["0" * 24]
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".part-")]
    assert len(left) == (1 if signal_name == "SIGKILL" else 0)
