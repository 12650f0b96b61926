"""What a run is: ``RunSpec``, checked before any data is loaded or any file written.

A ``RunSpec`` holds every setting of ``python -m rql_lite train`` (tasks, agent, seeds, steps,
dataset, profile, overrides, evaluation and save intervals, ...); ``None`` fields take the
profile's default (``rql_lite.configs.RUN_PROFILES``). ``resolved()`` fills them in and checks
every field; it reads no data, imports neither OGBench nor MuJoCo, and writes nothing.
``identity()`` is what two invocations must share to be the same run (``--resume``), and
``command()`` the command line that starts exactly this run.
"""
from __future__ import annotations

import dataclasses
import os
import shlex

from rql_lite import checks
from rql_lite.agent import AGENTS, METHOD_NAMES
from rql_lite.configs import RUN_PROFILES, agent_config, check_tasks
from rql_lite.ogbench.datasets import DEFAULT_DATA_DIR, check_dataset_source
from rql_lite.ogbench.generate import published_episode_length
from rql_lite.runs.rundir import RECORDS_DIR

MAX_SEED = 2**31 - 1  # jax.random.PRNGKey folds larger integers onto small ones: seeds would collide
FIXED_BY_DATA = ("obs_dim", "action_dim")  # hyperparameters the dataset sets, not --set


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
    data_dir: str = DEFAULT_DATA_DIR
    workers: int = 1  # processes generating the dataset
    eval_workers: int | None = None  # env processes of the evaluations (None: evaluate_many's default, per core)
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
        if self.episode_length is None and self.profile == "full":  # the published layout (giant maze: 2000)
            changes["episode_length"] = published_episode_length(tasks[0])
        seeds = tuple(self.seeds) if isinstance(self.seeds, (list, tuple)) else (self.seeds,)
        for seed in seeds:
            checks.check_int(seed, "--seeds", 0, MAX_SEED)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"--seeds must be distinct and at least one, got {list(seeds)}")
        spec = dataclasses.replace(self, **changes, seeds=tuple(int(s) for s in seeds),
                                   task=tasks[0] if len(tasks) == 1 else tasks)
        for name, minimum in (("steps", 1), ("eval_every", 1), ("save_every", 1), ("eval_episodes", 0),
                              ("episode_length", 1), ("workers", 1), ("video_episodes", 0)):
            checks.check_int(getattr(spec, name), "--" + name.replace("_", "-"), minimum)
        for name in ("dataset_episodes", "max_eval_steps", "eval_workers"):
            checks.check_int(getattr(spec, name), "--" + name.replace("_", "-"), 1, allow_none=True)
        if spec.label is not None and (not isinstance(spec.label, str) or not spec.label.strip() or "\n" in spec.label):
            raise ValueError(f"--label must be a non-empty one-line name, got {spec.label!r}")
        for name in ("out", "data_dir"):
            if not isinstance(getattr(spec, name), str) or not getattr(spec, name):
                raise ValueError(f"--{name.replace('_', '-')} must name a directory")
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
        """The name results tables give this run's agent, e.g. ``"RQL"``, ``"BC flow"``, or its ``label``."""
        return self.label or METHOD_NAMES[self.agent]

    def command(self) -> str:
        """The ``python -m rql_lite train ...`` command line that starts exactly this run.

        Every setting that changes what the run computes or where it reads and writes is in it, the
        data directory and the generation and evaluation workers included; interval and size flags
        are written out even where they equal the profile's defaults, so the command still reruns
        this run if those defaults change. Words are shell-quoted (paths with spaces survive; a
        ``~`` stays for ``rql_lite`` to expand): ``shlex.split`` and the ``train`` parser give this
        spec back (``tests/cli/test_cli.py``).
        """
        q = shlex.quote
        parts = ["python -m rql_lite train", "--tasks" if self.multi_task else "--task",
                 *map(q, self.tasks), "--agent", q(self.agent), "--seeds", *(str(s) for s in self.seeds),
                 *(["--steps", str(self.steps)] if self.steps is not None else []), "--dataset", q(self.dataset),
                 "--profile", q(self.profile), "--out", q(self.out)]
        if self.overrides:
            parts += ["--set", *(q(f"{k}={_cli_value(v)}") for k, v in sorted(self.overrides.items()))]
        flags = ("eval_every", "eval_episodes", "save_every", "dataset_episodes", "episode_length", "max_eval_steps")
        for name in flags:
            value = getattr(self, name)
            if value is not None:
                parts += [f"--{name.replace('_', '-')}", str(value)]
        parts += ["--data-dir", q(self.data_dir)]
        for name, default in (("workers", 1), ("eval_workers", None), ("video_episodes", 0)):
            if getattr(self, name) != default:
                parts += [f"--{name.replace('_', '-')}", str(getattr(self, name))]
        if self.label:
            parts += ["--label", q(self.label)]
        return " ".join(parts)

    def identity(self) -> dict:
        """What must match for two invocations to be the same run (resume allowed)."""
        return {"task": list(self.tasks) if self.multi_task else self.task, "agent": self.agent, "seeds": list(self.seeds), "steps": self.steps,
                "dataset": self.dataset, "profile": self.profile, "overrides": dict(sorted(self.overrides.items())),
                "dataset_episodes": self.dataset_episodes, "episode_length": self.episode_length}


def _cli_value(value) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, (tuple, list)) else str(value)
