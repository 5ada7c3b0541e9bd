"""kn.base.runlock: one writer per run folder, and safe updates of the records several processes of one run share.

API
    run_lock(run_dir, command) -> context manager
        an OS file lock (fcntl.flock, exclusive, non-blocking) on <run_dir>/.kn.lock for the block; a second kn on the
        same folder stops at once with RunFolderBusy naming the holder's PID and command. The OS drops the lock when
        its holder exits in any way (a SIGKILL included), so a lock is never stale: a dead holder's file is reused.
    holder(run_dir) -> str | None        "PID N: COMMAND" of the process holding the lock, None when free
    locked_update(path, update, default) -> value
        read-modify-write of the JSON file ``path`` under a lock of its own (<path>.lock), written atomically:
        update(current or default) returns the new value. For records that shard jobs of one run write together
        (the deliberate exception to one writer per folder: they write per-shard parts and merge the shared JSON).
    LOCK_NAME
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from kn.base.errors import RunFolderBusy
from kn.base.io import atomic_write_bytes

LOCK_NAME = ".kn.lock"


def holder(run_dir: str | Path) -> str | None:
    path = Path(run_dir) / LOCK_NAME
    if not path.is_file():
        return None
    with open(path, "a+b", buffering=0) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            return handle.read().decode("utf-8", "replace").strip() or "an unknown process"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def run_lock(run_dir: str | Path, command: str):
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK_NAME, "a+b", buffering=0)  # unbuffered: closing never flushes onto a full disk
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            who = handle.read().decode("utf-8", "replace").strip() or "an unknown process"
            raise RunFolderBusy(f"run folder {run_dir} is in use by another kn ({who}); wait for it to end, or "
                                "choose another run_dir") from None
        with contextlib.suppress(OSError):  # who holds it is for the message only: a full disk must not stop the run
            handle.truncate(0)
            handle.write(f"PID {os.getpid()}: {command}\n".encode())
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # the folder may be gone (a failed first chapter removes it)
                handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def locked_update(path: str | Path, update, default=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            current = json.loads(path.read_text()) if path.is_file() else default
            value = update(current)
            atomic_write_bytes(path, json.dumps(value, indent=2, sort_keys=True, default=str).encode())
            return value
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
