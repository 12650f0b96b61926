"""The run directory: its files, its lock, and reading a run back.

A run directory (``train --out``) holds ``run.json`` (what the run is: identity, effective
config, dataset and its sha256, the command), ``checkpoint.msgpack`` (the latest states, with the
one before it kept as ``checkpoint.msgpack.prev``), ``records/`` (one record per (task, seed),
``rql_lite.runs.records``) and, once asked for, ``videos/``.

One process at a time: a command holds an OS lock (``flock``) on ``.lock`` inside the directory
while it works there; a second command stops at once, naming the holder. The OS drops the lock
when its holder ends, however it ends (kill -9 included). Temporary files of a killed write
(``rql_lite.files``) are removed when the directory is next opened for writing.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import threading

from rql_lite import files
from rql_lite.agent import AgentConfig
from rql_lite.runs import checkpoint
from rql_lite.train import init_states

RUN_FILE, CHECKPOINT_FILE, RECORDS_DIR = "run.json", "checkpoint.msgpack", "records"
LOCK_FILE = ".lock"  # flock'ed by the process working in the directory; holds its PID and command


class RunDirectoryBusy(ValueError):
    """Another process is working in the run directory."""


def _holder_description(lock_path: str) -> str:
    try:
        with open(lock_path) as f:
            holder = json.load(f)
        return f"PID {holder['pid']} (`{holder['command']}`, since {holder['since']})"
    except (OSError, ValueError, KeyError, TypeError):  # the holder has not written its name yet
        return "another process"


def _busy(run_dir: str, lock_path: str) -> RunDirectoryBusy:
    return RunDirectoryBusy(f"{run_dir} is in use by {_holder_description(lock_path)}; wait until it ends "
                            f"(or stop it), then run this command again")


def check_not_busy(run_dir: str) -> None:
    """``RunDirectoryBusy`` naming the holder if a process works in ``run_dir``. Creates and changes nothing."""
    lock_path = os.path.join(run_dir, LOCK_FILE)
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:  # no lock file: nobody has ever held it, or the last holder ended cleanly
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: conflicts only with a holder
        except BlockingIOError:
            raise _busy(run_dir, lock_path) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class RunDirectoryLock:
    """Exclusive ownership of a run directory for as long as the object is held (a context manager).

    An ``fcntl.flock`` on ``run_dir/.lock``, which records the holder's PID and command so that a
    second command can name it. The OS drops the lock when its process ends, however it ends
    (kill -9 included), so a lock cannot outlive its holder. ``release`` removes the lock file
    (before unlocking, so that a waiting process re-checks which file it locked) and the directory
    too if this lock created it and nothing was written there.
    """

    def __init__(self, run_dir: str, command: str):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, LOCK_FILE)
        self.created_dir = not os.path.isdir(run_dir)
        os.makedirs(run_dir, exist_ok=True)
        self.fd = None
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise _busy(run_dir, self.path) from None
            # The last holder may have removed the file between our open and our flock: then we
            # hold a lock nobody else sees, and must lock the file that is there now.
            try:
                current = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                current = False
            if current:
                self.fd = fd
                break
            os.close(fd)
        if self.fd is None:
            raise RunDirectoryBusy(f"{run_dir}: other processes keep taking its lock; try again")
        holder = json.dumps({"pid": os.getpid(), "command": command, "since": files.utc_now()})
        os.ftruncate(self.fd, 0)
        os.write(self.fd, holder.encode())

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.remove(self.path)
        os.close(self.fd)
        self.fd = None
        if self.created_dir:
            with contextlib.suppress(OSError):  # only succeeds if the directory is still empty
                os.rmdir(self.run_dir)

    def __enter__(self) -> "RunDirectoryLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def claim_for_reading(run_dir: str, command: str):
    """Hold ``run_dir`` while reading it (``evaluate``, ``export``); a run directory on read-only
    storage, where nobody can be writing, is read without a lock."""
    if not os.path.isdir(run_dir):
        raise ValueError(f"--run {run_dir} is not a directory; pass the --out directory of a train command")
    try:
        lock = RunDirectoryLock(run_dir, command)
    except OSError:  # cannot create the lock file: read-only, so no training can run here either
        check_not_busy(run_dir)
        yield
        return
    with lock:
        yield


def remove_stale_temporaries(run_dir: str) -> list[str]:
    """Delete the temporary files killed writes left in ``run_dir`` (call it while holding the lock);
    return their paths. They are never read: a write is complete only once it is renamed."""
    return files.remove_stale_temporaries(run_dir)


def read_run_info(run_dir: str) -> dict:
    """The ``run.json`` of ``run_dir``; a ``ValueError`` naming the file if it is missing or damaged."""
    path = os.path.join(run_dir, RUN_FILE)
    info = files.read_json_file(path, f"{run_dir} holds no run ({RUN_FILE} missing); pass the --out directory of a train "
                                f"command", "restore it from a copy, or start the run again in a new --out")
    required = ("identity", "config", "dataset")
    if not isinstance(info, dict) or any(not isinstance(info.get(k), dict) for k in required):
        raise ValueError(f"{path} is not an rql_lite run file (it lacks {', '.join(required)}); pass the --out "
                         f"directory of a train command")
    return info


def runs_of(info: dict) -> list[tuple[str, int]]:
    """``(task, seed)`` of each agent of a run (``run.json``'s content), in the order of its stacked states."""
    identity = info["identity"]
    tasks = [identity["task"]] if isinstance(identity["task"], str) else list(identity["task"])
    return [(str(task), int(seed)) for task in tasks for seed in identity["seeds"]]


def load_run(run_dir: str, log=None):
    """``(run_info, states, checkpoint_metadata)`` of a run directory: its ``run.json`` and the
    stacked states (leading axis = run, in ``runs_of(run_info)`` order: seeds for a one-task run) of
    its latest good checkpoint (the previous one if the latest is damaged; ``log`` hears about it)."""
    info = read_run_info(run_dir)
    try:
        config = AgentConfig(**info["config"])
        seeds = [seed for _, seed in runs_of(info)]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{os.path.join(run_dir, RUN_FILE)} holds an invalid config or seeds ({err}); restore it "
                         f"from a copy") from None
    states, _ = init_states(config, seeds)
    ckpt_path = os.path.join(run_dir, CHECKPOINT_FILE)
    try:
        states, meta, used, problems = checkpoint.load_latest(ckpt_path, states, expected={"config": info["config"]})
    except checkpoint.NoCheckpoint:
        raise ValueError(f"{run_dir} has no checkpoint yet (its training stopped before the first save); train "
                         f"it further first: {info.get('command', 'python -m rql_lite train ...')} --resume") from None
    check_checkpoint_identity(used, meta, info["identity"])
    for problem in problems:
        (log or _warn)(f"warning: {problem}; using {used} (step {meta['step']})")
    return info, states, meta


def check_checkpoint_identity(path: str, meta: dict, identity: dict) -> None:
    """Refuse a checkpoint (its ``meta``data) of another run than ``identity`` (run.json's). Its
    planned steps may be fewer: checkpoints saved before a run was extended keep the shorter plan."""
    theirs, mine = meta.get("identity", {}), json.loads(json.dumps(identity))
    planned = theirs.get("steps") if isinstance(theirs, dict) else None
    if (not isinstance(planned, int) or {**theirs, "steps": None} != {**mine, "steps": None}
            or planned > mine["steps"] or int(meta.get("step", 0)) > mine["steps"]):
        raise ValueError(f"checkpoint {path} belongs to another run: its identity is {theirs!r}, this run's is "
                         f"{mine!r}; use a fresh --out or the original settings")


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


@contextlib.contextmanager
def signals_deferred():
    """Hold back Ctrl-C and SIGTERM while a file is written, then deliver them.

    Python raises ``KeyboardInterrupt`` wherever the main thread happens to be; deferring it
    here means a save is always finished or not started (kill -9 cannot be deferred: atomic
    writes cover that).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received, previous = [], {}

    def remember(signum, frame):
        received.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not None:  # None: a handler Python cannot put back
            previous[signum] = signal.signal(signum, remember)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in received[:1]:
            signal.raise_signal(signum)
