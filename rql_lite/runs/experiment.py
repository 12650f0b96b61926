"""One training run on OGBench tasks, as the ``train`` command runs it.

``run(spec)`` checks the spec (``rql_lite.runs.spec``) and the run directory
(``rql_lite.runs.rundir``), loads the data (``rql_lite.ogbench.datasets``), and trains, evaluates,
checkpoints (``rql_lite.runs.checkpoint``) and records (``rql_lite.runs.records``) until the run
is finished, interrupted, or its time limit comes.

A run may cover several tasks of one domain (``--tasks``): they share one dataset, so the
``tasks x seeds`` agents train in one program (``rql_lite.train.runs_program``: one after another
with ``lax.map`` on a CPU, batched with ``vmap`` on an accelerator), and each (task, seed) gets its
own record, ``records/{task}/seed{S}.json``. Evaluation runs every (task, seed) at once
(``rql_lite.ogbench.evaluate.evaluate_many``).

A run may also be cut into time-limited segments (``max_minutes``): it stops before the
limit at the end of a dispatch, checkpoints, writes its records (unfinished), and the same
command with ``--resume`` continues it, with the same parameters as one uninterrupted run.

A run directory survives what a cluster or a tired user does to it:

- one process at a time (the directory's lock, ``rql_lite.runs.rundir``);
- the checkpoint holds the success curves and the wall time, so a run stopped in any way
  (Ctrl-C, kill -9, a time limit) and resumed ends with the same records as an uninterrupted
  one, apart from wall times; the last step is always evaluated and saved;
- temporary files of a killed write are removed when the directory is next opened;
- every argument is checked before any data is loaded or any file written.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import jax
import numpy as np

from rql_lite import checks
from rql_lite.agent import AgentConfig, config_dict
from rql_lite.configs import agent_config
from rql_lite.data import from_dict, from_task_dicts
from rql_lite.files import check_writable_directory, git_commit, is_temporary, utc_now, write_json_atomic
from rql_lite.ogbench.datasets import load_ogbench
from rql_lite.ogbench.evaluate import eval_pool, evaluate_many
from rql_lite.ogbench.videos import write_video
from rql_lite.runs import checkpoint, records
from rql_lite.runs.rundir import (CHECKPOINT_FILE, LOCK_FILE, RUN_FILE, RunDirectoryLock, check_checkpoint_identity,
                                  check_not_busy, read_run_info, remove_stale_temporaries, signals_deferred)
from rql_lite.runs.spec import RunSpec
from rql_lite.train import TrainingInterrupted, default_batching, device_description, init_states, run_layout, train


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a run after saving its progress; the message says how to continue."""


class TrainingDiverged(ValueError):
    """A loss became NaN or infinite; nothing of the diverged state is saved."""


def check_out_dir(spec: RunSpec, resume: bool) -> dict | None:
    """Refuse an output directory holding something else; return its run.json when resuming.

    A directory holding only what a killed start left (a lock file, temporary files) counts as
    empty, so it can never get stuck.
    """
    if os.path.isfile(os.path.join(spec.out, RUN_FILE)):
        existing = read_run_info(spec.out)
        theirs = existing.get("identity", {})
        mine = json.loads(json.dumps(spec.identity()))  # as run.json stores it (tuples become lists)
        diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
        if diff == ["steps"] and isinstance(theirs.get("steps"), int):
            # Only the length differs: --resume with more steps extends the run (update i's random key
            # depends on i alone, so the result is the run planned for that many); fewer is refused.
            if not resume:
                raise ValueError(f"{spec.out} holds this run planned for {theirs['steps']} steps; pass --resume to "
                                 f"extend it to {mine['steps']}, or choose another --out")
            if mine["steps"] < theirs["steps"]:
                raise ValueError(f"{spec.out} holds this run planned for {theirs['steps']} steps; --steps can only grow "
                                 f"on --resume (got {mine['steps']}). To compare at fewer steps, read its records' "
                                 f"curves there, or start a new --out")
        elif theirs != mine:
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
        kept = [e for e in os.listdir(spec.out) if e != LOCK_FILE and not is_temporary(e)]
        if kept:
            raise ValueError(f"{spec.out} is not empty and holds no rql_lite run ({RUN_FILE} missing); choose an "
                             f"empty or new --out")
        return None
    if resume:
        raise ValueError(f"--resume given but {spec.out} does not exist; drop --resume to start the run there")
    return None


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
    if max_minutes is not None:
        checks.check_number(max_minutes, "--max-minutes", above=0.0)
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
        elif existing["identity"]["steps"] != spec.steps:
            write_json_atomic(os.path.join(spec.out, RUN_FILE), extended_run_info(existing, job.run_info))
            log(f"extending {spec.out} from {existing['identity']['steps']} to {spec.steps} steps")
        return job.run_to_completion(dataset, resume=existing is not None, progress=progress)


def extended_run_info(existing: dict, now: dict) -> dict:
    """``existing`` run.json with its planned steps (identity, spec, command) raised to ``now``'s, and
    one more entry in ``extended``: when, from how many steps, and the code that continued it."""
    step = {"from_steps": existing["identity"]["steps"], "to_steps": now["identity"]["steps"], "at": utc_now(),
            "git_commit": now["git_commit"], "command": now["command"]}
    return {**existing, "identity": now["identity"], "spec": now["spec"], "command": now["command"],
            "extended": [*existing.get("extended", []), step]}


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
        with signals_deferred():
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
        """Write (and return) the record of every (task, seed) at ``step`` (``rql_lite.runs.records``)."""
        spec, out = self.spec, []
        for task, seed in spec.runs():
            record = records.make_record(
                task=task, agent=spec.agent, method=spec.method(), seed=seed, steps=step, target_steps=spec.steps,
                finished=step == spec.steps and self.evaluated_at(step), profile=spec.profile,
                config=config_dict(self.config), dataset=self.data_info, eval_episodes=spec.eval_episodes,
                success_curve=self.curves[(task, seed)], git_commit=self.commit, device=device_description(),
                wall_time_s=self.wall(), command=self.run_info["command"], num_seeds_in_run=len(spec.seeds),
                runs_in_program=len(spec.runs()), runs_batching=default_batching(),
                tasks_in_program=list(spec.tasks) if spec.multi_task else None)
            records.write_record(spec.record_path(task, seed), record)
            out.append(record)
        return out

    def resume_from_checkpoint(self, states):
        """The states of the latest good checkpoint (the previous one if the latest is damaged)."""
        try:
            states, meta, used, problems = checkpoint.load_latest(self.ckpt_path, states,
                                                                  expected={"config": config_dict(self.config)})
        except checkpoint.NoCheckpoint:
            self.log(f"no checkpoint in {self.spec.out} yet: starting from step 0")
            return states
        check_checkpoint_identity(used, meta, self.spec.identity())
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
        runs = self.spec.runs()
        tasks = [task for task, _ in runs]
        if self.eval_pool is None:  # built once per command: making envs (and worker processes) is slow
            self.eval_pool = eval_pool(tasks, self.spec.eval_episodes, workers=self.spec.eval_workers)
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
                written = self.write_records(reached)
                raise SegmentEnded(f"stopped at step {reached} of {spec.steps} to end before the time limit "
                                   f"(--max-minutes); saved in {self.ckpt_path}. Continue with: {self.continue_with}",
                                   written)
            self.milestone(states, spec.steps)  # the last step, whatever the intervals
        except TrainingInterrupted as stop:
            self.stop(stop.states)
        except KeyboardInterrupt:  # during an evaluation or a save
            self.stop(self.latest)
        written = self.write_records(spec.steps)
        if spec.video_episodes > 0:
            try:
                self.record_videos(states)
            except KeyboardInterrupt:
                raise RunInterrupted(f"interrupted while recording videos; the run itself is complete (records in "
                                     f"{spec.out}/records/); record videos with: python -m rql_lite evaluate --run "
                                     f"{spec.out} --video-episodes {spec.video_episodes}") from None
        return written

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
        """Record ``video_episodes`` episodes of every (task, seed) at once (``evaluate_many``) and write
        them to ``videos/``; each (task, seed) is evaluated with its training seed."""
        spec = self.spec
        runs = spec.runs()
        results = evaluate_many([task for task, _ in runs], states, spec.video_episodes, [seed for _, seed in runs],
                                max_steps=spec.max_eval_steps, video_episodes=spec.video_episodes,
                                workers=spec.eval_workers)
        for (task, seed), result in zip(runs, results):
            prefix = f"{task}-" if spec.multi_task else ""
            for j, frames in enumerate(result["frames"]):
                write_video(frames, os.path.join(spec.out, "videos", f"{prefix}seed{seed}-episode{j}.mp4"))


def _leaves(states):
    return jax.tree_util.tree_leaves(states)
