"""One training run on an OGBench task, as the ``train`` command runs it.

A run directory (``--out``) holds ``run.json`` (what the run is: task, agent, seeds,
effective config, dataset and its sha256), ``checkpoint.msgpack`` (latest states, with the
one before it kept as ``checkpoint.msgpack.prev``) and ``records/seed{S}.json`` (one
machine-readable record per seed: success curve, steps, device, git commit, wall time).
Results tables are built only from such records.

A run may cover several tasks of one domain (``--tasks``): they share one dataset, so the
``tasks x seeds`` agents train in one program (``rql_lite.train.runs_program``: one after another
with ``lax.map`` on a CPU, batched with ``vmap`` on an accelerator), and each (task, seed) gets its
own record, ``records/{task}/seed{S}.json``.

A run may also be cut into time-limited segments (``max_minutes``): it stops before the
limit at the end of a dispatch, checkpoints, writes its records (unfinished), and the same
command with ``--resume`` continues it, with the same parameters as one uninterrupted run.

A run directory survives what a cluster or a tired user does to it:

- one process at a time: a command holds an OS lock (``flock``) on ``.lock`` inside the
  directory while it works there; a second command stops at once, naming the holder;
- the checkpoint holds the success curves and the wall time, so a run stopped in any way
  (Ctrl-C, kill -9, a time limit) and resumed ends with the same records as an uninterrupted
  one, apart from wall times; the last step is always evaluated and saved;
- temporary files of a killed write are removed when the directory is next opened;
- every argument is checked before any data is loaded or any file written.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import shlex
import signal
import threading
import time

import numpy as np

from rql_lite.runs import checkpoint
from rql_lite.agent import AGENTS, AgentConfig
from rql_lite.configs import RUN_PROFILES, agent_config
from rql_lite.data import (check_dataset_source, check_task, check_writable_directory, from_dict, from_task_dicts,
                           load_ogbench)
from rql_lite.files import device_description, git_commit, utc_now, write_json_atomic
from rql_lite.train import TrainingInterrupted, default_batching, init_states, run_layout, train, unstack

RECORD_SCHEMA = "rql_lite-run-record-v1"
RUN_FILE, CHECKPOINT_FILE, RECORDS_DIR = "run.json", "checkpoint.msgpack", "records"
LOCK_FILE = ".lock"  # flock'ed by the process working in the directory; holds its PID and command
MAX_SEED = 2**31 - 1  # jax.random.PRNGKey folds larger integers onto small ones: seeds would collide
FIXED_BY_DATA = ("obs_dim", "action_dim")  # hyperparameters the dataset sets, not --set


class RunDirectoryBusy(ValueError):
    """Another process is working in the run directory."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a run after saving its progress; the message says how to continue."""


class TrainingDiverged(ValueError):
    """A loss became NaN or infinite; nothing of the diverged state is saved."""


def check_tasks(tasks) -> tuple[str, ...]:
    """The task names of a run, checked: known, distinct, and all on one dataset (one domain)."""
    from rql_lite.ogbench.generate import dataset_name_for_task

    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    if not tasks:
        raise ValueError("give a task (--task) or several tasks of one domain (--tasks)")
    for task in tasks:
        if not isinstance(task, str):
            raise ValueError(f"task names are strings, got {task!r}")
        check_task(task)
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"--tasks must be distinct, got {list(tasks)}")
    datasets = {task: dataset_name_for_task(task) for task in tasks}
    if len(set(datasets.values())) > 1:
        raise ValueError(f"--tasks must share one dataset (tasks 1-5 of one domain); these use "
                         f"{', '.join(sorted(set(datasets.values())))}. Start one run per domain")
    return tasks


def _check_int(value, flag: str, minimum: int, maximum: int | None = None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum
            or (maximum is not None and value > maximum)):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{flag} must be an integer {bound}, got {value!r}")


@dataclasses.dataclass
class RunSpec:
    """Everything that defines a run; ``None`` fields take the profile's default."""

    task: str | tuple[str, ...]  # one task, or several of one domain (they share the dataset)
    agent: str = "rql"
    seeds: tuple[int, ...] = (0,)
    steps: int | None = None
    dataset: str = "generated"  # "official", "generated" or a NAME.npz path
    out: str = "runs/run"
    profile: str = "smoke"
    overrides: dict = dataclasses.field(default_factory=dict)
    eval_every: int | None = None
    eval_episodes: int | None = None
    save_every: int | None = None
    dataset_episodes: int | None = None
    episode_length: int | None = None
    max_eval_steps: int | None = None
    data_dir: str = os.path.join("~", ".rql_lite", "datasets")
    workers: int = 1
    video_episodes: int = 0
    label: str | None = None  # the method's name in results tables; default the agent ("RQL", "TFQL")

    def resolved(self) -> "RunSpec":
        """This spec with the profile's defaults filled in, every field checked.

        Reads no data and writes nothing: a bad value (an unknown name, a number out of range,
        ``--set learning_rate=inf``) is a ``ValueError`` naming the argument before any work starts.
        """
        if self.profile not in RUN_PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose one of {sorted(RUN_PROFILES)}")
        if self.agent not in AGENTS:
            raise ValueError(f"unknown agent {self.agent!r}; choose one of {list(AGENTS)}")
        tasks = check_tasks(self.task)
        defaults = RUN_PROFILES[self.profile]
        changes = {k: defaults[k] for k in defaults if getattr(self, k) is None}
        if self.dataset_episodes is None and self.profile == "full":
            changes.pop("dataset_episodes", None)
        seeds = tuple(self.seeds) if isinstance(self.seeds, (list, tuple)) else (self.seeds,)
        for seed in seeds:
            _check_int(seed, "--seeds", 0, MAX_SEED)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"--seeds must be distinct and at least one, got {list(seeds)}")
        spec = dataclasses.replace(self, **changes, seeds=tuple(int(s) for s in seeds),
                                   task=tasks[0] if len(tasks) == 1 else tasks)
        for name, minimum in (("steps", 1), ("eval_every", 1), ("save_every", 1), ("eval_episodes", 0),
                              ("episode_length", 1), ("workers", 1), ("video_episodes", 0)):
            _check_int(getattr(spec, name), "--" + name.replace("_", "-"), minimum)
        for name in ("dataset_episodes", "max_eval_steps"):
            _check_int(getattr(spec, name), "--" + name.replace("_", "-"), 1, allow_none=True)
        if spec.label is not None and (not isinstance(spec.label, str) or not spec.label.strip() or "\n" in spec.label):
            raise ValueError(f"--label must be a non-empty one-line name, got {spec.label!r}")
        if not isinstance(spec.out, str) or not spec.out:
            raise ValueError("--out must name a directory")
        check_dataset_source(spec.dataset)
        spec._check_overrides()
        return spec

    def _check_overrides(self) -> None:
        """Build the agent's config once with placeholder dimensions, so a bad ``--set`` fails now."""
        if not isinstance(self.overrides, dict):
            raise ValueError(f"overrides must be a dict of hyperparameters, got {type(self.overrides).__name__}")
        for name in FIXED_BY_DATA:
            if name in self.overrides:
                raise ValueError(f"--set {name}: it is read from the dataset and cannot be set; drop it")
        if "agent" in self.overrides:
            raise ValueError("--set agent: choose the agent with --agent (rql or tfql), not --set")
        try:
            agent_config(self.tasks[0], obs_dim=1, action_dim=1, profile=self.profile, agent=self.agent, **self.overrides)
        except (ValueError, TypeError) as err:
            raise ValueError(f"--set: {err}") from None

    @property
    def tasks(self) -> tuple[str, ...]:
        """The run's tasks (one for ``--task``)."""
        return (self.task,) if isinstance(self.task, str) else tuple(self.task)

    @property
    def multi_task(self) -> bool:
        return len(self.tasks) > 1

    def runs(self) -> list[tuple[str, int]]:
        """``(task, seed)`` of each agent, in the order of the stacked states (task-major)."""
        return [(task, seed) for task in self.tasks for seed in self.seeds]

    def run_name(self, task: str, seed: int) -> str:
        """The key of one agent's curve in the checkpoint: ``"S"`` in a one-task run, ``"TASK/seedS"`` otherwise."""
        return f"{task}/seed{seed}" if self.multi_task else str(seed)

    def record_path(self, task: str, seed: int) -> str:
        """``records/seed{S}.json`` in a one-task run, ``records/{task}/seed{S}.json`` otherwise."""
        parts = (RECORDS_DIR, task) if self.multi_task else (RECORDS_DIR,)
        return os.path.join(self.out, *parts, f"seed{seed}.json")

    def method(self) -> str:
        """The name results tables give this run's agent, e.g. ``"RQL"`` or a ``label`` like ``"BC flow"``."""
        return self.label or self.agent.upper()

    def command(self) -> str:
        """The ``python -m rql_lite train ...`` command line that starts exactly this run."""
        task_flag = f"--tasks {' '.join(self.tasks)}" if self.multi_task else f"--task {self.task}"
        parts = ["python -m rql_lite train", task_flag, f"--agent {self.agent}",
                 "--seeds " + " ".join(str(s) for s in self.seeds), f"--steps {self.steps}",
                 f"--dataset {self.dataset}", f"--profile {self.profile}", f"--out {self.out}"]
        if self.overrides:
            parts.append("--set " + " ".join(f"{k}={_cli_value(v)}" for k, v in sorted(self.overrides.items())))
        flags = ("eval_every", "eval_episodes", "save_every", "dataset_episodes", "episode_length", "max_eval_steps")
        defaults = RUN_PROFILES[self.profile]
        for name in flags:
            value = getattr(self, name)
            if value is not None and value != defaults.get(name):
                parts.append(f"--{name.replace('_', '-')} {value}")
        if self.label:
            parts.append(f"--label {shlex.quote(self.label)}")
        return " ".join(parts)

    def identity(self) -> dict:
        """What must match for two invocations to be the same run (resume allowed)."""
        return {"task": list(self.tasks) if self.multi_task else self.task, "agent": self.agent, "seeds": list(self.seeds), "steps": self.steps,
                "dataset": self.dataset, "profile": self.profile, "overrides": dict(sorted(self.overrides.items())),
                "dataset_episodes": self.dataset_episodes, "episode_length": self.episode_length}


def _cli_value(value) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, (tuple, list)) else str(value)


def config_dict(config: AgentConfig) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}


# --------------------------------------------------------------------------- the run directory

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
        holder = json.dumps({"pid": os.getpid(), "command": command, "since": utc_now()})
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
    """Delete the temporary files a killed write left in ``run_dir`` (call it while holding the lock).

    Returns their paths. They are never read: a write is complete only once it is renamed.
    """
    removed = []
    for folder in (run_dir, os.path.join(run_dir, RECORDS_DIR)):
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if checkpoint.is_temporary(name):
                path = os.path.join(folder, name)
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                    removed.append(path)
    return removed


def read_run_info(run_dir: str) -> dict:
    """The ``run.json`` of ``run_dir``; a ``ValueError`` naming the file if it is missing or damaged."""
    path = os.path.join(run_dir, RUN_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"{run_dir} holds no run ({RUN_FILE} missing); pass the --out directory of a train command")
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is damaged (not valid JSON: {err.msg} at line {err.lineno}); restore it from a "
                         f"copy, or start the run again in a new --out") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is damaged (not text); restore it from a copy, or start the run again in a "
                         f"new --out") from None
    required = ("identity", "config", "dataset")
    if not isinstance(info, dict) or any(not isinstance(info.get(k), dict) for k in required):
        raise ValueError(f"{path} is not an rql_lite run file (it lacks {', '.join(required)}); pass the --out "
                         f"directory of a train command")
    return info


def check_out_dir(spec: RunSpec, resume: bool) -> dict | None:
    """Refuse an output directory holding something else; return its run.json when resuming.

    A directory holding only what a killed start left (a lock file, temporary files) counts as
    empty, so it can never get stuck.
    """
    if os.path.isfile(os.path.join(spec.out, RUN_FILE)):
        existing = read_run_info(spec.out)
        theirs = existing.get("identity", {})
        mine = json.loads(json.dumps(spec.identity()))  # as run.json stores it (tuples become lists)
        if theirs != mine:
            diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
            detail = "; ".join(f"{k}: {json.dumps(theirs.get(k))} there, {json.dumps(mine.get(k))} here" for k in diff)
            raise ValueError(f"{spec.out} holds another run's results (it differs in {detail}); choose another --out")
        # Not part of what the run is, but of what its records mean: a resumed run must evaluate as before.
        stored = existing.get("spec", {})
        for name in ("eval_episodes", "max_eval_steps"):
            if name in stored and stored[name] != getattr(spec, name) and resume:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{spec.out} evaluates with {flag} {stored[name]}; resume it with the same value "
                                 f"(got {getattr(spec, name)}), or start a new --out")
        if not resume:
            raise ValueError(f"{spec.out} already holds this run; pass --resume to continue it, or choose another "
                             f"--out")
        return existing
    if os.path.isdir(spec.out):
        kept = [e for e in os.listdir(spec.out) if e != LOCK_FILE and not checkpoint.is_temporary(e)]
        if kept:
            raise ValueError(f"{spec.out} is not empty and holds no rql_lite run ({RUN_FILE} missing); choose an "
                             f"empty or new --out")
        return None
    if resume:
        raise ValueError(f"--resume given but {spec.out} does not exist; drop --resume to start the run there")
    return None


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
        states, meta, used, problems = checkpoint.load_latest(
            ckpt_path, states, expected={"identity": info["identity"], "config": info["config"]})
    except checkpoint.NoCheckpoint:
        raise ValueError(f"{run_dir} has no checkpoint yet (its training stopped before the first save); train "
                         f"it further first: {info.get('command', 'python -m rql_lite train ...')} --resume") from None
    for problem in problems:
        (log or _warn)(f"warning: {problem}; using {used} (step {meta['step']})")
    return info, states, meta


def _warn(message: str) -> None:
    import sys

    print(message, file=sys.stderr)


@contextlib.contextmanager
def _signals_deferred():
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


# --------------------------------------------------------------------------- one run

def load_task_data(spec: RunSpec, progress: bool = True):
    """``(dataset, obs_dim, action_dim, data_info)``: the training split of every task of ``spec``
    on the device, rewards and masks ``(N,)`` for one task and ``(N, tasks)`` for several."""
    columns, data_info, first = [], None, None
    for task in spec.tasks:
        _, train_data, _, info = load_ogbench(
            task, spec.dataset, data_dir=spec.data_dir, num_episodes=spec.dataset_episodes,
            workers=spec.workers, episode_length=spec.episode_length, progress=progress)
        if data_info is None:
            data_info, first = info, train_data
            columns.append(train_data)
        elif info["sha256"] != data_info["sha256"]:
            raise ValueError(f"{task} loaded another dataset file than {spec.tasks[0]}; tasks of one run share one")
        else:  # only the rewards and masks differ; keep one copy of the rest
            columns.append({**first, "rewards": train_data["rewards"], "masks": train_data["masks"]})
    obs_dim, action_dim = first["observations"].shape[1], first["actions"].shape[1]
    dataset = from_dict(first) if len(columns) == 1 else from_task_dicts(columns, names=spec.tasks)
    return dataset, obs_dim, action_dim, data_info


def run(spec: RunSpec, resume: bool = False, progress: bool = True, log=print,
        command: str | None = None, max_minutes: float | None = None) -> list[dict]:
    """Train, evaluate, checkpoint and record one run. Returns the records, one per (task, seed).

    ``command``: the command line that started this, shown to a second command that finds the
    directory busy and in the message that says how to continue (default: ``spec.command()``).
    ``max_minutes``: end this invocation cleanly before this much wall time (counted from the
    call, data loading included): the dispatch that would cross the limit is not started (a
    prediction from the ones before; the first dispatch always runs, so every segment makes
    progress), the states are saved, the records are written unfinished, and
    ``SegmentEnded`` is raised; ``--resume`` continues.
    Raises ``RunInterrupted`` (a ``KeyboardInterrupt``) after saving when Ctrl-C stops it,
    ``RunDirectoryBusy`` at once if another process works in ``spec.out``, and ``ValueError``
    for bad input before anything is written.
    """
    started = time.perf_counter()
    spec = spec.resolved()
    if max_minutes is not None and not (isinstance(max_minutes, (int, float)) and math.isfinite(max_minutes)
                                        and max_minutes > 0):
        raise ValueError(f"--max-minutes must be a number > 0, got {max_minutes!r}")
    check_writable_directory(spec.out, "--out")
    check_not_busy(spec.out)
    check_out_dir(spec, resume)  # a first look; checked again below, once the directory is ours
    dataset, obs_dim, action_dim, data_info = load_task_data(spec, progress)
    config = agent_config(spec.tasks[0], obs_dim, action_dim, profile=spec.profile, agent=spec.agent, **spec.overrides)
    command = command or spec.command() + (" --resume" if resume else "")
    with RunDirectoryLock(spec.out, command):
        for path in remove_stale_temporaries(spec.out):
            log(f"removed {path}: an unfinished write of a process that was killed")
        existing = check_out_dir(spec, resume)  # the directory may have changed while the data loaded
        if existing is not None and existing["dataset"].get("sha256") != data_info["sha256"]:
            raise ValueError(f"the dataset changed since {spec.out} was started (sha256 differs); resume with the "
                             f"same data")
        if existing is None and resume:
            log(f"nothing to resume in {spec.out} yet: starting the run")
        log(f"effective config: {json.dumps(config_dict(config), sort_keys=True)}")
        log(f"dataset: {data_info['source']} {data_info['num_transitions']} transitions, "
            f"sha256 {data_info['sha256'][:12]}")
        job = _Run(spec, config, data_info, command, log)
        if max_minutes is not None:
            job.deadline = started + 60.0 * max_minutes
        if existing is None:
            write_json_atomic(os.path.join(spec.out, RUN_FILE), job.run_info)
        return job.run_to_completion(dataset, resume=existing is not None, progress=progress)


class SegmentEnded(Exception):
    """A run stopped before its ``max_minutes`` limit after saving; ``records`` are unfinished and the
    message says how to continue."""

    def __init__(self, message: str, records: list[dict]):
        super().__init__(message)
        self.records = records


class _Run:
    """The state of one run while it trains: curves, wall time, the step its checkpoint holds."""

    def __init__(self, spec: RunSpec, config: AgentConfig, data_info: dict, command: str, log):
        self.spec, self.config, self.data_info, self.log = spec, config, data_info, log
        self.continue_with = command if "--resume" in command.split() else command + " --resume"
        self.commit = git_commit()  # the code this run starts from (read once: later commits did not run here)
        self.run_info = {"identity": spec.identity(), "config": config_dict(config), "dataset": data_info,
                         "spec": dataclasses.asdict(spec), "command": spec.command(), "method": spec.method(),
                         "git_commit": self.commit, "created": utc_now()}
        self.ckpt_path = os.path.join(spec.out, CHECKPOINT_FILE)
        # (task, seed) -> [{"step", "success_rate", "episodes", "wall_time_s"}]
        self.curves = {run: [] for run in spec.runs()}
        self.wall_before, self.started = 0.0, time.perf_counter()
        self.saved_step = None  # the step the checkpoint on disk holds
        self.latest = None  # the last complete states seen, saved if Ctrl-C arrives during evaluation
        self.eval_pool = None  # the evaluation envs and their worker processes, made at the first evaluation
        self.deadline = None  # time.perf_counter() value this invocation must end before (max_minutes)
        self.longest_milestone = 0.0  # seconds of the longest evaluation + save so far, kept in the checkpoint

    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    # ------------------------------------------------------------------ checkpoint and records
    def expected(self) -> dict:
        return {"identity": self.spec.identity(), "config": config_dict(self.config)}

    def save(self, states, step: int) -> None:
        """Checkpoint ``states`` with the curves so far, then the records (which never run ahead of it)."""
        with _signals_deferred():
            checkpoint.save(self.ckpt_path, states, {**self.expected(), "step": step, "wall_time_s": self.wall(),
                                                     "longest_milestone_s": round(self.longest_milestone, 3),
                                                     "curves": {spec_name: self.curves[run] for run, spec_name
                                                                in self.curve_names().items()}})
            self.saved_step = step
            self.write_records(step)

    def curve_names(self) -> dict:
        """(task, seed) -> its key in the checkpoint's curves."""
        return {(task, seed): self.spec.run_name(task, seed) for task, seed in self.spec.runs()}

    def write_records(self, step: int) -> list[dict]:
        spec, records = self.spec, []
        for task, seed in spec.runs():
            curve = self.curves[(task, seed)]
            record = {
                "schema": RECORD_SCHEMA, "task": task, "agent": spec.agent, "method": spec.method(),
                "seed": seed, "steps": step,
                "target_steps": spec.steps, "finished": step == spec.steps and self.evaluated_at(step),
                "profile": spec.profile,
                "config": config_dict(self.config), "dataset": self.data_info, "eval_episodes": spec.eval_episodes,
                "success_curve": curve, "final_success_rate": curve[-1]["success_rate"] if curve else None,
                "git_commit": self.commit, "device": device_description(), "wall_time_s": round(self.wall(), 2),
                "num_seeds_in_run": len(spec.seeds), "runs_in_program": len(spec.runs()),
                "runs_batching": default_batching(),  # "map" (one after another, CPU) or "vmap" (batched)
                "command": self.run_info["command"], "updated": utc_now(),
            }
            if spec.multi_task:
                record["tasks_in_program"] = list(spec.tasks)
            write_json_atomic(spec.record_path(task, seed), record)
            records.append(record)
        return records

    def resume_from_checkpoint(self, states):
        """The states of the latest good checkpoint (the previous one if the latest is damaged)."""
        try:
            states, meta, used, problems = checkpoint.load_latest(self.ckpt_path, states, expected=self.expected())
        except checkpoint.NoCheckpoint:
            self.log(f"no checkpoint in {self.spec.out} yet: starting from step 0")
            return states
        for problem in problems:
            self.log(f"warning: {problem}")
        if used != self.ckpt_path and os.path.exists(self.ckpt_path):
            # Set it aside, or the next save would rotate it over the good previous one.
            os.replace(self.ckpt_path, self.ckpt_path + ".damaged")
            self.log(f"moved the damaged checkpoint to {self.ckpt_path}.damaged; resuming from {used}")
        by_name = {name: run for run, name in self.curve_names().items()}
        self.curves = {by_name[name]: c for name, c in meta["curves"].items()}
        self.wall_before, self.started = float(meta["wall_time_s"]), time.perf_counter()
        self.longest_milestone = float(meta.get("longest_milestone_s", 0.0))
        self.saved_step = int(meta["step"])
        if self.saved_step == self.spec.steps and self.evaluated_at(self.saved_step):
            self.log(f"{self.spec.out} is already finished ({self.saved_step} steps): nothing to train")
        else:
            self.log(f"resumed from step {self.saved_step}")
        return states

    # ------------------------------------------------------------------ evaluation
    def evaluated_at(self, step: int) -> bool:
        return self.spec.eval_episodes == 0 or all(c and c[-1]["step"] == step for c in self.curves.values())

    def evaluate_at(self, states, step: int) -> float:
        """Evaluate every (task, seed) at ``step`` in one ``evaluate_many`` call (all episodes in
        lockstep, one policy call per chunk); the curves grow only once all runs are done."""
        from rql_lite.ogbench.evaluate import eval_pool, evaluate_many

        runs = self.spec.runs()
        tasks = [task for task, _ in runs]
        if self.eval_pool is None:  # built once per command: making envs (and worker processes) is slow
            self.eval_pool = eval_pool(tasks, self.spec.eval_episodes)
        results = evaluate_many(tasks, states, self.spec.eval_episodes, [1000 * seed + step for _, seed in runs],
                                max_steps=self.spec.max_eval_steps, pool=self.eval_pool)
        points = {run: {"step": step, "success_rate": result["success_rate"], "episodes": self.spec.eval_episodes}
                  for run, result in zip(runs, results)}
        for run, point in points.items():
            self.curves[run].append({**point, "wall_time_s": round(self.wall(), 2)})
        return float(np.mean([p["success_rate"] for p in points.values()]))

    def milestone(self, states, step: int) -> dict | None:
        """Evaluate and save at ``step`` as the intervals ask, and always at the last step."""
        self.latest = states
        spec, last, extra = self.spec, step == self.spec.steps, None
        evaluated_now = False
        if (step % spec.eval_every == 0 or last) and not self.evaluated_at(step):
            extra = {"success": f"{self.evaluate_at(states, step):.2f}"}
            evaluated_now = True
        due = step % spec.save_every == 0 or last
        # Save on the interval; again at a saved step whose evaluation was just completed (after a
        # resume), so that the checkpoint holds everything the records show.
        if (due and self.saved_step != step) or (evaluated_now and (due or self.saved_step == step)):
            self.save(states, step)
        return extra

    def check_finite(self, metrics: dict, step: int) -> None:
        bad = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(np.asarray(v))))
        if bad:
            kept = "no checkpoint" if self.saved_step is None else f"the checkpoint keeps step {self.saved_step}"
            raise TrainingDiverged(f"training diverged by step {step}: {', '.join(bad)} became NaN or infinite "
                                   f"({kept}); lower --set learning_rate or check the dataset")

    # ------------------------------------------------------------------ the whole run
    def run_to_completion(self, dataset, resume: bool, progress: bool) -> list[dict]:
        """Train from the checkpoint (or from scratch) to ``spec.steps``, evaluating and saving on
        the way; record videos at the end. Ctrl-C anywhere saves the last complete states."""
        try:
            return self._run_to_completion(dataset, resume, progress)
        finally:
            if self.eval_pool is not None:
                self.eval_pool.close()
                self.eval_pool = None

    def _run_to_completion(self, dataset, resume: bool, progress: bool) -> list[dict]:
        spec = self.spec
        run_tasks, run_seeds = run_layout(len(spec.tasks), spec.seeds)
        states, _ = init_states(self.config, run_seeds)
        if resume:
            states = self.resume_from_checkpoint(states)
        start_step = int(np.asarray(states.step)[0])
        self.latest = states

        def callback(step, states, metrics):
            self.check_finite(metrics, step)
            tick = time.perf_counter()
            shown = self.milestone(states, step)
            self.longest_milestone = max(self.longest_milestone, time.perf_counter() - tick)
            return shown

        try:
            if self.saved_step is not None:
                # Finish what an interruption left undone at this step (an evaluation cut short),
                # and make the records say exactly what the checkpoint holds.
                self.milestone(states, start_step)
                self.write_records(self.saved_step)
            what = spec.task if not spec.multi_task else f"{len(spec.tasks)} tasks"
            states, history = train(self.config, dataset, run_seeds, num_steps=spec.steps - start_step, states=states,
                                    steps_per_dispatch=min(1000, spec.eval_every, spec.save_every), callback=callback,
                                    callback_every=math.gcd(spec.eval_every, spec.save_every), progress=progress,
                                    desc=f"{spec.agent} {what}", task_index=run_tasks, deadline=self.deadline,
                                    callback_estimate_s=self.longest_milestone)
            reached = int(np.asarray(states.step)[0])
            if history:
                self.check_finite({k: v for k, v in history[-1].items() if k not in ("step", "wall_s")}, reached)
            if reached < spec.steps:  # the time limit: save where training stopped, say how to go on
                self.latest = states
                if self.saved_step != reached:
                    self.save(states, reached)
                records = self.write_records(reached)
                raise SegmentEnded(f"stopped at step {reached} of {spec.steps} to end before the time limit "
                                   f"(--max-minutes); saved in {self.ckpt_path}. Continue with: {self.continue_with}",
                                   records)
            self.milestone(states, spec.steps)  # the last step, whatever the intervals
        except TrainingInterrupted as stop:
            self.stop(stop.states)
        except KeyboardInterrupt:  # during an evaluation or a save
            self.stop(self.latest)
        records = self.write_records(spec.steps)
        if spec.video_episodes > 0:
            try:
                self.record_videos(states)
            except KeyboardInterrupt:
                raise RunInterrupted(f"interrupted while recording videos; the run itself is complete (records in "
                                     f"{spec.out}/records/); record videos with: python -m rql_lite evaluate --run "
                                     f"{spec.out} --video-episodes {spec.video_episodes}") from None
        return records

    def stop(self, states) -> None:
        """Save the last complete states after Ctrl-C, then raise ``RunInterrupted`` saying how to continue."""
        usable = states is not None and not any(
            getattr(leaf, "is_deleted", lambda: False)() for leaf in _leaves(states))
        step = int(np.asarray(states.step)[0]) if usable else self.saved_step
        if usable and step != self.saved_step and step > 0:
            self.save(states, step)
        if self.saved_step is None:
            raise RunInterrupted(f"interrupted before the first update; nothing to save. Start again with: "
                                 f"{self.continue_with}")
        raise RunInterrupted(f"interrupted at step {self.saved_step} of {self.spec.steps}: saved in {self.ckpt_path}. "
                             f"Continue with: {self.continue_with}")

    def record_videos(self, states) -> None:
        from rql_lite.ogbench.evaluate import evaluate, make_eval_env, write_video

        envs = {task: make_eval_env(task, render=True) for task in self.spec.tasks}
        for i, (task, seed) in enumerate(self.spec.runs()):
            result = evaluate(envs[task], unstack(states, i), self.spec.video_episodes, seed=seed,
                              video_episodes=self.spec.video_episodes, max_steps=self.spec.max_eval_steps)
            prefix = f"{task}-" if self.spec.multi_task else ""
            for j, frames in enumerate(result["frames"]):
                write_video(frames, os.path.join(self.spec.out, "videos", f"{prefix}seed{seed}-episode{j}.mp4"))


def _leaves(states):
    import jax

    return jax.tree_util.tree_leaves(states)
