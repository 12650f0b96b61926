"""The paper's per-domain hyperparameters, the run profiles (smoke / full), and task names.

``DOMAINS`` is the paper's table of per-domain settings (appendix C and the authors' public
commands), as printed in chapter 6 of the book. ``agent_config`` turns a task name into an
``AgentConfig``; any field can be overridden.

Task names are OGBench's: the single-task variant ``N`` of a domain's dataset is
``{domain}-singletask-task{N}-v0`` (``task_name``), and it trains on the dataset ``{domain}-v0``
(``dataset_name_for_task``). This module is the one place that knows these names, so that checking
a run's tasks needs neither OGBench nor MuJoCo.
"""
from __future__ import annotations

import dataclasses
import difflib
import re

from rql_lite.agent import EXPANDED, AgentConfig

# dataset prefix -> (sparse reward, alpha, expectile kappa, pessimism rho, chunk h, discount); alpha and
# kappa are RQL's (and TFQL's); the baselines take their own knob from BASELINE_KNOBS instead
DOMAINS: dict[str, dict] = {
    "scene-play": dict(sparse=True, alpha=3.0, expectile=0.7, pessimism=0.5, horizon=5, discount=0.99),
    "puzzle-3x3-play": dict(sparse=True, alpha=1.0, expectile=0.7, pessimism=0.5, horizon=5, discount=0.99),
    "puzzle-4x4-play": dict(sparse=True, alpha=1.0, expectile=0.9, pessimism=0.5, horizon=5, discount=0.99),
    "cube-double-play": dict(sparse=False, alpha=10.0, expectile=0.9, pessimism=0.5, horizon=5, discount=0.99),
    "cube-triple-play": dict(sparse=False, alpha=1.0, expectile=0.9, pessimism=0.5, horizon=5, discount=0.99),
    "cube-quadruple-play": dict(sparse=False, alpha=1.0, expectile=0.7, pessimism=0.5, horizon=5, discount=0.99),
    "antmaze-large-navigate": dict(sparse=False, alpha=0.1, expectile=0.5, pessimism=0.5, horizon=1, discount=0.99),
    "antmaze-giant-navigate": dict(sparse=False, alpha=0.1, expectile=0.5, pessimism=0.5, horizon=1, discount=0.995),
    "humanoidmaze-medium-navigate": dict(sparse=False, alpha=0.3, expectile=0.5, pessimism=0.0, horizon=1, discount=0.995),
    "humanoidmaze-large-navigate": dict(sparse=False, alpha=0.3, expectile=0.5, pessimism=0.0, horizon=1, discount=0.995),
    # Not in the paper: the easiest cube task, used for CPU-sized runs; cube-double's settings.
    "cube-single-play": dict(sparse=False, alpha=10.0, expectile=0.9, pessimism=0.5, horizon=5, discount=0.99),
    # Not in the paper (never among its 50 tasks): OGBench's point mazes, whose data a scripted controller
    # makes, for the horizon study. Settings by analogy with the paper's maze domains: antmaze's alpha, kappa,
    # pessimism and h = 1 (OGBench's maze rewards are already -1 / 0); medium and large take
    # antmaze-large's discount, giant takes antmaze-giant's.
    "pointmaze-medium-navigate": dict(sparse=False, alpha=0.1, expectile=0.5, pessimism=0.5, horizon=1, discount=0.99),
    "pointmaze-large-navigate": dict(sparse=False, alpha=0.1, expectile=0.5, pessimism=0.5, horizon=1, discount=0.99),
    "pointmaze-giant-navigate": dict(sparse=False, alpha=0.1, expectile=0.5, pessimism=0.5, horizon=1, discount=0.995),
}
# The point mazes' settings borrow from this paper domain (the baselines' knobs included).
POINTMAZE_ANALOGUE = {"pointmaze-medium-navigate": "antmaze-large-navigate",
                      "pointmaze-large-navigate": "antmaze-large-navigate",
                      "pointmaze-giant-navigate": "antmaze-giant-navigate"}

# Each baseline's main knob per domain: the settings behind the published baseline numbers (the QAM
# release's experiments/reproduce.py, whose runs the RQL paper's table reports), as
# (AgentConfig field, {domain: value}). The domains outside the paper borrow (``_with_extra_domains``).
_FQL = {"scene-play": 300.0, "puzzle-3x3-play": 300.0, "puzzle-4x4-play": 1.0, "cube-double-play": 300.0,
        "cube-triple-play": 30.0, "cube-quadruple-play": 100.0, "antmaze-large-navigate": 3.0,
        "antmaze-giant-navigate": 3.0, "humanoidmaze-medium-navigate": 30.0, "humanoidmaze-large-navigate": 30.0}
_IFQL = {"scene-play": 0.9, "puzzle-3x3-play": 0.95, "puzzle-4x4-play": 0.9, "cube-double-play": 0.9,
         "cube-triple-play": 0.95, "cube-quadruple-play": 0.95, "antmaze-large-navigate": 0.9,
         "antmaze-giant-navigate": 0.8, "humanoidmaze-medium-navigate": 0.7, "humanoidmaze-large-navigate": 0.8}
_FAWAC = {"scene-play": 6.4, "puzzle-3x3-play": 0.8, "puzzle-4x4-play": 0.8, "cube-double-play": 0.8,
          "cube-triple-play": 0.8, "cube-quadruple-play": 0.8, "antmaze-large-navigate": 6.4,
          "antmaze-giant-navigate": 0.8, "humanoidmaze-medium-navigate": 6.4, "humanoidmaze-large-navigate": 0.8}
_FBRAC = {"scene-play": 100.0, "puzzle-3x3-play": 0.03, "puzzle-4x4-play": 0.3, "cube-double-play": 0.1,
          "cube-triple-play": 0.03, "cube-quadruple-play": 1.0, "antmaze-large-navigate": 0.1,
          "antmaze-giant-navigate": 0.1, "humanoidmaze-medium-navigate": 30.0, "humanoidmaze-large-navigate": 10.0}


def _with_extra_domains(knob: dict[str, float]) -> dict[str, float]:
    """A baseline's published knob per paper domain, plus the domains outside the paper: cube-single
    takes cube-double's, each point maze its antmaze analogue's."""
    extra = {"cube-single-play": knob["cube-double-play"]}
    extra.update({maze: knob[analogue] for maze, analogue in POINTMAZE_ANALOGUE.items()})
    return {**knob, **extra}


BASELINE_KNOBS: dict[str, tuple[str, dict[str, float]]] = {
    "fql": ("distill_weight", _with_extra_domains(_FQL)),
    "ifql": ("expectile", _with_extra_domains(_IFQL)),
    "fawac": ("inv_temperature", _with_extra_domains(_FAWAC)),
    "fbrac": ("alpha", _with_extra_domains(_FBRAC)),
}
# The reference implementations of the four baselines act with the online policy (no EMA copy). BC
# flow keeps RQL's EMA: it is RQL without its value.
BASELINE_SHARED = dict(ema_rate=0.0)

# Network and batch sizes per profile. "full" is the paper; "smoke" runs the same code path
# in about a minute on two CPU cores.
PROFILES: dict[str, dict] = {
    "full": dict(policy_hidden=(512,) * 4, value_hidden=(512,) * 4, num_values=10, batch_size=256),
    "smoke": dict(policy_hidden=(64, 64), value_hidden=(64, 64), num_values=2, batch_size=64),
}


# Run settings per profile (training length, evaluation, generated-data size). "full" is
# the paper's protocol: 1M steps, 50 evaluation episodes, the published dataset size.
RUN_PROFILES: dict[str, dict] = {
    "full": dict(steps=1_000_000, eval_every=100_000, eval_episodes=50, save_every=50_000,
                 dataset_episodes=None, episode_length=1000, max_eval_steps=None),
    "smoke": dict(steps=200, eval_every=100, eval_episodes=2, save_every=100,
                  dataset_episodes=4, episode_length=200, max_eval_steps=100),
}


# The ten OGBench domains of the paper, in its table's order.
BENCHMARK_DOMAINS = (
    "antmaze-large-navigate", "antmaze-giant-navigate", "humanoidmaze-medium-navigate",
    "humanoidmaze-large-navigate", "scene-play", "puzzle-3x3-play", "puzzle-4x4-play",
    "cube-double-play", "cube-triple-play", "cube-quadruple-play",
)
TASKS_PER_DOMAIN = 5  # OGBench's single-task variants task1 ... task5 of every domain
# The part of a task name that selects the task within its dataset: "-singletask[-taskN]" or
# "-oraclerep", just before the version suffix.
TASK_MARKER = re.compile(r"-(?:singletask(?:-task\d+)?|oraclerep)(?=-v\d+$)")


def task_name(domain: str, index: int) -> str:
    """OGBench's name of single-task variant ``index`` (1 to 5) of ``domain``:
    ``task_name("cube-double-play", 2) == "cube-double-play-singletask-task2-v0"``."""
    return f"{domain}-singletask-task{index}-v0"


def domain_tasks(domain: str) -> list[str]:
    """The five single-task names of ``domain``."""
    return [task_name(domain, i) for i in range(1, TASKS_PER_DOMAIN + 1)]


def known_tasks() -> list[str]:
    """Every single-task name this project has hyperparameters for."""
    return [task for domain in DOMAINS for task in domain_tasks(domain)]


def benchmark_tasks(domain: str | None = None) -> list[str]:
    """The paper's 50 single-task names (or the five of one domain), in its table's order."""
    return [task for d in (BENCHMARK_DOMAINS if domain is None else (domain,)) for task in domain_tasks(d)]


def dataset_name_for_task(task: str) -> str:
    """The dataset an OGBench task trains on: ``"cube-double-play-singletask-task2-v0"`` and
    ``"cube-double-play-oraclerep-v0"`` both map to ``"cube-double-play-v0"``; a dataset name is
    returned unchanged."""
    return TASK_MARKER.sub("", task)


def check_task(task: str) -> None:
    """``ValueError`` for a task name this project does not know, listing close names."""
    tasks = known_tasks()
    if task in tasks:
        return
    close = difflib.get_close_matches(task, tasks, n=4, cutoff=0.5)
    hint = f" Close names: {', '.join(close)}." if close else ""
    raise ValueError(f"unknown task {task!r}.{hint} Tasks look like '{task_name('cube-double-play', 2)}' "
                     f"(domains: {', '.join(sorted(DOMAINS))}).")


def check_tasks(tasks) -> tuple[str, ...]:
    """The task names of a run, checked: known, distinct, and all on one dataset (one domain)."""
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    if not tasks:
        raise ValueError("give a task (--task) or several tasks of one domain (--tasks)")
    for task in tasks:
        if not isinstance(task, str):
            raise ValueError(f"task names are strings, got {task!r}")
        check_task(task)
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"--tasks must be distinct, got {list(tasks)}")
    datasets = {dataset_name_for_task(task) for task in tasks}
    if len(datasets) > 1:
        raise ValueError(f"--tasks must share one dataset (tasks 1-5 of one domain); these use "
                         f"{', '.join(sorted(datasets))}. Start one run per domain")
    return tasks


def domain_of(task: str) -> str:
    """The ``DOMAINS`` key of an OGBench task or dataset name (longest matching prefix)."""
    matches = [d for d in DOMAINS if task.startswith(d)]
    if not matches:
        close = difflib.get_close_matches(task, list(DOMAINS), n=3, cutoff=0.4)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"no hyperparameters for task {task!r}.{hint} Known domains: {sorted(DOMAINS)}")
    return max(matches, key=len)


def agent_config(task: str, obs_dim: int, action_dim: int, profile: str = "full", **overrides) -> AgentConfig:
    """The paper's configuration for ``task`` at ``profile`` size, with ``overrides`` applied.

    RQL and TFQL take the domain's alpha and kappa (``DOMAINS``); BC flow and the baselines
    (``overrides["agent"]`` in ``BASELINE_KNOBS``) take the domain's shared settings (pessimism, chunk
    length, discount); a baseline also takes its own knob's published value for the domain and
    ``BASELINE_SHARED``.

    Example: ``agent_config("cube-double-play-singletask-task2-v0", 40, 5, agent="tfql")``.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    domain = domain_of(task)
    settings = {k: v for k, v in DOMAINS[domain].items() if k != "sparse"}
    agent = overrides.get("agent", "rql")
    if agent not in EXPANDED:
        settings = {k: v for k, v in settings.items() if k not in ("alpha", "expectile")}
        if agent in BASELINE_KNOBS:
            settings.update(BASELINE_SHARED)
            field, values = BASELINE_KNOBS[agent]
            settings[field] = values[domain]
    settings.update(PROFILES[profile])
    fields = {f.name for f in dataclasses.fields(AgentConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown hyperparameters {unknown}; valid names: {sorted(fields)}")
    settings.update(overrides)
    return AgentConfig(obs_dim=obs_dim, action_dim=action_dim, **settings)


def paper_benchmark_config(profile: str = "full") -> AgentConfig:
    """The benchmark's configurations: observation 40, action 5, h=5, K=10 (cube-double's shape)."""
    return agent_config("cube-double-play", obs_dim=40, action_dim=5, profile=profile)
