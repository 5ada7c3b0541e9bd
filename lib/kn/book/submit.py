"""kn.book.submit: the study on a SLURM cluster in one command (`kn submit`): chapter 1, the attribution as an array of
shards, then chapters 2-6 and the book in a job that runs only when every shard succeeded.

API
    submit(params_file, shards, *, partition=None, gpus_per_task=0, cpus_per_task=None, time_limit=None,
           allow_dirty=False, root=None, book_root=None, say=print) -> dict
        submit the jobs; returns what submit.json records (commit, snapshot, jobs {label: id}, logs {label: path})
    wait(submission, *, poll_seconds=30, say=print) -> list[str]
        block until every job has ended; one line per job that did not complete, naming its log ([] when all did)
    job_states(submission) -> {job: {state, exit, elapsed, start, end, reason}}   from scontrol, else sacct
    SUBMIT_FOLDER ("slurm", inside the run folder), SUBMIT_FILE, ARRAY_SCRIPT, TERMINAL_STATES

What a submission writes into <run folder>/slurm/ (the run folder must lie on a file system every node sees):
    code-<commit>/    the code snapshot, a git clone at the submitted commit: every job imports kn from its lib/
                      (first on PYTHONPATH) and runs its notebooks and scripts, so a task that starts hours later runs
                      what was submitted, whatever the checkout holds by then
    params.yaml       the params file as submitted, with the run folder made absolute and the device the jobs get
                      (cpu, or cuda when --gpus-per-task asks for GPUs: SLURM's CUDA_VISIBLE_DEVICES names the task's)
    logs/             one log per job and per array task: <job name>-<job id>.out, <job name>-<array id>_<task>.out
    submit.json       commit, snapshot, job ids, options and logs (atomic; earlier submissions under "earlier")
The jobs, each a plain `sbatch`: chapter 1 (only when the run has no prompts.parquet yet); the attribution array of N
tasks, each `python -m kn.attribution.shards run` on one shard (scripts/slurm_attribution.sbatch of the snapshot), all writing
atomically named parts into the run's store; then `kn chapter PARAMS 02 02b 03 04 05 06` with the book, with
--dependency=afterok on the array (every task must succeed) and --kill-on-invalid-dep=yes (cancelled otherwise).
GPUs are requested (--gres=gpu:G) only when asked for; each job's torch threads are the CPUs SLURM gives it.
Submitting again resumes: the store skips every prompt already scored, so only the missing ones are computed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from kn.base.errors import (
    DirtyCheckout,
    NoScheduler,
    NotACheckout,
    ParameterError,
    SubmitRefused,
)
from kn.base.io import atomic_write_bytes
from kn.base.paramfiles import load_params, read_params_file
from kn.base.params import StudyParams, project_root
from kn.base.rundir import RunFolder
from kn.book import preflight, runner
from kn.data.download import resolve_data_dir

SUBMIT_FOLDER = "slurm"
SUBMIT_FILE = "submit.json"
ARRAY_SCRIPT = Path("scripts") / "slurm_attribution.sbatch"  # inside the snapshot
TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                             "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"})
LATER = "chapters 02-06 and the book"
# The store settings a params file must share with the scores already in the run's store (manifest key: params key).
STORE_SETTINGS = {"steps": "ig_steps", "rule": "ig_rule", "dtype": "ig_dtype", "threshold": "store_threshold",
                  "neuron": "ig_neuron"}


# --- checking, before anything is written or submitted ---------------------------------------------------------------
def _client() -> None:
    missing = [c for c in ("sbatch", "scontrol") if shutil.which(c) is None]
    if missing:
        raise NoScheduler(f"{missing[0]} not found: kn submit needs a SLURM cluster's client commands "
                          "(sbatch, scontrol) on the PATH")


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)


def _commit(root: Path, allow_dirty: bool) -> tuple[str, list[str]]:
    """HEAD's commit and the tracked files that differ from it (refused unless allow_dirty)."""
    if shutil.which("git") is None:
        raise NotACheckout("git not found: kn submit pins the code by its git commit")
    head = _git(root, "rev-parse", "--verify", "HEAD")
    if head.returncode != 0:
        raise NotACheckout(f"{root} is not a git checkout with a commit: kn submit pins the code by its git commit")
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    if changed and not allow_dirty:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise DirtyCheckout(f"the checkout has uncommitted changes to {len(changed)} tracked file(s) ({shown}): "
                            "commit them, or pass --allow-dirty to submit HEAD without them")
    return head.stdout.strip(), changed


def _job_device(params: StudyParams, gpus_per_task: int, params_file) -> str:
    """The device every job uses: the GPU SLURM gives it ("cuda": SLURM sets CUDA_VISIBLE_DEVICES to it), else cpu
    (a node's GPUs that were not requested are not this job's)."""
    if gpus_per_task > 0:
        if params.device == "cpu":
            raise ParameterError(f"{params_file}: device is cpu, but --gpus-per-task {gpus_per_task} asks for GPUs; "
                                 "set device: auto, or leave out --gpus-per-task")
        return "cuda"
    if params.device.startswith("cuda"):
        raise ParameterError(f"{params_file}: device is {params.device}, but no GPU is requested: pass "
                             "--gpus-per-task 1 (or set device: auto for CPU jobs)")
    return "cpu"


def _check_run(params: StudyParams, run_dir: Path) -> bool:
    """Whether chapter 1 must run first; an existing run must have the params' data and attribution settings."""
    if not (run_dir / "prompts.parquet").is_file():
        if not params.facts_file:  # a run on the user's own facts never needs PARAREL
            resolve_data_dir(params.data_dir or None)  # missing data fails here, not in a job hours later
        return True
    RunFolder(run_dir).check_params(params)
    manifest = run_dir / "attribution" / "manifest.json"
    if manifest.is_file():
        stored = json.loads(manifest.read_text())
        differ = {k: (stored.get(k), getattr(params, p)) for k, p in STORE_SETTINGS.items()
                  if stored.get(k) != getattr(params, p)}
        if differ:
            shown = ", ".join(f"{STORE_SETTINGS[k]}: store {a!r}, params {b!r}" for k, (a, b) in differ.items())
            raise ParameterError(f"{_show(run_dir / 'attribution')} holds scores computed with other settings "
                                 f"({shown}): use another run_dir, or delete the store")
    return False


def _still_active(folder: Path) -> list[str]:
    """Jobs of the previous submission that are still queued or running (two submissions would write the same pages)."""
    path = folder / SUBMIT_FILE
    if not path.is_file():
        return []
    ids = [str(i) for i in json.loads(path.read_text()).get("jobs", {}).values() if i]
    if not ids or shutil.which("squeue") is None:
        return []
    done = subprocess.run(["squeue", "--noheader", "--format=%F", f"--jobs={','.join(ids)}"], capture_output=True,
                          text=True)
    if done.returncode != 0:  # every id is unknown to the controller: all ended long ago
        return []
    return sorted(set(done.stdout.split()) & set(ids), key=int)


# --- submitting -----------------------------------------------------------------------------------------------------
def submit(params_file, shards: int, *, partition: str | None = None, gpus_per_task: int = 0,
           cpus_per_task: int | None = None, time_limit: str | None = None, allow_dirty: bool = False,
           root=None, book_root=None, say=print) -> dict:
    """Submit chapter 1 (if needed), the attribution array and the later chapters; see the module docstring.
    Every check (the inputs, sbatch, the checkout, the run folder) comes before anything is written or submitted."""
    if shards < 1:
        raise ParameterError(f"--shards {shards}: at least 1")
    if gpus_per_task < 0:
        raise ParameterError(f"--gpus-per-task {gpus_per_task}: 0 or more")
    if cpus_per_task is not None and cpus_per_task < 1:
        raise ParameterError(f"--cpus-per-task {cpus_per_task}: at least 1")
    _client()
    params = load_params(params_file)  # not runner.check_params: the GPUs are the nodes', not this machine's
    preflight.check_run(params)  # sizes, own facts, a run_dir that is a file (the store: _check_run, below)
    root = Path(root) if root else project_root()
    book_root = Path(book_root).absolute() if book_root else root
    commit, changed = _commit(root, allow_dirty)
    device = _job_device(params, gpus_per_task, params_file)
    run_dir = params.resolved_run_dir()
    needs_chapter_1 = _check_run(params, run_dir)
    folder = run_dir / SUBMIT_FOLDER
    active = _still_active(folder)
    if active:
        raise SubmitRefused(f"jobs of this run's previous submission are still queued or running "
                            f"({', '.join(active)}): wait for them, or `scancel {' '.join(active)}`, then submit again")

    if changed:
        say(f"kn submit: the checkout has uncommitted changes to {len(changed)} tracked file(s); the jobs run HEAD "
            f"({commit[:12]}) without them")
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    snapshot = _snapshot(root, commit, folder)
    frozen = _freeze_params(params_file, run_dir, device, folder / "params.yaml")
    resources = _resources(partition, time_limit, gpus_per_task, cpus_per_task)
    # the project's environment (at the same path on the nodes), importing kn from the snapshot
    pythonpath = os.pathsep.join([str(snapshot / "lib"), *filter(None, [os.environ.get("PYTHONPATH")])])
    environment = {**os.environ, "KN_PYTHON": sys.executable, "PYTHONPATH": pythonpath}
    name = f"kn-{run_dir.name}"
    logs = folder / "logs"
    later = [c for c in runner.CHAPTERS if c != runner.CHAPTERS[0]]
    kn = '"$KN_PYTHON" -m kn chapter ' + shlex.quote(str(frozen))
    book = "--book-root " + shlex.quote(str(book_root))
    # the chapters' kernels use as many threads as CPUs SLURM gave the job (kn.attribution.shards sets its own from the same)
    threads = 'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-1}}"; '
    jobs: dict[str, str] = {}
    log_files: dict[str, str] = {}

    def sbatch(label: str, suffix: str, options: list[str], command: list[str], array: bool = False) -> str:
        job_name = f"{name}-{suffix}"
        log = logs / (f"{job_name}-%A_%a.out" if array else f"{job_name}-%j.out")
        done = subprocess.run(["sbatch", "--parsable", "--export=ALL", f"--job-name={job_name}", f"--output={log}",
                               *resources, *options, *command], cwd=snapshot, env=environment, capture_output=True,
                              text=True)
        if done.returncode != 0:
            if jobs:  # nothing half-submitted stays queued
                subprocess.run(["scancel", *jobs.values()], capture_output=True)
            message = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
            raise SubmitRefused(f"sbatch refused the {label} job: {message}")
        job_id = done.stdout.strip().split(";")[0]  # --parsable: "id" or "id;cluster"
        jobs[label], log_files[label] = job_id, str(log).replace("%A", job_id).replace("%j", job_id)
        return job_id

    after = []
    if needs_chapter_1:
        first = sbatch("chapter 1", "chapter1", [f"--wrap={threads}exec {kn} 01 --no-book {book}"], [])
        after = [f"--dependency=afterok:{first}", "--kill-on-invalid-dep=yes"]
    array = sbatch("attribution", "attribution", [f"--array=0-{shards - 1}", *after],
                   [str(snapshot / ARRAY_SCRIPT), str(frozen), str(shards)], array=True)
    sbatch(LATER, "chapters", [f"--dependency=afterok:{array}", "--kill-on-invalid-dep=yes",
                               f"--wrap={threads}exec {kn} {' '.join(later)} {book}"], [])

    record = {"commit": commit, "uncommitted_changes_left_out": changed, "snapshot": str(snapshot),
              "params_file": str(Path(params_file).absolute()), "submitted_params": str(frozen),
              "run_dir": str(run_dir), "book_root": str(book_root), "python": sys.executable, "shards": shards,
              "device": device, "partition": partition, "gpus_per_task": gpus_per_task,
              "cpus_per_task": cpus_per_task, "time": time_limit, "jobs": jobs, "logs": log_files,
              "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    previous = json.loads((folder / SUBMIT_FILE).read_text()) if (folder / SUBMIT_FILE).is_file() else None
    if previous:
        record["earlier"] = previous.pop("earlier", []) + [previous]
    atomic_write_bytes(folder / SUBMIT_FILE, json.dumps(record, indent=2).encode())
    _say_submitted(record, say)
    return record


def _resources(partition, time_limit, gpus_per_task: int, cpus_per_task) -> list[str]:
    """sbatch's options for what every job asks of the cluster: a GPU only when asked for."""
    return ([f"--partition={partition}"] if partition else []) + ([f"--time={time_limit}"] if time_limit else []) \
        + ([f"--gres=gpu:{gpus_per_task}"] if gpus_per_task else []) \
        + ([f"--cpus-per-task={cpus_per_task}"] if cpus_per_task else [])


def _snapshot(root: Path, commit: str, folder: Path) -> Path:
    """A git clone of ``root`` at ``commit`` in folder/code-<commit>; reused when a complete one is there. Cloned
    under a temporary name and renamed, so a half-made snapshot is never taken for a complete one."""
    target = folder / f"code-{commit[:12]}"
    if (target / ".git").is_dir() and _git(target, "rev-parse", "HEAD").stdout.strip() == commit:
        return target
    partial = folder / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(partial, ignore_errors=True)
    for command in (["git", "clone", "--quiet", "--no-checkout", str(root), str(partial)],
                    ["git", "-C", str(partial), "checkout", "--quiet", "--detach", commit]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise RuntimeError(f"making the code snapshot failed: {' '.join(command)}: {done.stderr.strip()}")
    shutil.rmtree(target, ignore_errors=True)  # an incomplete or other snapshot under that name
    os.replace(partial, target)
    return target


def _freeze_params(params_file, run_dir: Path, device: str, target: Path) -> Path:
    """The params file as submitted (a later edit of it does not reach queued jobs), with the run folder absolute (a
    relative one would resolve inside the snapshot) and the jobs' device. Other values stay as written: chapter 1
    recorded them, and the later chapters compare."""
    values = read_params_file(params_file)
    values.update(run_dir=str(run_dir), device=device)
    text = (f"# {Path(params_file).name} as `kn submit` submitted it (run_dir absolute, device for the jobs)\n"
            + yaml.safe_dump(values, sort_keys=False))
    atomic_write_bytes(target, text.encode())
    return target


def _say_submitted(record: dict, say) -> None:
    jobs, logs = record["jobs"], record["logs"]
    say(f"kn submit: code {record['commit'][:12]} in {_show(record['snapshot'])}; "
        f"run folder {_show(record['run_dir'])}")
    if "chapter 1" in jobs:
        say(f"kn submit: job {jobs['chapter 1']}  chapter 1; log {_show(logs['chapter 1'])}")
    shards = record["shards"]
    after = f", after job {jobs['chapter 1']}" if "chapter 1" in jobs else ""
    say(f"kn submit: job {jobs['attribution']}  attribution, an array of {shards} task(s) 0-{shards - 1}{after}; "
        f"logs {_show(logs['attribution']).replace('%a', '<task>')}")
    say(f"kn submit: job {jobs[LATER]}  {LATER}, once every task of {jobs['attribution']} has succeeded; "
        f"log {_show(logs[LATER])}")
    ids = list(jobs.values())
    say(f"follow:  squeue -j {','.join(ids)}   scontrol show job {jobs['attribution']}   "
        f"tail -f {_show(logs['attribution']).replace('%a', '0')}")
    say(f"cancel:  scancel {' '.join(ids)}")
    say(f"record:  {_show(Path(record['run_dir']) / SUBMIT_FOLDER / SUBMIT_FILE)}")


# --- following ------------------------------------------------------------------------------------------------------
def _expected(submission: dict) -> dict[str, tuple[str, str]]:
    """{job key: (label, log)} of every job and array task: "12", "13_0", "13_1", ..."""
    jobs, logs = submission["jobs"], submission["logs"]
    expected = {}
    if "chapter 1" in jobs:
        expected[jobs["chapter 1"]] = ("chapter 1", logs["chapter 1"])
    for task in range(submission["shards"]):
        expected[f"{jobs['attribution']}_{task}"] = (f"attribution task {task}",
                                                    logs["attribution"].replace("%a", str(task)))
    expected[jobs[LATER]] = (LATER, logs[LATER])
    return expected


def _task_ids(text: str) -> list[int]:
    """ "0-2,5%2" -> [0, 1, 2, 5]: scontrol's ArrayTaskId of a record covering several pending tasks."""
    ids = []
    for piece in text.split("%")[0].split(","):
        low, _, high = piece.partition("-")
        if low.isdigit():
            ids += list(range(int(low), int(high or low) + 1))
    return ids


def _scontrol(job_id: str) -> list[dict] | None:
    done = subprocess.run(["scontrol", "--oneliner", "show", "job", job_id], capture_output=True, text=True)
    if done.returncode != 0:
        return None  # ended longer ago than the controller remembers (MinJobAge)
    return [dict(re.findall(r"(\S+?)=(\S*)", line)) for line in done.stdout.splitlines() if line.strip()]


def _sacct(job_ids: list[str]) -> dict[str, dict]:
    """States from the accounting database, where the cluster keeps one (sacct), for jobs scontrol has forgotten."""
    if not job_ids or shutil.which("sacct") is None:
        return {}
    done = subprocess.run(["sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={','.join(job_ids)}",
                           "--format=JobID,State,ExitCode,Elapsed,Start,End"], capture_output=True, text=True)
    found = {}
    for line in done.stdout.splitlines() if done.returncode == 0 else ():
        key, state, exit_code, elapsed, start, end = (line.split("|") + [""] * 6)[:6]
        found[key] = {"state": state.split()[0] if state else "UNKNOWN", "exit": exit_code, "elapsed": elapsed,
                      "start": start, "end": end, "reason": ""}
    return found


def job_states(submission: dict) -> dict[str, dict]:
    """{job key ("12", "13_0"): {state, exit, elapsed, start, end, reason}} of every job of the submission that the
    scheduler knows about."""
    states = {}
    forgotten = []
    for job_id in submission["jobs"].values():
        records = _scontrol(job_id)
        if records is None:
            forgotten.append(job_id)
            continue
        for record in records:
            state = {"state": record.get("JobState", "UNKNOWN"), "exit": record.get("ExitCode", ""),
                     "elapsed": record.get("RunTime", ""), "start": record.get("StartTime", ""),
                     "end": record.get("EndTime", ""), "reason": record.get("Reason", "")}
            if record.get("ArrayJobId"):
                for task in _task_ids(record.get("ArrayTaskId", "")):
                    states[f"{record['ArrayJobId']}_{task}"] = state
            else:
                states[record.get("JobId", job_id)] = state
    for key, state in _sacct(forgotten).items():
        states.setdefault(key, state)
    return states


def wait(submission: dict, *, poll_seconds: float = 30, say=print) -> list[str]:
    """Poll the scheduler until every job and array task of ``submission`` has ended, saying when each starts and
    ends; then one line per job and its time, and return one line per job that did not complete (its log named)."""
    expected = _expected(submission)
    seen: dict[str, dict] = {}
    misses = 0
    while True:
        states = job_states(submission)
        misses = misses + 1 if not states else 0
        for key, (label, log) in expected.items():
            state = states.get(key)
            if state is None:
                continue
            before = seen.get(key, {}).get("state")
            if state["state"] != before:
                if state["state"] == "RUNNING":
                    say(f"kn submit: {label} (job {key}) running")
                elif state["state"] in TERMINAL_STATES:
                    say(f"kn submit: {label} (job {key}) {state['state']} after {state['elapsed']}")
            seen[key] = state
        if all(seen.get(k, {}).get("state") in TERMINAL_STATES for k in expected) or misses >= 3:
            break
        time.sleep(poll_seconds)
    say("kn submit: job            state       time      started               what")
    for key, (label, _) in expected.items():
        state = seen.get(key, {"state": "UNKNOWN", "elapsed": "", "start": ""})
        say(f"kn submit: {key:<14} {state['state']:<11} {state['elapsed']:<9} {state['start']:<21} {label}")
    failures = []
    for key, (label, log) in expected.items():
        state = seen.get(key)
        if state is None or state["state"] not in TERMINAL_STATES:
            failures.append(f"{label} (job {key}): no final state from the scheduler; its log: {_show(log)}")
        elif state["reason"] == "DependencyNeverSatisfied":
            failures.append(f"{label} (job {key}) did not run: a job it waits for did not succeed")
        elif state["state"] != "COMPLETED":
            failures.append(f"{label} (job {key}) {state['state']}, exit {state['exit']}; its log: {_show(log)}")
    return failures


def _show(path) -> str:
    """A path as the user would type it: relative to the working directory when it lies below it."""
    path = Path(path)
    try:
        return str(path.absolute().relative_to(Path.cwd().absolute()))
    except ValueError:
        return str(path)
