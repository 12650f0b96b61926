"""A sweep on a SLURM cluster: one job array per plan, elements trained in segments until finished.

``python -m rql_lite sweep`` turns a plan (domains or tasks, agents, seeds, steps, profile,
``--set`` overrides) into array elements, one per (domain, agent): one program of that domain's
tasks x seeds, the batched run of ``train --tasks``. It writes the sweep directory (``--out``)

- ``sweep.json``: the plan, each element's ``train`` command and run directory, and the job ids of
  its submissions;
- ``sweep.sbatch``: the job-array script (readable: its comments list every element's command);
- ``logs/element{I}_job{J}.log``: each element's output, appended across its segments;
- ``runs/{domain}-{agent}/``: the run directories, one per element;

and submits the script with ``sbatch`` (``--dry-run``: writes only).

Each element runs ``python -m rql_lite sweep element``, which

1. leaves at once if its run is finished, or if another process holds its run directory (the same
   plan submitted twice: that process continues the run; the copy wastes seconds, not an
   allocation, and does not requeue itself, so nothing loops), checking the lock before any data
   is loaded;
2. trains one segment, ``train ... --max-minutes (time - margin) --resume`` (the run's own command,
   as its records give it), which saves and exits 0 before the job's time limit;
3. if the run is not finished, requeues itself with ``scontrol requeue ARRAYJOB_INDEX`` as its
   last action: SLURM ends the job and starts it again later (after its ``BeginTime``, about two
   minutes), and the next segment resumes from the checkpoint. A segment that made no progress,
   or a ``train`` that failed, is not requeued: the log says why.

Why ``scontrol requeue`` and not submitit's checkpoint-and-requeue: submitit needs a signal before
the time limit (``--signal``) to pickle a Python callable's state and requeue from a signal
handler, and needs itself installed on every node. Here ``train --max-minutes`` already ends a
segment cleanly at a dispatch boundary with an atomic checkpoint, so no signal has to arrive in
time; the requeue is one ``scontrol`` call after ``train`` exits 0; the nodes need nothing but
``rql_lite``'s own dependencies (the kit of ``python -m rql_lite kit`` where there is no
package index); and the job script stays a short bash file a cluster user can read and
resubmit. SLURM's own ``--requeue`` (preemption, node failure) works alongside: ``train`` saves
on SIGTERM and the resumed segment continues.

``sweep status`` lists every (task, agent, seed) with its step, finished flag and its element's
SLURM state; ``sweep collect`` copies finished records (``run.json`` and ``records/``) into
``results/``, where chapter 7 and the Results page find them (``runs.records.find_records``).
Datasets are shared: the elements of one domain read one dataset, generated once
(``rql_lite.ogbench.datasets.ensure_dataset``: one element generates under a file lock, the
others wait, then check it). The sweep directory and ``--data-dir`` must be on storage every node
sees.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys

from rql_lite import checks
from rql_lite.agent import AGENTS
from rql_lite.configs import DOMAINS, RUN_PROFILES, check_task, dataset_name_for_task, domain_tasks
from rql_lite.files import check_writable_directory, read_json_file, utc_now, write_bytes_atomic, write_json_atomic
from rql_lite.ogbench.datasets import DEFAULT_DATA_DIR
from rql_lite.runs import slurm
from rql_lite.runs.records import default_results_dir, find_records
from rql_lite.runs.rundir import RECORDS_DIR, RUN_FILE, RunDirectoryBusy, check_not_busy, read_run_info
from rql_lite.runs.spec import RunSpec

SWEEP_FILE, SCRIPT_FILE, LOGS_DIR, RUNS_DIR = "sweep.json", "sweep.sbatch", "logs", "runs"
SCHEMA = "rql_lite-sweep-v1"
TRAIN_FLAGS = ("steps", "eval_every", "eval_episodes", "save_every", "dataset_episodes", "episode_length",
               "max_eval_steps")
# sbatch options the sweep sets itself (from its own options, or because the segments rely on them)
OWN_SBATCH = {"array": "the sweep sets it (one element per domain and agent)", "time": "give --time",
              "t": "give --time", "requeue": "the sweep sets it", "no-requeue": "elements must be requeueable",
              "open-mode": "the sweep appends (a requeue would overwrite the log)", "output": "logs go to OUT/logs",
              "o": "logs go to OUT/logs", "error": "logs go to OUT/logs", "e": "logs go to OUT/logs",
              "job-name": "give --job-name", "J": "give --job-name", "cpus-per-task": "give --cpus-per-task",
              "c": "give --cpus-per-task", "gres": "give --gres", "partition": "give --partition",
              "p": "give --partition", "account": "give --account", "A": "give --account",
              "chdir": "the script changes to the submitting directory", "D": "the script changes to the "
              "submitting directory", "wrap": "the sweep writes the script"}
_WORD = re.compile(r"[^\s%]+")  # one word without whitespace or SLURM's %-patterns


@dataclasses.dataclass
class SweepPlan:
    """What ``python -m rql_lite sweep`` was asked for; ``check`` fills in defaults and checks it."""

    out: str
    domains: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    agents: tuple[str, ...] = ("rql",)
    seeds: tuple[int, ...] = (0,)
    profile: str = "full"
    overrides: dict = dataclasses.field(default_factory=dict)
    train: dict = dataclasses.field(default_factory=dict)  # TRAIN_FLAGS name -> value (None: the profile's)
    dataset: str = "generated"
    data_dir: str = DEFAULT_DATA_DIR
    time_minutes: int | None = None  # each element's wall time (sbatch --time)
    margin_minutes: float = 5.0  # a segment ends this long before the time limit
    cpus_per_task: int | None = None  # dataset generation and evaluation workers
    gres: str | None = None
    partition: str | None = None
    account: str | None = None
    sbatch_lines: tuple[str, ...] = ()
    job_name: str | None = None
    python: str = sys.executable

    def check(self) -> "SweepPlan":
        """Defaults filled in, paths made absolute, every value checked (``ValueError`` naming the option).
        Reads no data and creates nothing."""
        if not isinstance(self.out, str) or not self.out:
            raise ValueError("--out must name the sweep's directory")
        out = os.path.abspath(os.path.expanduser(self.out))
        check_writable_directory(out, "--out")
        if not _WORD.fullmatch(out):
            raise ValueError(f"--out {out}: SLURM's #SBATCH lines cannot carry a path with spaces or '%'; choose "
                             f"a path without them")
        unknown = [d for d in self.domains if d not in DOMAINS]
        if unknown:
            raise ValueError(f"--domains {' '.join(unknown)}: unknown; choose among {', '.join(DOMAINS)}")
        for task in self.tasks:
            check_task(task)
        tasks = tuple(dict.fromkeys([t for d in self.domains for t in domain_tasks(d)] + list(self.tasks)))
        if not tasks:
            raise ValueError("nothing to train: give --domains (e.g. cube-double-play) and/or --tasks")
        if not self.agents or len(set(self.agents)) != len(self.agents):
            raise ValueError(f"--agents must be distinct and at least one, got {list(self.agents)}")
        bad = [a for a in self.agents if a not in AGENTS]
        if bad:
            raise ValueError(f"--agents {' '.join(bad)}: choose among {', '.join(AGENTS)}")
        if self.profile not in RUN_PROFILES:
            raise ValueError(f"--profile {self.profile!r}: choose one of {sorted(RUN_PROFILES)}")
        if self.time_minutes is None:
            raise ValueError("--time is required: each element's wall time in minutes, e.g. --time 240 for 4 hours")
        checks.check_int(self.time_minutes, "--time (minutes)", 1)
        checks.check_number(self.margin_minutes, "--margin-minutes", above=0.0)
        if self.margin_minutes >= self.time_minutes:
            raise ValueError(f"--margin-minutes {self.margin_minutes:g} leaves no time to train in --time "
                             f"{self.time_minutes}; give a margin below the time (a few minutes for startup and the "
                             f"last save)")
        checks.check_int(self.cpus_per_task, "--cpus-per-task", 1, allow_none=True)
        for flag, value, example in (("--gres", self.gres, "gpu:1"), ("--partition", self.partition, "gpu"),
                                     ("--account", self.account, "myproject"), ("--job-name", self.job_name, "rql")):
            if value is not None and not _WORD.fullmatch(value):
                raise ValueError(f"{flag} {value!r}: one word without spaces or '%', e.g. {flag} {example}")
        lines = tuple(_sbatch_line(line) for line in self.sbatch_lines)
        datasets = list(dict.fromkeys(dataset_name_for_task(t) for t in tasks))
        if self.dataset not in ("generated", "official") and len(datasets) > 1:
            raise ValueError(f"--dataset {self.dataset} is one domain's file, but the tasks use {len(datasets)} "
                             f"datasets ({', '.join(datasets)}); give tasks of one domain, or --dataset generated")
        python = shutil.which(self.python) or self.python
        if not os.path.isabs(python):  # not here: it may exist on the nodes only, but then by a full path
            raise ValueError(f"--python {self.python}: not found here; give the interpreter the nodes run, by its "
                             f"full path")
        checked = dataclasses.replace(
            self, out=out, tasks=tasks, domains=tuple(self.domains), agents=tuple(self.agents),
            seeds=tuple(self.seeds), train={k: self.train.get(k) for k in TRAIN_FLAGS}, sbatch_lines=lines,
            dataset=self.dataset if self.dataset in ("generated", "official") else
            os.path.abspath(os.path.expanduser(self.dataset)),
            data_dir=os.path.abspath(os.path.expanduser(self.data_dir)),
            job_name=self.job_name or f"rql-{os.path.basename(out)}", python=python)
        for element in checked.elements():  # train's own checks: seeds, --set names and values, intervals
            element.spec.resolved()
        return checked

    @property
    def segment_minutes(self) -> float:
        return self.time_minutes - self.margin_minutes

    def elements(self) -> list["Element"]:
        """One element per (dataset, agent), datasets in the order their first task was given."""
        groups: dict[str, list[str]] = {}
        for task in self.tasks:
            groups.setdefault(dataset_name_for_task(task), []).append(task)
        out = []
        for dataset, tasks in groups.items():
            for agent in self.agents:
                run_dir = os.path.join(self.out, RUNS_DIR, f"{dataset.removesuffix('-v0')}-{agent}")
                spec = RunSpec(task=tasks[0] if len(tasks) == 1 else tuple(tasks), agent=agent, seeds=self.seeds,
                               dataset=self.dataset, out=run_dir, profile=self.profile, overrides=dict(self.overrides),
                               data_dir=self.data_dir, workers=self.cpus_per_task or 1,
                               eval_workers=self.cpus_per_task, **{k: self.train.get(k) for k in TRAIN_FLAGS})
                out.append(Element(len(out), dataset, agent, tuple(tasks), spec))
        return out


@dataclasses.dataclass(frozen=True)
class Element:
    """One array element: one program of ``tasks`` x seeds for one agent, in ``spec.out``."""

    index: int
    dataset: str
    agent: str
    tasks: tuple[str, ...]
    spec: RunSpec

    def as_json(self) -> dict:
        spec = self.spec.resolved()
        return {"index": self.index, "dataset": self.dataset, "agent": self.agent, "tasks": list(self.tasks),
                "seeds": list(spec.seeds), "steps": spec.steps, "run_dir": spec.out, "command": spec.command()}


def _sbatch_line(line: str) -> str:
    """An extra ``#SBATCH`` option, checked: one line, an option, not one the sweep sets itself."""
    text = str(line).strip()
    text = text[len("#SBATCH"):].strip() if text.startswith("#SBATCH") else text
    if "\n" in text or "\r" in text or not text.startswith("-"):
        raise ValueError(f"--sbatch-line {line!r}: give one sbatch option, e.g. --sbatch-line=--qos=long")
    name = text.lstrip("-").split("=", 1)[0].split()[0] if text.lstrip("-") else ""
    if name in OWN_SBATCH:
        raise ValueError(f"--sbatch-line {text}: {OWN_SBATCH[name]}; drop the line")
    return text


# --------------------------------------------------------------------------- the job script and submission


def job_script(plan: SweepPlan, elements: list[Element], command_line: str, workdir: str) -> str:
    """The job-array script of a checked plan: ``#SBATCH`` lines, the elements as comments, one command."""
    sbatch = [f"--job-name={plan.job_name}", f"--array=0-{len(elements) - 1}", f"--time={plan.time_minutes}",
              "--requeue", "--open-mode=append", f"--output={plan.out}/{LOGS_DIR}/element%a_job%A.log"]
    if plan.cpus_per_task:
        sbatch.append(f"--cpus-per-task={plan.cpus_per_task}")
    for flag, value in (("gres", plan.gres), ("partition", plan.partition), ("account", plan.account)):
        if value:
            sbatch.append(f"--{flag}={value}")
    sbatch += list(plan.sbatch_lines)
    margin = f"{plan.margin_minutes:g}"
    lines = ["#!/bin/bash",
             f"# rql_lite sweep {os.path.basename(plan.out)}: {len(elements)} element(s), one program of tasks x seeds "
             f"for one agent each.",
             f"# Written by: {_one_line(command_line)}",
             "# Each element runs `python -m rql_lite sweep element`: it leaves at once if its run is finished or",
             "# another process holds the run directory; otherwise it trains one segment, ending cleanly",
             f"# {margin} minute(s) before this job's time limit (train --max-minutes {plan.segment_minutes:g} "
             f"--resume), and",
             "# requeues itself (scontrol requeue ARRAYJOB_INDEX) while the run is unfinished.",
             f"# Progress: python -m rql_lite sweep status {plan.out}",
             *[f"#SBATCH {option}" for option in sbatch], "#"]
    for element in elements:
        lines += [f"# element {element.index}: {element.dataset}, {element.agent}, {len(element.tasks)} task(s) x "
                  f"{len(plan.seeds)} seed(s)", f"#   {_one_line(element.spec.resolved().command())}"]
    lines += ["", "set -eu", f"cd {shlex.quote(workdir)}", "export PYTHONUNBUFFERED=1",
              f"exec {shlex.quote(plan.python)} -m rql_lite sweep element {shlex.quote(plan.out)} "
              f"\"$SLURM_ARRAY_TASK_ID\" --max-minutes {plan.segment_minutes:g}", ""]
    return "\n".join(lines)


def _one_line(text: str) -> str:
    """``text`` fit for a comment: a newline (in a quoted argument) would end the comment and run the rest."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def read_sweep(sweep_dir: str) -> dict:
    """The ``sweep.json`` of ``sweep_dir``; ``ValueError`` naming the directory if it holds no sweep."""
    path = os.path.join(sweep_dir, SWEEP_FILE)
    sweep = read_json_file(path, f"{sweep_dir} holds no sweep ({SWEEP_FILE} missing); pass the --out of a sweep "
                                 f"command", "restore it, or plan the sweep again in a new --out")
    if not isinstance(sweep, dict) or sweep.get("schema") != SCHEMA or not isinstance(sweep.get("elements"), list):
        raise ValueError(f"{path} is not an rql_lite sweep file (schema {SCHEMA!r}); pass the --out of a sweep "
                         f"command")
    return sweep


def submit_sweep(plan: SweepPlan, command_line: str, dry_run: bool = False, log=print) -> str | None:
    """Write the sweep directory for ``plan`` and submit its job array; return the job id (``None``
    for ``dry_run``). The same plan again in the same ``--out`` submits it again (its elements find
    their runs where the last submission left them); another plan there is refused."""
    plan = plan.check()
    elements = plan.elements()
    described = [e.as_json() for e in elements]
    sweep_path, script_path = os.path.join(plan.out, SWEEP_FILE), os.path.join(plan.out, SCRIPT_FILE)
    if os.path.isfile(sweep_path):
        sweep = read_sweep(plan.out)
        if [e["command"] for e in sweep["elements"]] != [e["command"] for e in described]:
            theirs = {e["index"]: e["command"] for e in sweep["elements"]}
            first = next((e for e in described if theirs.get(e["index"]) != e["command"]), described[-1])
            raise ValueError(f"{plan.out} holds another sweep (element {first['index']} differs: there "
                             f"`{theirs.get(first['index'], 'none')}`); choose another --out, or repeat that plan")
    elif os.path.isdir(plan.out) and os.listdir(plan.out):
        raise ValueError(f"--out {plan.out} is not empty and holds no sweep ({SWEEP_FILE} missing); choose an empty "
                         f"or new directory")
    else:
        sweep = {"schema": SCHEMA, "created": utc_now(), "elements": described, "submissions": []}
    if not dry_run:
        slurm._tool("sbatch")  # no SLURM here: say so before anything is written
    sweep["plan"] = _jsonable(dataclasses.asdict(plan))
    sweep["command"] = command_line
    script = job_script(plan, elements, command_line, os.getcwd())
    created = not os.path.exists(plan.out)
    previous_script = open(script_path, encoding="utf-8").read() if os.path.isfile(script_path) else None
    os.makedirs(os.path.join(plan.out, LOGS_DIR), exist_ok=True)  # SLURM does not create the log's folder
    write_bytes_atomic(script_path, script.encode("utf-8"))
    if dry_run:
        write_json_atomic(sweep_path, sweep)
        log(f"wrote {script_path} ({len(elements)} element(s)) and {sweep_path}; nothing submitted (--dry-run). "
            f"Submit with the same command without --dry-run, which records the job id for sweep status")
        return None
    earlier = [s["job_id"] for s in sweep["submissions"]]
    try:
        job = slurm.submit(script_path)
    except slurm.SlurmError:
        if created:
            shutil.rmtree(plan.out, ignore_errors=True)
        elif previous_script is not None:
            write_bytes_atomic(script_path, previous_script.encode("utf-8"))
        raise
    sweep["submissions"].append({"job_id": job, "submitted": utc_now(), "time_minutes": plan.time_minutes,
                                 "segment_minutes": plan.segment_minutes, "elements": len(elements)})
    write_json_atomic(sweep_path, sweep)
    log(f"submitted job array {job}: {len(elements)} elements ({', '.join(f'{e.dataset} {e.agent}' for e in elements)})"
        f", {plan.time_minutes} min each, segments of {plan.segment_minutes:g} min; script {script_path}")
    if earlier:
        try:
            states = slurm.element_states(earlier)
        except slurm.SlurmError:
            states = {}
        alive = sorted(f"{job_id}_{i}" for (job_id, i), state in states.items() if slurm.is_active(state))
        if alive:
            log(f"note: {', '.join(alive)} of an earlier submission are still queued or running; two copies of an "
                f"element never train together (the second finds the run directory busy and leaves at once)")
    log(f"progress: python -m rql_lite sweep status {plan.out}; results: python -m rql_lite sweep collect {plan.out}")
    return job


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# --------------------------------------------------------------------------- one element


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where an element's run stands, from its records: ``steps`` (the least over its runs; 0 before a
    record exists) and whether every (task, seed) is finished."""

    steps: int
    finished: bool
    records: tuple


def element_progress(element: dict) -> Progress:
    """The ``Progress`` of one element (an entry of ``sweep.json``'s ``elements``)."""
    run_dir = element["run_dir"]
    records = tuple(sorted(find_records(run_dir), key=lambda r: (r.task, r.seed))) if os.path.isdir(run_dir) else ()
    expected = {(t, s) for t in element["tasks"] for s in element["seeds"]}
    found = {(r.task, r.seed) for r in records}
    steps = min((r.steps for r in records), default=0) if found >= expected else 0
    return Progress(steps, found >= expected and all(r.finished for r in records), records)


def run_element(sweep_dir: str, index: int, max_minutes: float, log=print, python: str = sys.executable) -> int:
    """What array element ``index`` does (the module docstring's steps 1 to 3); its exit status.

    0: finished, left to another process, or requeued; otherwise ``train``'s non-zero status, or 1
    for a segment without progress (neither is requeued: a bad argument or a broken dataset would
    fail the same way again).
    """
    sweep = read_sweep(sweep_dir)
    checks.check_number(max_minutes, "--max-minutes", above=0.0)
    elements = sweep["elements"]
    if not (checks.is_int(index) and 0 <= index < len(elements)):
        raise ValueError(f"element {index}: {sweep_dir} has elements 0 to {len(elements) - 1}")
    element = elements[index]
    run_dir, where = element["run_dir"], slurm.element_id()
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    say = lambda message: log(f"[element {index} {utc_now()}] {message}")  # noqa: E731
    say(f"{element['dataset']} {element['agent']} on {socket.gethostname()}, "
        f"{'job ' + where + ', restart ' + restarts if where else 'outside SLURM'}; run {run_dir}")
    before = element_progress(element)
    if before.finished:
        say(f"every record in {run_dir} is finished: nothing to do")
        return 0
    try:  # before any data is loaded: a second copy of this element must not spend its allocation
        check_not_busy(run_dir)
    except RunDirectoryBusy as busy:
        say(f"{busy}. Leaving without training and without requeueing: that process continues the run")
        return 0
    args = [*shlex.split(element["command"])[3:], "--no-progress", "--max-minutes", f"{max_minutes:g}"]
    if os.path.isfile(os.path.join(run_dir, RUN_FILE)):
        args.append("--resume")
    env = dict(os.environ)
    # Compiled programs are kept beside the runs: later segments and elements skip XLA's compilation.
    env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(sweep_dir, "jax-cache"))
    say(f"segment from step {before.steps}: python -m rql_lite {shlex.join(args)}")
    code = subprocess.call([python, "-m", "rql_lite", *args], env=env)
    if code != 0:
        say(f"train exited with status {code} (its output is above); not requeued")
        return code
    after = element_progress(element)
    if after.finished:
        say(f"finished: every record in {run_dir} is done")
        return 0
    if after.steps <= before.steps:
        say(f"the segment ended at step {after.steps}, without progress; not requeued (give a longer --time or a "
            f"smaller --margin-minutes)")
        return 1
    target = element.get("steps", "?")
    if where is None:
        say(f"unfinished at step {after.steps} of {target}; not in a SLURM array job: run the element again")
        return 0
    say(f"unfinished at step {after.steps} of {target}: requeueing {where}")
    slurm.requeue(where)  # the last action: SLURM ends this job now and starts it again later
    return 0


# --------------------------------------------------------------------------- status and collect


@dataclasses.dataclass(frozen=True)
class StatusRow:
    """One (task, agent, seed) of a sweep."""

    element: int
    task: str
    agent: str
    seed: int
    steps: int | None  # None: no record yet
    target_steps: int
    finished: bool
    slurm_state: str


def sweep_status(sweep_dir: str) -> tuple[list[StatusRow], dict]:
    """``(rows, sweep)``: every (task, agent, seed) of the sweep in ``sweep_dir`` with its step and finished
    flag (from its record) and its element's SLURM state (``slurm.element_states``), element by element.

    The state is that of the latest submission still queued or running the element, else of the
    latest submission SLURM remembers, e.g. ``"123_0 RUNNING"``, ``"123_1 PENDING (BeginTime)"``,
    ``"123_0 COMPLETED"``; ``"not submitted"``, ``"gone from SLURM"`` (ended long ago) or
    ``"unknown (...)"`` where SLURM cannot be asked.
    """
    sweep = read_sweep(sweep_dir)
    jobs = [s["job_id"] for s in sweep.get("submissions", [])]
    try:
        states = slurm.element_states(jobs)
        unreachable = None
    except slurm.SlurmError as err:
        states, unreachable = {}, str(err).split(":")[0]
    rows = []
    for element in sweep["elements"]:
        index = element["index"]
        known = [(job, states[(job, index)]) for job in reversed(jobs) if (job, index) in states]
        active = [(job, state) for job, state in known if slurm.is_active(state)]
        if unreachable:
            state = f"unknown ({unreachable})"
        elif active or known:
            job, found = (active or known)[0]
            state = f"{job}_{index} {found}"
        else:
            state = "gone from SLURM" if jobs else "not submitted"
        records = {(r.task, r.seed): r for r in element_progress(element).records}
        for task in element["tasks"]:
            for seed in element["seeds"]:
                record = records.get((task, seed))
                rows.append(StatusRow(index, task, element["agent"], seed, record.steps if record else None,
                                      element["steps"], bool(record and record.finished), state))
    return rows, sweep


def format_status(rows: list[StatusRow], sweep: dict, sweep_dir: str) -> str:
    """``sweep_status``'s rows as the table ``sweep status`` prints, with a summary line."""
    header = ("element", "task", "agent", "seed", "step", "finished", "SLURM")
    table = [header] + [(str(r.element), r.task, r.agent, str(r.seed),
                         f"{'-' if r.steps is None else r.steps}/{r.target_steps}", "yes" if r.finished else "no",
                         r.slurm_state) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    jobs = ", ".join(s["job_id"] for s in sweep.get("submissions", [])) or "none (written with --dry-run)"
    done = sum(r.finished for r in rows)
    lines.append(f"{done} of {len(rows)} runs finished; {sweep_dir}, submissions: {jobs}")
    return "\n".join(lines)


def collect(sweep_dir: str, results_dir: str | None = None, log=print) -> dict:
    """Copy the finished records of a sweep, with each run's ``run.json``, into
    ``results_dir/{sweep name}/{run name}/`` (default ``results/`` of the checkout), where
    ``find_records`` (chapter 7, the Results page) reads them; unfinished records stay behind.

    Refuses (before copying anything) a destination holding another run's ``run.json``. Returns
    ``{"dest", "copied", "unfinished", "runs"}`` counts.
    """
    sweep = read_sweep(sweep_dir)
    dest_root = os.path.join(results_dir or default_results_dir(), os.path.basename(os.path.abspath(sweep_dir)))
    check_writable_directory(dest_root, "--results")
    plans = []
    unfinished = 0
    for element in sweep["elements"]:
        run_dir = element["run_dir"]
        progress = element_progress(element)
        done = [r for r in progress.records if r.finished]
        unfinished += len(element["tasks"]) * len(element["seeds"]) - len(done)
        if not done:
            continue
        info = read_run_info(run_dir)
        dest = os.path.join(dest_root, os.path.basename(run_dir))
        if os.path.isfile(os.path.join(dest, RUN_FILE)):
            theirs = read_run_info(dest).get("identity")
            if theirs != info["identity"]:
                raise ValueError(f"{dest} holds another run's results (its run.json differs from {run_dir}'s); "
                                 f"move it away or collect into another --results")
        plans.append((run_dir, dest, done))
    copied = 0
    for run_dir, dest, done in plans:
        with open(os.path.join(run_dir, RUN_FILE), "rb") as f:
            write_bytes_atomic(os.path.join(dest, RUN_FILE), f.read())
        for record in done:
            rel = os.path.relpath(record.path, run_dir)
            if not rel.startswith(RECORDS_DIR + os.sep):
                continue  # a record elsewhere under the run (never written by train)
            with open(record.path, "rb") as f:
                write_bytes_atomic(os.path.join(dest, rel), f.read())
            copied += 1
        log(f"{os.path.basename(run_dir)}: {len(done)} finished record(s) -> {dest}")
    log(f"collected {copied} finished record(s) of {len(plans)} run(s) into {dest_root}; {unfinished} unfinished "
        f"left out")
    return {"dest": dest_root, "copied": copied, "unfinished": unfinished, "runs": len(plans)}
