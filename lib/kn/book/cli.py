"""kn: the study's command line (also `python -m kn`).

    kn run PARAMS [--from CH] [-p KEY VALUE]... [--no-book]      every chapter for one model (--from 04: chapter 4 and
                                                                 every later one), then the book
    kn chapter PARAMS CH [CH ...] [-p KEY VALUE]... [--no-book]  only these chapters (04, 4 or 04_land), then the book
    kn book                                                      build the book from the runs present
    kn submit PARAMS --shards N [--partition P] [--gpus-per-task G] [--cpus-per-task C] [--time T] [--wait]
                                                                 the same on a SLURM cluster: chapter 1, the attribution
                                                                 as an array of N shards, then the rest (kn.book.submit)
    kn verify RUN_DIR [--reference DIR] [--rtol X] [--stale]     RUN_DIR's numbers against its reference run (default
                                                                 reference/<RUN_DIR's name>), number by number: exit 0
                                                                 "reproduces the reference: N numbers equal", 1 each
                                                                 differing number; exact unless --rtol X (its reason
                                                                 printed); --stale: the reference's chapters whose code
                                                                 changed since (exit 0) (kn.book.reference)
    kn reference RUN_DIR [--pages DIR] [--target DIR]            publish a complete, fresh run as a reference run (its
                                                                 pages from book/runs/<name>, to reference/<name>)
    kn bench [ARGS...]                                           benchmarks/attribution_speed.py ARGS
    kn --version                                                 "kn <version>" (kn.book.environment.kn_version)

`-p KEY VALUE` overrides one parameter of PARAMS for this execution: KEY is a key of kn.base.params.StudyParams, VALUE is read
as YAML (2.0 a float, null None, "[P36, P103]" a list, true a bool) and checked like the YAML's own keys. The run folder
records the overrides of each chapter in overrides.json.

After `kn run` and `kn chapter`, the chapters computed from an older output of a chapter run since (kn.base.lineage)
are printed as `[stale] <chapter> <reason>` lines, then `[stale] refresh: kn chapter PARAMS 05 06`; their book
pages say so at the top.

Exit status: 0 done; 2 bad input (an unknown key, a bad value, a missing params file or data folder, an unknown model or
chapter, a missing run folder or reference run), reported as one line `kn: error: ...` on stderr; 1 anything else, with
its traceback (and for kn verify, a run that does not reproduce its reference); 130 interrupted.

Hidden options for the tests: --book-root DIR (where book/ lives; default the checkout) and --notebooks DIR (the chapters'
folder; default notebooks/).

"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from kn.base import lineage
from kn.base.errors import BadInput, MissingArtifact
from kn.base.params import project_root
from kn.book import build, reference, runner, submit
from kn.book.environment import kn_version

BENCH_SCRIPT = "benchmarks/attribution_speed.py"


def _one_line(message: str, keep: int = 4) -> str:
    """A possibly multi-line message as one line (long listings shortened)."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if len(lines) > keep + 1:
        lines = lines[:keep - 1] + [f"... ({len(lines) - keep} more)"] + lines[-1:]
    return " ".join(lines)


def error(message: str) -> int:
    """Report bad input the way a command-line user expects: one line on stderr, exit status 2."""
    print(f"kn: error: {_one_line(message)}", file=sys.stderr, flush=True)
    return 2


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", dest="overrides", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="override one parameter of PARAMS (VALUE read as YAML); repeatable")
    parser.add_argument("--no-book", action="store_true", help="execute only; do not build the book")
    _add_hidden_options(parser)


def _add_hidden_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--book-root", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--notebooks", default=None, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kn", description="Run the knowledge-neurons study's chapters for a model and build the book.",
        epilog="Exit status: 0 done, 2 bad input (one line on stderr), 1 a failure. `kn COMMAND --help` for more.")
    parser.add_argument("--version", action="version", version=f"kn {kn_version()}",
                        help="print the study's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="execute every chapter for a params file, then build the book",
                         description="Execute every chapter for PARAMS (or, with --from CH, chapter CH and every "
                                     "chapter after it), then build the book. Chapters left computed from an older "
                                     "output of another chapter are printed, with the command that refreshes them.")
    run.add_argument("params", metavar="PARAMS", help="params/<model>.yaml")
    run.add_argument("--from", dest="start", metavar="CH", default=None,
                     help="re-run chapter CH (04, 4 or 04_land) and every chapter after it; to name chapters one by "
                          "one, use `kn chapter PARAMS CH [CH ...]` instead")
    _add_run_options(run)
    run.set_defaults(func=_run)

    chapter = sub.add_parser("chapter", help="execute only the given chapters again, then build the book",
                             description="Execute only the given chapters for PARAMS (reusing what earlier chapters "
                                         "wrote to the run folder), then build the book.")
    chapter.add_argument("params", metavar="PARAMS", help="params/<model>.yaml")
    chapter.add_argument("chapters", metavar="CH", nargs="+", help=f"a chapter: 04, 4 or 04_land ({', '.join(runner.CHAPTERS)})")
    _add_run_options(chapter)
    chapter.set_defaults(func=_run)

    book = sub.add_parser("book", help="build the book from the runs present",
                          description="Build the book (book/_build/html) from the executed chapters in book/runs/.")
    _add_hidden_options(book)
    book.set_defaults(func=_book)

    cluster = sub.add_parser(
        "submit", help="run the study on a SLURM cluster: the attribution as an array of shards, then the rest",
        description="Submit PARAMS to a SLURM cluster with sbatch: chapter 1 (when the run has no prompts yet), the "
                    "attribution as an array of N tasks (one shard each, all writing into the run's store), then a job "
                    "that runs chapters 2-6 and the book once every task has succeeded. The jobs run a snapshot of the "
                    "committed code (<run>/slurm/code-<commit>), whatever the checkout holds when they start. Run it "
                    "again after a failure: only the prompts still missing are computed. Needs the run folder on a "
                    "file system the nodes share, and this project's environment at the same path on the nodes.",
        epilog="Prints the job ids, how to follow them, and records them in <run>/slurm/submit.json. Exit status: 0 "
               "submitted (with --wait: every job completed); 1 a job failed (named, with its log); 2 bad input.")
    cluster.add_argument("params", metavar="PARAMS", help="params/<model>.yaml")
    cluster.add_argument("--shards", type=int, required=True, metavar="N", help="array tasks (shards of the prompts)")
    cluster.add_argument("--partition", metavar="P", help="the partition of every job (default: the cluster's)")
    cluster.add_argument("--gpus-per-task", type=int, default=0, metavar="G",
                         help="GPUs per job (--gres=gpu:G); default 0: CPU jobs, no GPU requested")
    cluster.add_argument("--cpus-per-task", type=int, metavar="C",
                         help="CPUs per job, its torch threads (default: the cluster's, usually 1)")
    cluster.add_argument("--time", metavar="T", help="time limit of each job, as sbatch reads it (e.g. 8:00:00)")
    cluster.add_argument("--wait", action="store_true",
                         help="block until the last job ends; exit 1 naming any job that failed and its log")
    cluster.add_argument("--allow-dirty", action="store_true",
                         help="submit HEAD although tracked files have uncommitted changes (they are left out)")
    cluster.add_argument("--book-root", default=None, help=argparse.SUPPRESS)
    cluster.add_argument("--poll-seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    cluster.set_defaults(func=_submit)

    check = sub.add_parser(
        "verify", help="say whether a run reproduces its reference run, number by number",
        description="Compare every number of RUN_DIR's chapter summaries with its reference run's (reference/<name>, "
                    "kn.book.reference): exact unless --rtol is given; timings and prose do not count.",
        epilog="Exit status: 0 reproduces the reference (or --stale); 1 a number differs or is missing; 2 bad input "
               "(no run folder, no reference run).")
    check.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (runs/<name>)")
    check.add_argument("--reference", metavar="DIR", default=None,
                       help="the reference run (default reference/<RUN_DIR's name>)")
    check.add_argument("--rtol", type=float, default=0.0, metavar="X",
                       help="accept relative differences up to X (say why: a different torch build or CPU instruction "
                            "set; the output names the differences it found); default 0, exact")
    check.add_argument("--stale", action="store_true",
                       help="list the reference's chapters whose code (notebook, kn modules) changed since it was made")
    check.add_argument("--notebooks", default=None, help=argparse.SUPPRESS)
    check.set_defaults(func=_verify)

    publish = sub.add_parser(
        "reference", help="publish a run as the reference run of its name",
        description="Copy RUN_DIR's small records, its executed chapters and their provenance (commit, lock, machine, "
                    "versions, command, per-chapter seconds and code hashes) to reference/<name>. Refuses a run whose "
                    "chapter 1 has not completed or whose chapters are stale.")
    publish.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (runs/<name>)")
    publish.add_argument("--pages", metavar="DIR", default=None,
                         help="its executed chapters (default book/runs/<RUN_DIR's name>)")
    publish.add_argument("--target", metavar="DIR", default=None, help="where (default reference/<RUN_DIR's name>)")
    publish.set_defaults(func=_reference)

    sub.add_parser("bench", help=f"measure attribution speed ({BENCH_SCRIPT}; arguments passed through)",
                   description=f"Run {BENCH_SCRIPT} with the remaining arguments, unchanged "
                               f"(`kn bench -- --help` shows its own options).",
                   usage="kn bench [ARGS...]")
    return parser


def _run(args) -> int:
    overrides = runner.parse_overrides(args.overrides)
    chapters = getattr(args, "chapters", None)
    if getattr(args, "start", None):  # `kn run` has no chapter list: --from and a list never meet
        chapters = runner.chapters_from(args.start, runner.available_chapters(args.notebooks))
    runner.execute_chapters(args.params, chapters, overrides=overrides, book_root=args.book_root,
                            notebooks_dir=args.notebooks)
    status = 0 if args.no_book else _book(args)
    _say_stale(args, overrides)
    return status


def _say_stale(args, overrides: dict) -> None:
    """The run's stale chapters and the command that refreshes them (kn.base.lineage.stale_report)."""
    run_dir = runner.check_params(args.params, overrides).resolved_run_dir()
    for line in lineage.stale_report(run_dir, args.params):
        print(f"[stale] {line}", flush=True)


def _submit(args) -> int:
    submission = submit.submit(args.params, args.shards, partition=args.partition, gpus_per_task=args.gpus_per_task,
                               cpus_per_task=args.cpus_per_task, time_limit=args.time, allow_dirty=args.allow_dirty,
                               book_root=args.book_root)
    if not args.wait:
        return 0
    try:
        failures = submit.wait(submission, poll_seconds=args.poll_seconds)
    except KeyboardInterrupt:
        print(f"kn submit: stopped waiting; the jobs go on (scancel {' '.join(submission['jobs'].values())} stops "
              "them)", file=sys.stderr, flush=True)
        raise
    for line in failures:
        print(f"kn submit: {line}", file=sys.stderr, flush=True)
    if failures:
        options = [(flag, value) for flag, value in (("--partition", args.partition), ("--time", args.time),
                   ("--gpus-per-task", args.gpus_per_task or None), ("--cpus-per-task", args.cpus_per_task))
                   if value is not None]
        again = " ".join(["kn submit", args.params, "--shards", str(args.shards), *(f"{f} {v}" for f, v in options)])
        print(f"kn submit: once the cause is fixed, `{again}` again computes only the prompts still missing, "
              "then runs the later chapters", file=sys.stderr, flush=True)
        return 1
    print("kn submit: every job completed", flush=True)
    return 0


def _verify(args) -> int:
    run_dir = Path(args.run_dir)
    name = run_dir.resolve().name
    reference_dir = Path(args.reference) if args.reference else project_root() / reference.REFERENCE_FOLDER / name
    if args.stale:
        notebooks = Path(args.notebooks) if args.notebooks else project_root() / "notebooks"
        if not reference_dir.is_dir():
            raise MissingArtifact(f"no reference run at {reference_dir}")
        stale = reference.stale_code(reference_dir, notebooks, project_root() / "lib")
        for chapter, (commit, _, now) in stale.items():
            change = "its code changed since" if now else "its notebook is gone"
            print(f"{chapter}: made by an older commit ({(commit or 'unknown')[:10]}); {change}", flush=True)
        if not stale:
            print(f"no chapter of {reference_dir.name}'s reference changed its code since it was made", flush=True)
        return 0
    result = reference.verify(run_dir, reference_dir, rtol=args.rtol)
    for line in result.lines():
        print(line, flush=True)
    return 0 if result.ok else 1


def _reference(args) -> int:
    run_dir = Path(args.run_dir)
    name = run_dir.resolve().name
    pages = Path(args.pages) if args.pages else project_root() / "book" / "runs" / name
    target = Path(args.target) if args.target else project_root() / reference.REFERENCE_FOLDER / name
    command = shlex.join(["kn", *args.argv])
    consumed = lineage.load(run_dir / f"{lineage.CONSUMED}.json")  # the params file the chapters recorded
    params_file = next((entry["params_file"] for _, entry in sorted(consumed.items()) if entry.get("params_file")), "")
    published = reference.publish(run_dir, pages, target, command=command, params_file=params_file)
    provenance = lineage.load(published / "provenance.json")
    print(f"[reference] published {run_dir} as {published}: {len(list((published / 'record').iterdir()))} records, "
          f"{len(list((published / 'pages').iterdir()))} pages, {provenance['size_bytes'] / 2**20:.1f} MiB, commit "
          f"{(provenance['commit'] or 'none: not a checkout')[:10]}", flush=True)
    for table in provenance["left_out"]:
        print(f"[reference] left out (over {reference.MAX_TABLE_BYTES // 2**20} MiB): {table}", flush=True)
    if provenance["dirty"]:
        print("[reference] warning: tracked files differ from the commit; the provenance says so (dirty)", flush=True)
    return 0


def _book(args) -> int:
    started = time.perf_counter()
    print("[book] building", flush=True)
    index = build.build_book(args.book_root)
    try:
        index = index.relative_to(project_root())
    except ValueError:
        pass
    print(f"[book] built in {time.perf_counter() - started:.0f} s: {index}", flush=True)
    return 0


def bench(arguments: list[str]) -> int:
    script = project_root() / BENCH_SCRIPT
    if not script.is_file():
        print(f"kn: {BENCH_SCRIPT} is not there: `kn bench` runs from a checkout of the project", file=sys.stderr)
        return 1
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    return subprocess.run([sys.executable, str(script), *arguments], cwd=project_root()).returncode


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"] and argv[1:] not in (["-h"], ["--help"]):
        return bench(argv[1:])  # every argument belongs to the benchmark
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2): argparse has printed it
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    args.argv = argv  # the command as typed (kn reference records it)
    previous = _exit_on_sigterm()
    try:
        return args.func(args)
    except BadInput as err:  # raised in this process: a parameter, a chapter name, the data folder
        return error(str(err))
    except runner.ChapterFailed as err:
        if err.bad_input:  # raised inside the chapter's kernel, but the user's input is to blame
            return error(f"{err.chapter}: {err.evalue}" + (f"; {err.keep_error}" if err.keep_error else ""))
        raise  # a bug: its traceback (and the kernel's) shows, exit status 1
    except KeyboardInterrupt:
        print("kn: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm():
    """SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: the runner removes what a failed run must not leave."""
    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    try:
        return signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread
        return None


if __name__ == "__main__":
    sys.exit(main())
