"""One training run on an OGBench task, as the ``train`` command runs it.

A run directory (``--out``) holds ``run.json`` (what the run is: task, agent, seeds,
effective config, dataset and its sha256), ``checkpoint.msgpack`` (latest states) and
``records/seed{S}.json`` (one machine-readable record per seed: success curve, steps,
device, git commit, wall time). Results tables are built only from such records.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import time

import numpy as np

from rql_lite import checkpoint
from rql_lite.agent import AGENTS, AgentConfig
from rql_lite.configs import RUN_PROFILES, agent_config
from rql_lite.data import check_task, from_dict, load_ogbench
from rql_lite.provenance import device_description, git_commit, utc_now, write_json_atomic
from rql_lite.train import TrainingInterrupted, init_states, train, unstack

RECORD_SCHEMA = "rql_lite-run-record-v1"
RUN_FILE, CHECKPOINT_FILE, RECORDS_DIR = "run.json", "checkpoint.msgpack", "records"


@dataclasses.dataclass
class RunSpec:
    """Everything that defines a run; ``None`` fields take the profile's default."""

    task: str
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
        if self.profile not in RUN_PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose one of {sorted(RUN_PROFILES)}")
        if self.agent not in AGENTS:
            raise ValueError(f"unknown agent {self.agent!r}; choose one of {list(AGENTS)}")
        check_task(self.task)
        defaults = RUN_PROFILES[self.profile]
        changes = {k: defaults[k] for k in defaults if getattr(self, k) is None}
        if self.dataset_episodes is None and self.profile == "full":
            changes.pop("dataset_episodes", None)
        spec = dataclasses.replace(self, **changes, seeds=tuple(int(s) for s in self.seeds))
        if spec.steps < 1 or spec.eval_every < 1 or spec.save_every < 1 or spec.eval_episodes < 0:
            raise ValueError("steps, eval_every and save_every must be >= 1 and eval_episodes >= 0")
        if len(set(spec.seeds)) != len(spec.seeds) or not spec.seeds:
            raise ValueError(f"seeds must be distinct and at least one, got {list(self.seeds)}")
        return spec

    def method(self) -> str:
        """The name results tables give this run's agent, e.g. ``"RQL"`` or a ``label`` like ``"BC flow"``."""
        return self.label or self.agent.upper()

    def command(self) -> str:
        """The ``python -m rql_lite train ...`` command line that starts exactly this run."""
        parts = ["python -m rql_lite train", f"--task {self.task}", f"--agent {self.agent}",
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
        return {"task": self.task, "agent": self.agent, "seeds": list(self.seeds), "steps": self.steps,
                "dataset": self.dataset, "profile": self.profile, "overrides": dict(sorted(self.overrides.items())),
                "dataset_episodes": self.dataset_episodes, "episode_length": self.episode_length}


def _cli_value(value) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, (tuple, list)) else str(value)


def config_dict(config: AgentConfig) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}


def check_out_dir(spec: RunSpec, resume: bool) -> dict | None:
    """Refuse an output directory holding something else; return its run.json when resuming."""
    run_file = os.path.join(spec.out, RUN_FILE)
    if os.path.isfile(run_file):
        with open(run_file) as f:
            existing = json.load(f)
        theirs = existing.get("identity", {})
        if theirs != json.loads(json.dumps(spec.identity())):
            diff = sorted(k for k in set(theirs) | set(spec.identity()) if theirs.get(k) != spec.identity().get(k))
            raise ValueError(f"{spec.out} holds another run's results (it differs in {', '.join(diff)}); "
                             f"choose another --out")
        if not resume:
            raise ValueError(f"{spec.out} already holds this run; pass --resume to continue it, or choose another --out")
        return existing
    if resume:
        raise ValueError(f"--resume given but {spec.out} holds no run; drop --resume to start one")
    if os.path.isdir(spec.out) and os.listdir(spec.out):
        raise ValueError(f"{spec.out} is not empty and holds no rql_lite run; choose an empty or new --out")
    return None


def load_run(run_dir: str):
    """``(run_info, states, checkpoint_metadata)`` of a run directory: its ``run.json`` and the
    stacked states (leading axis = seed, in ``run_info["identity"]["seeds"]`` order) of its checkpoint."""
    run_file = os.path.join(run_dir, RUN_FILE)
    if not os.path.isfile(run_file):
        raise ValueError(f"{run_dir} holds no run ({RUN_FILE} missing); pass the --out directory of a train command")
    with open(run_file) as f:
        info = json.load(f)
    states, _ = init_states(AgentConfig(**info["config"]), info["identity"]["seeds"])
    states, meta = checkpoint.load(os.path.join(run_dir, CHECKPOINT_FILE), states)
    return info, states, meta


def run(spec: RunSpec, resume: bool = False, progress: bool = True, log=print) -> list[dict]:
    """Train, evaluate, checkpoint and record one run. Returns the per-seed records."""
    spec = spec.resolved()
    existing = check_out_dir(spec, resume)
    env, train_data, _, data_info = load_ogbench(
        spec.task, spec.dataset, data_dir=spec.data_dir, num_episodes=spec.dataset_episodes,
        workers=spec.workers, episode_length=spec.episode_length, progress=progress)
    if existing is not None and existing["dataset"]["sha256"] != data_info["sha256"]:
        raise ValueError(f"the dataset changed since {spec.out} was started (sha256 differs); resume with the same data")
    obs_dim, action_dim = train_data["observations"].shape[1], train_data["actions"].shape[1]
    config = agent_config(spec.task, obs_dim, action_dim, profile=spec.profile, agent=spec.agent, **spec.overrides)
    dataset = from_dict(train_data)
    log(f"effective config: {json.dumps(config_dict(config), sort_keys=True)}")
    log(f"dataset: {data_info['source']} {data_info['num_transitions']} transitions, sha256 {data_info['sha256'][:12]}")

    commit = git_commit()  # the code this run starts from (read once: later commits did not run here)
    run_info = {"identity": spec.identity(), "config": config_dict(config), "dataset": data_info,
                "spec": dataclasses.asdict(spec), "command": spec.command(), "method": spec.method(),
                "git_commit": commit, "created": utc_now()}
    if existing is None:
        os.makedirs(spec.out, exist_ok=True)
        write_json_atomic(os.path.join(spec.out, RUN_FILE), run_info)

    ckpt_path = os.path.join(spec.out, CHECKPOINT_FILE)
    curves = {s: [] for s in spec.seeds}
    wall_before = 0.0
    states, _ = init_states(config, spec.seeds)
    if resume and os.path.isfile(ckpt_path):
        states, meta = checkpoint.load(ckpt_path, states, expected={"identity": spec.identity(), "config": config_dict(config)})
        curves = {int(s): c for s, c in meta["curves"].items()}
        wall_before = meta["wall_time_s"]
        log(f"resumed from step {int(np.asarray(states.step)[0])}")

    from rql_lite.evaluate import evaluate, make_eval_env

    eval_env = make_eval_env(spec.task, render=spec.video_episodes > 0)
    started = time.perf_counter()

    def wall() -> float:
        return wall_before + time.perf_counter() - started

    def write_records(step: int, finished: bool) -> list[dict]:
        records = []
        for i, seed in enumerate(spec.seeds):
            curve = curves[seed]
            record = {
                "schema": RECORD_SCHEMA, "task": spec.task, "agent": spec.agent, "method": spec.method(),
                "seed": seed, "steps": step,
                "target_steps": spec.steps, "finished": finished, "profile": spec.profile,
                "config": config_dict(config), "dataset": data_info, "eval_episodes": spec.eval_episodes,
                "success_curve": curve, "final_success_rate": curve[-1]["success_rate"] if curve else None,
                "git_commit": commit, "device": device_description(), "wall_time_s": round(wall(), 2),
                "num_seeds_in_run": len(spec.seeds), "command": run_info["command"], "updated": utc_now(),
            }
            write_json_atomic(os.path.join(spec.out, RECORDS_DIR, f"seed{seed}.json"), record)
            records.append(record)
        return records

    def save(states, step):
        checkpoint.save(ckpt_path, states, {"identity": spec.identity(), "config": config_dict(config), "step": step,
                                            "curves": {str(s): c for s, c in curves.items()}, "wall_time_s": wall()})

    def evaluate_all(states, step):
        rates = []
        for i, seed in enumerate(spec.seeds):
            if spec.eval_episodes == 0:
                continue
            result = evaluate(eval_env, unstack(states, i), spec.eval_episodes, seed=1000 * seed + step,
                              max_steps=spec.max_eval_steps)
            curves[seed].append({"step": step, "success_rate": result["success_rate"],
                                 "episodes": spec.eval_episodes, "wall_time_s": round(wall(), 2)})
            rates.append(result["success_rate"])
        return float(np.mean(rates)) if rates else math.nan

    def callback(step, states, metrics):
        extra = None
        if step % spec.eval_every == 0 or step == spec.steps:
            extra = {"success": f"{evaluate_all(states, step):.2f}"}
        if step % spec.save_every == 0 or step == spec.steps:
            save(states, step)
            write_records(step, finished=step == spec.steps)
        return extra

    start_step = int(np.asarray(states.step)[0])
    try:
        states, _ = train(config, dataset, spec.seeds, num_steps=spec.steps - start_step, states=states,
                          steps_per_dispatch=min(1000, spec.eval_every, spec.save_every), callback=callback,
                          callback_every=math.gcd(spec.eval_every, spec.save_every), progress=progress,
                          desc=f"{spec.agent} {spec.task}")
    except TrainingInterrupted as stop:
        step = int(np.asarray(stop.states.step)[0])
        save(stop.states, step)
        write_records(step, finished=False)
        log(f"interrupted at step {step}: checkpoint saved to {ckpt_path}; continue with --resume")
        raise KeyboardInterrupt from None
    records = write_records(spec.steps, finished=True)
    if spec.video_episodes > 0:
        from rql_lite.evaluate import write_video

        for i, seed in enumerate(spec.seeds):
            result = evaluate(eval_env, unstack(states, i), spec.video_episodes, seed=seed,
                              video_episodes=spec.video_episodes, max_steps=spec.max_eval_steps)
            for j, frames in enumerate(result["frames"]):
                write_video(frames, os.path.join(spec.out, "videos", f"seed{seed}-episode{j}.mp4"))
    return records
