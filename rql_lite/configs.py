"""The paper's per-domain hyperparameters and the run profiles (smoke / full).

``DOMAINS`` is the paper's table of per-domain settings (appendix C and the authors' public
commands), as printed in chapter 6 of the book. ``agent_config``
turns a task name into an ``AgentConfig``; any field can be overridden.
"""
from __future__ import annotations

import dataclasses
import difflib

from rql_lite.agent import AgentConfig

# dataset prefix -> (sparse reward, alpha, expectile kappa, pessimism rho, chunk h, discount)
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
}

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

    Example: ``agent_config("cube-double-play-singletask-task2-v0", 40, 5, agent="tfql")``.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    settings = {k: v for k, v in DOMAINS[domain_of(task)].items() if k != "sparse"}
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
