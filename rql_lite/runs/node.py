"""A short GPU allocation turned into results: ``python -m rql_lite node``.

For a machine that is gone afterwards (a cluster job with a time limit and no internet, a rented
GPU with commands of at most 10 minutes and a few small files brought back). After the offline
install (``scripts/gpu_node.sh``: the kit of ``rql_lite.runs.kit``, or a wheelhouse), one command

1. checks every argument before anything is created (a bad one: one line, exit 2);
2. generates the dataset with the CPU cores while the benchmark (``python -m rql_lite bench``,
   within ``--bench-seconds``) measures the accelerator: the two overlap, since one needs the CPU
   and the other the GPU;
3. trains the tasks x seeds of each agent (one run directory each, under ``--work``) in segments:
   one ``train --max-minutes`` process per segment, resumed until every record is finished or
   ``--total-minutes`` would be passed (then the runs stay resumable: run the same command again).
   ``--fit-minutes M`` sets the steps instead of ``--steps``: as many updates per run as the rate
   the benchmark just measured for this program's number of runs fits in ``M`` minutes (never an
   extrapolation from elsewhere; the records say how many), evaluated half-way and at the end;
4. copies each run's ``run.json`` and records into ``--out``, exports one (agent, task, seed)'s EMA
   policy and films one rollout of it (MP4 where ffmpeg exists, else GIF with Pillow), writes
   ``summary.json`` and the log ``gpu_node.log``, and checks that each file in ``--out`` is under
   16 MiB (and, with ``--archive``, packs the runs into one file).

Every step is a ``python -m rql_lite`` process; this one imports no JAX backend (the children
own the accelerator). The same command again continues where the last one stopped.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import threading
import time

from rql_lite.agent import AGENTS
from rql_lite.configs import dataset_name_for_task
from rql_lite.files import atomic_path, git_commit, utc_now, write_json_atomic
from rql_lite.ogbench.datasets import generated_folder
from rql_lite.ogbench.generate import DATASETS
from rql_lite.runs.records import find_records
from rql_lite.runs.spec import RunSpec

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout rql_lite runs from
MAX_FILE_BYTES = 16 * 2**20
MAX_FILES = 8
LOG_NAME, SUMMARY_NAME = "gpu_node.log", "summary.json"
SIZE_CHANGING = ("policy_hidden", "value_hidden", "num_values", "batch_size", "flow_steps", "horizon",
                 "matmul_precision")  # --set names that change an update's cost: the bench rate would not apply
TRAIN_PASS = ("steps", "eval_every", "eval_episodes", "save_every", "dataset_episodes", "episode_length",
              "max_eval_steps")


@dataclasses.dataclass
class NodeOptions:
    """What ``python -m rql_lite node`` was asked to do (``check`` fills in the defaults)."""

    out: str
    tasks: tuple[str, ...]
    agents: tuple[str, ...] = ("rql",)
    seeds: tuple[int, ...] = (0,)
    profile: str = "full"
    work: str | None = None
    data_dir: str | None = None
    workers: int | None = None
    overrides: dict = dataclasses.field(default_factory=dict)
    train: dict = dataclasses.field(default_factory=dict)  # TRAIN_PASS name -> value (None: the profile's)
    segment_minutes: float = 9.0
    total_minutes: float | None = None
    fit_minutes: float | None = None
    bench: bool = True
    bench_args: tuple[str, ...] | None = None
    bench_seconds: float | None = None
    video_agent: str | None = None
    video_task: str | None = None
    video_seed: int | None = None
    archive: bool = False
    python: str = sys.executable

    def check(self) -> "NodeOptions":
        """Defaults filled in and every value checked; ``ValueError`` naming the option. Creates nothing."""
        if not self.tasks:
            raise ValueError("--tasks is required, e.g. --tasks cube-double-play-singletask-task2-v0")
        if not self.agents or len(set(self.agents)) != len(self.agents):
            raise ValueError(f"--agents must be distinct and at least one, got {list(self.agents)}")
        unknown = [a for a in self.agents if a not in AGENTS]
        if unknown:
            raise ValueError(f"--agents {' '.join(unknown)}: choose among {', '.join(AGENTS)}")
        for name, value in (("--segment-minutes", self.segment_minutes), ("--total-minutes", self.total_minutes),
                            ("--fit-minutes", self.fit_minutes), ("--bench-seconds", self.bench_seconds)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} {value}: must be a number > 0")
        if self.fit_minutes is not None:
            if self.train.get("steps") is not None:
                raise ValueError("--fit-minutes sets the steps from the benchmark; drop --steps (or --fit-minutes)")
            if not self.bench:
                raise ValueError("--fit-minutes needs the benchmark's rate; drop --no-bench")
            changed = sorted(set(self.overrides) & set(SIZE_CHANGING))
            if changed:
                raise ValueError(f"--fit-minutes uses the benchmark's rate at the profile's sizes; --set "
                                 f"{', '.join(changed)} changes an update's cost. Give --steps instead")
        out = os.path.abspath(self.out)
        work = os.path.abspath(self.work or os.path.join(os.path.dirname(out), "gpu-node-work"))
        for flag, path in (("--out", out), ("--work", work)):
            if os.path.exists(path) and not os.path.isdir(path):
                raise ValueError(f"{flag} {path} is a file; give a folder")
            parent = path
            while not os.path.exists(parent):
                parent = os.path.dirname(parent)
            if not os.access(parent, os.W_OK):
                raise ValueError(f"cannot write {path} ({parent} is not writable); choose another folder")
        if work == out or work.startswith(out + os.sep):
            raise ValueError(f"--work {work} is inside --out; checkpoints must stay out of what is brought back "
                             f"(e.g. --work {os.path.join(os.path.dirname(out), 'gpu-node-work')})")
        checked = dataclasses.replace(self, out=out, work=work, tasks=tuple(self.tasks), agents=tuple(self.agents),
                                      seeds=tuple(self.seeds), workers=self.workers or os.cpu_count() or 1,
                                      data_dir=os.path.abspath(os.path.expanduser(self.data_dir))
                                      if self.data_dir else None)
        for agent in checked.agents:  # train's own checks: tasks of one domain, seeds, --set names and values
            checked.spec(agent).resolved()
        dataset = dataset_name_for_task(checked.tasks[0])
        if dataset not in DATASETS:
            raise ValueError(f"--tasks {checked.tasks[0]}: its dataset {dataset} cannot be generated offline; "
                             f"give tasks of {', '.join(sorted(DATASETS))}")
        chosen = (checked.video_agent or checked.agents[0], checked.video_task or checked.tasks[0],
                  checked.seeds[0] if checked.video_seed is None else checked.video_seed)
        if chosen[0] not in checked.agents or chosen[1] not in checked.tasks or chosen[2] not in checked.seeds:
            raise ValueError(f"--video-agent/--video-task/--video-seed {' '.join(map(str, chosen))}: not among the "
                             f"agents, tasks and seeds trained")
        checked.video_agent, checked.video_task, checked.video_seed = chosen
        return checked

    @property
    def domain(self) -> str:
        return dataset_name_for_task(self.tasks[0])

    def run_dir(self, agent: str) -> str:
        return os.path.join(self.work, "runs", f"{self.domain.removesuffix('-play-v0')}-{agent}-{self.profile}")

    def spec(self, agent: str, steps: int | None = None):
        """The ``RunSpec`` of one agent's run (``steps``: the fitted count, when ``--fit-minutes`` set it)."""
        train = dict(self.train)
        if steps is not None:
            train["steps"] = steps
            # Evaluated (and saved) half-way and at the end, unless asked otherwise: on a short lease an
            # evaluation of 50 episodes per run costs as much as thousands of updates.
            every = max(1000, steps // 2 // 1000 * 1000) if steps >= 2000 else steps
            train["eval_every"] = train.get("eval_every") or every
            train["save_every"] = train.get("save_every") or every
        return RunSpec(task=self.tasks if len(self.tasks) > 1 else self.tasks[0], agent=agent, seeds=self.seeds,
                       dataset="generated", out=self.run_dir(agent), profile=self.profile,
                       overrides=dict(self.overrides), workers=self.workers,
                       data_dir=self.data_dir or RunSpec.data_dir, **{k: train.get(k) for k in TRAIN_PASS})


class NodeFailed(Exception):
    """A step failed; the message names it (exit status 1)."""


class _Log:
    """Lines to stdout and to ``--out/gpu_node.log``, stamped with the seconds since the start."""

    def __init__(self, path: str, start: float):
        self.path, self.start, self.lock = path, start, threading.Lock()
        self.file = open(path, "a", encoding="utf-8")

    def say(self, message: str) -> None:
        self.raw(f"[node +{time.time() - self.start:.0f}s] {message}")

    def raw(self, line: str) -> None:
        with self.lock:
            print(line, flush=True)
            self.file.write(line + "\n")
            self.file.flush()

    def close(self) -> None:
        self.file.close()


def _stream(process: subprocess.Popen, log: _Log, prefix: str) -> threading.Thread:
    """Copy a child's output into the log, line by line, as it comes (tqdm's carriage returns split too)."""
    def pump():
        for line in iter(process.stdout.readline, ""):
            for part in line.rstrip("\n").split("\r"):
                if part.strip():
                    log.raw(f"{prefix}{part}")

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def _python_m(options: NodeOptions, args: list[str], log: _Log, prefix: str) -> tuple[subprocess.Popen, threading.Thread]:
    env = dict(os.environ)
    repo = REPO
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(options.work, "jax-cache"))
    env["PYTHONUNBUFFERED"] = "1"
    log.say(f"{prefix.strip() or 'run'}: python -m rql_lite {shlex.join(args)}")
    process = subprocess.Popen([options.python, "-m", "rql_lite", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env, cwd=repo)
    return process, _stream(process, log, prefix)


def _wait(process: subprocess.Popen, thread: threading.Thread) -> int:
    code = process.wait()
    thread.join()
    return code


def read_records(run_dir: str) -> list:
    """The records (``runs.records.Record``) of a run directory, sorted by task and seed."""
    return sorted(find_records(run_dir), key=lambda r: (r.task, r.seed)) if os.path.isdir(run_dir) else []


def run_finished(options: NodeOptions, agent: str) -> bool:
    records = read_records(options.run_dir(agent))
    return len(records) == len(options.tasks) * len(options.seeds) and all(r.finished for r in records)


def fitted_steps(bench: dict, profile: str, runs: int, minutes: float) -> tuple[int, dict]:
    """Updates per run that fit in ``minutes`` at the rate the benchmark measured for ``runs`` runs in one
    program, rounded down to a thousand (at least 1000): ``(steps, the rate row used)``.

    The row is that of ``runs`` itself if measured, else of the smallest measured ``R`` above it
    (a conservative rate per run), else ``ValueError``: no extrapolation beyond what was measured."""
    name = "paper" if profile == "full" else profile
    rows = bench.get(name, {}).get("runs_sweep", {}).get("by_runs", [])
    usable = sorted((r for r in rows if r["runs"] >= runs), key=lambda r: r["runs"])
    if not usable:
        measured = sorted(r["runs"] for r in rows)
        raise ValueError(f"--fit-minutes: the benchmark measured no program of {runs} runs or more at the {name} size "
                         f"(measured R = {measured or 'none'}); add {runs} to the bench's --runs, or give --steps")
    row = usable[0]
    steps = int(row["per_run_updates_per_s"] * 60.0 * minutes) // 1000 * 1000
    return max(1000, steps), row


def _segment_minutes(options: NodeOptions, start: float) -> float | None:
    """Minutes for the next segment, or ``None`` when ``--total-minutes`` leaves no room for one."""
    if options.total_minutes is None:
        return options.segment_minutes
    left = options.total_minutes - (time.time() - start) / 60.0
    if left < 0.5 and left < options.segment_minutes:
        return None
    return min(left, options.segment_minutes)


def run_node(options: NodeOptions, argv: list[str] | None = None) -> int:
    """Do everything the module docstring says; 0 when done or stopped by ``--total-minutes``."""
    options = options.check()
    start = time.time()
    os.makedirs(options.out, exist_ok=True)
    os.makedirs(options.work, exist_ok=True)
    log = _Log(os.path.join(options.out, LOG_NAME), start)
    try:
        return _run_node(options, argv, log, start)
    except NodeFailed as err:
        log.say(f"FAILED: {err}; see {log.path}")
        return 1
    except KeyboardInterrupt:
        log.say("stopped by a signal; the runs keep what was saved: run the same command again to continue")
        return 130
    finally:
        log.close()


def _run_node(options: NodeOptions, argv, log: _Log, start: float) -> int:
    log.say(f"{utc_now()}: python -m rql_lite {shlex.join(argv or ['node'])}")
    log.say(f"checkout {git_commit() or 'unknown commit'}, out {options.out}, work {options.work}, "
            f"{os.cpu_count()} cores")
    spec = options.spec(options.agents[0]).resolved()
    domain = options.domain
    data_folder = generated_folder(spec.data_dir, spec.dataset_episodes, 0, spec.episode_length)
    have_data = (os.path.isfile(os.path.join(data_folder, f"{domain}.npz"))
                 and os.path.isfile(os.path.join(data_folder, f"{domain}-val.npz")))
    bench_files = sorted(glob.glob(os.path.join(options.out, "bench-*.json")))
    want_bench = options.bench and not bench_files

    # 1+2. the dataset (CPU cores) while the benchmark measures the accelerator
    jobs = {}
    if have_data:
        log.say(f"dataset: {data_folder}/{domain}.npz exists")
    else:
        workers = max(1, options.workers - 1) if want_bench else options.workers  # a core for the bench
        args = ["generate", domain, "--out", data_folder, "--episode-length", str(spec.episode_length),
                "--workers", str(workers)]
        if spec.dataset_episodes:
            args += ["--episodes", str(spec.dataset_episodes)]
        jobs["dataset"] = _python_m(options, args, log, "[generate] ")
    if want_bench:
        jobs["bench"] = _python_m(options, [*bench_arguments(options), "--out", options.out], log, "[bench] ")
    elif options.bench:
        log.say(f"bench: {bench_files[0]} exists (delete it to measure again)")
    else:
        log.say("bench: skipped (--no-bench)")
    failed = [name for name, (process, thread) in jobs.items() if _wait(process, thread) != 0]
    if failed:
        raise NodeFailed(f"step {' and '.join(failed)} (its output is above)")
    bench_files = sorted(glob.glob(os.path.join(options.out, "bench-*.json")))

    steps = None
    if options.fit_minutes is not None:
        with open(bench_files[0], encoding="utf-8") as f:
            bench = json.load(f)
        runs = len(options.tasks) * len(options.seeds)
        try:
            steps, row = fitted_steps(bench, options.profile, runs, options.fit_minutes)
        except ValueError as err:
            raise NodeFailed(str(err)) from None
        log.say(f"fit: {steps} updates per run ({row['per_run_updates_per_s']:.1f} updates/s per run measured for "
                f"R={row['runs']} ({bench['{}'.format('paper' if options.profile == 'full' else options.profile)]['runs_sweep']['batching']}) "
                f"in {os.path.basename(bench_files[0])}, x {options.fit_minutes} min)")

    # 3. training in segments, one process each; each agent's records are copied into --out as soon as
    # it stops, so that a machine taken back later still returns them
    shutil.rmtree(os.path.join(options.out, "runs"), ignore_errors=True)
    archive = os.path.join(options.out, "runs.tar.gz")
    if os.path.exists(archive):
        os.remove(archive)
    segments, budget_hit, per_agent = 0, False, {}
    for agent in options.agents:
        run_dir = options.run_dir(agent)
        per_agent[agent] = 0
        args = train_arguments(options, agent, steps)
        while not run_finished(options, agent):
            minutes = _segment_minutes(options, start)
            if minutes is None:
                budget_hit = True
                log.say(f"train {agent}: --total-minutes {options.total_minutes} leaves no room for another segment; "
                        f"the run stays resumable")
                break
            resume = ["--resume"] if os.path.isfile(os.path.join(run_dir, "run.json")) else []
            segments += 1
            per_agent[agent] += 1
            tick = time.time()
            process, thread = _python_m(options, [*args, "--max-minutes", f"{minutes:.4g}", *resume], log,
                                        f"[{agent} segment {per_agent[agent]}] ")
            if _wait(process, thread) != 0:
                raise NodeFailed(f"training {agent} (segment {per_agent[agent]}; its output is above)")
            log.say(f"segment {segments} ({agent}) ended after {time.time() - tick:.0f} s")
        else:
            log.say(f"train {agent}: every record in {run_dir} is finished")
        collect_records(options, agent)
        if budget_hit:
            break

    # 4. what comes back
    for agent in options.agents:
        collect_records(options, agent)
    policy, video = export_and_film(options, log)
    if options.archive and os.path.isdir(os.path.join(options.out, "runs")):
        with atomic_path(archive) as tmp, tarfile.open(tmp, "w:gz") as tar:
            tar.add(os.path.join(options.out, "runs"), arcname="runs")
        shutil.rmtree(os.path.join(options.out, "runs"))
    return write_summary(options, log, start, segments, per_agent, budget_hit, steps, policy, video)


def collect_records(options: NodeOptions, agent: str) -> None:
    """Copy an agent's ``run.json`` and records into ``--out/runs/`` (replacing an older copy)."""
    run_dir = options.run_dir(agent)
    if not os.path.isfile(os.path.join(run_dir, "run.json")):
        return
    dest = os.path.join(options.out, "runs", os.path.basename(run_dir))
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    shutil.copy2(os.path.join(run_dir, "run.json"), dest)
    if os.path.isdir(os.path.join(run_dir, "records")):
        shutil.copytree(os.path.join(run_dir, "records"), os.path.join(dest, "records"))


def bench_arguments(options: NodeOptions) -> list[str]:
    """``bench ...``: the given ``--bench-args``, else the profile's default; the node's R always measured."""
    if options.bench_args is not None:
        args = ["bench", *options.bench_args]
    elif options.profile == "full":
        runs = len(options.tasks) * len(options.seeds)
        wanted = list(dict.fromkeys([runs, 1, 20, 4, 8, 16, 2]))  # the node's own program first
        args = ["bench", "--configs", "paper", "--seeds", "1", "--min-seconds", "3", "--sweep-seconds", "6", "--rounds", "2",
                "--runs", *map(str, wanted), "--precision"]
    else:
        runs = len(options.tasks) * len(options.seeds)
        args = ["bench", "--configs", "smoke", "--seeds", "1", "--min-seconds", "0.5", "--sweep-seconds", "0.5",
                "--rounds", "1", "--runs", str(runs)]
    if options.bench_seconds is not None and "--max-seconds" not in args:
        args += ["--max-seconds", f"{options.bench_seconds:g}"]
    return args


def train_arguments(options: NodeOptions, agent: str, steps: int | None) -> list[str]:
    """The ``train ...`` command line of one agent's run (without ``--max-minutes``/``--resume``)."""
    spec = options.spec(agent, steps)
    args = ["train", "--tasks" if len(options.tasks) > 1 else "--task", *options.tasks, "--agent", agent,
            "--seeds", *map(str, options.seeds), "--profile", options.profile, "--out", spec.out,
            "--dataset", "generated", "--workers", str(options.workers), "--no-progress"]
    if options.data_dir:
        args += ["--data-dir", options.data_dir]
    for name in TRAIN_PASS:
        value = getattr(spec, name)
        if value is not None:
            args += ["--" + name.replace("_", "-"), str(value)]
    if options.overrides:
        args += ["--set", *(f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
                            for k, v in sorted(options.overrides.items()))]
    return args


def export_and_film(options: NodeOptions, log: _Log) -> tuple[str | None, str | None]:
    """Export the chosen run's EMA policy and film one rollout of it; ``(policy, video)`` paths or ``None``."""
    for old in glob.glob(os.path.join(options.out, "policy-*.msgpack")) + glob.glob(
            os.path.join(options.out, "video-*.*")):
        os.remove(old)
    run_dir = options.run_dir(options.video_agent)
    if not os.path.isfile(os.path.join(run_dir, "checkpoint.msgpack")):
        log.say(f"export and video: skipped, {run_dir} has no checkpoint yet (no segment has saved)")
        return None, None
    tag = f"{options.video_agent}-{options.video_task}-seed{options.video_seed}"
    policy = os.path.join(options.out, f"policy-{tag}.msgpack")
    process, thread = _python_m(options, ["export", "--run", run_dir, "--task", options.video_task, "--seed",
                                          str(options.video_seed), "--policy-only", "--out", policy], log, "[export] ")
    if _wait(process, thread) != 0:
        raise NodeFailed("the policy export (its output is above)")
    ext = ".mp4" if shutil.which("ffmpeg") or _has_module("imageio_ffmpeg") else ".gif"
    video = os.path.join(options.out, f"video-{tag}{ext}")
    spec = options.spec(options.video_agent).resolved()
    args = ["evaluate", "--agent-file", policy, "--task", options.video_task, "--episodes", "1", "--video-episodes",
            "1", "--seed", str(options.video_seed), "--video-out", video]
    if spec.max_eval_steps:
        args += ["--max-steps", str(spec.max_eval_steps)]
    process, thread = _python_m(options, args, log, "[video] ")
    if _wait(process, thread) != 0:
        log.say("video: failed (its output is above); the records and the policy are unaffected")
        return policy, None
    return policy, video


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def write_summary(options: NodeOptions, log: _Log, start: float, segments: int, per_agent: dict, budget_hit: bool,
                  steps: int | None, policy: str | None, video: str | None) -> int:
    """``summary.json`` and its lines in the log; the 16 MiB check; the exit status."""
    runs, lines = [], []
    for agent in options.agents:
        records = read_records(options.run_dir(agent))
        finished = run_finished(options, agent)
        runs.append({"agent": agent, "run_dir": options.run_dir(agent), "finished": finished,
                     "segments_this_invocation": per_agent.get(agent, 0),
                     "records": [{"task": r.task, "seed": r.seed, "steps": r.steps, "target_steps": r.target_steps,
                                  "finished": r.finished, "final_success_rate": r.success_rate,
                                  "wall_time_s": r.wall_time_s, "device": r.device} for r in records]})
        lines.append(f"{agent}: {'finished' if finished else 'UNFINISHED'}, {per_agent.get(agent, 0)} segment(s) now, "
                     f"{options.run_dir(agent)}")
        for r in records:
            rate = "-" if r.success_rate is None else f"{r.success_rate:.3f}"
            lines.append(f"  {r.task} seed {r.seed}: {r.steps}/{r.target_steps} steps, success rate "
                         f"{rate}, {r.wall_time_s:.0f} s on {r.device}")
        if not records:
            lines.append("  not started")
    wall = time.time() - start
    summary = {"all_finished": all(r["finished"] for r in runs), "stopped_by_total_minutes": budget_hit,
               "segments_this_invocation": segments, "wall_time_s_this_invocation": round(wall),
               "profile": options.profile, "fitted_steps": steps, "runs": runs,
               "policy": os.path.basename(policy) if policy else None,
               "video": os.path.basename(video) if video else None, "written": utc_now()}
    write_json_atomic(os.path.join(options.out, SUMMARY_NAME), summary)
    log.say(f"summary: {options.profile} profile, {len(options.tasks)} task(s) x {len(options.seeds)} seed(s) per "
            f"agent, {segments} segment(s) this time, {wall:.0f} s wall")
    for line in lines:
        log.raw(f"[node]   {line}")
    log.say(f"policy: {policy or 'none'}; video: {video or 'none'}")
    files = sorted(os.path.join(d, f) for d, _, names in os.walk(options.out) for f in names)
    log.say(f"out: {options.out} ({len(files)} files); checkpoints (not to bring back): {options.work}/runs")
    if len(files) > MAX_FILES:
        log.say(f"note: {len(files)} files in {options.out}; where at most {MAX_FILES} come back, pass --archive")
    if summary["all_finished"]:
        log.say("done: every run is finished")
    else:
        log.say(f"UNFINISHED: what was trained is saved in {options.work}/runs; run the same command again to continue")
    too_big = [f for f in files if os.path.getsize(f) >= MAX_FILE_BYTES]
    for f in too_big:
        log.say(f"FAILED: {f} is {os.path.getsize(f)} bytes, not under 16 MiB; it cannot be brought back")
    return 1 if too_big else 0
