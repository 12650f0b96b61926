"""Datasets on the accelerator and a jittable sampler of h-step action chunks.

A ``ChunkDataset`` holds flat transition arrays (one row per environment step)
plus, for every row, the index of the last row of its episode. Sampling a chunk
that starts at row i reads rows i..i+h-1, but never crosses into the next
episode: entries past the episode end are clamped to its last row and marked
``valid = 0`` so the losses drop them.

The five single-task variants of an OGBench domain share one dataset: only rewards and masks
differ (OGBench relabels them per task). ``from_task_dicts`` keeps the shared arrays once and
one reward and mask column per task, ``(N, M)``; the sampler reads the column of the task it
is given, so one program can train agents on several tasks from one copy of the data.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class ChunkDataset:
    """Transition arrays, ``N`` rows. All live on the default device."""

    observations: jax.Array  # (N, obs_dim)
    actions: jax.Array  # (N, action_dim)
    rewards: jax.Array  # (N,), or (N, M): one column per task
    masks: jax.Array  # (N,) or (N, M); 0 where the next state is a true terminal
    next_observations: jax.Array  # (N, obs_dim)
    episode_end: jax.Array  # (N,) int32 index of the last row of the row's episode

    @property
    def size(self) -> int:
        return int(self.observations.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def num_tasks(self) -> int:
        """How many tasks' rewards and masks the dataset holds (1 for ``(N,)`` arrays, ``M`` for ``(N, M)``)."""
        return 1 if self.rewards.ndim == 1 else int(self.rewards.shape[1])


def episode_ends(terminals: np.ndarray) -> np.ndarray:
    """For each row, the index of the last row of its episode (``terminals[i] = 1`` ends one).

    The final row always ends an episode, so a dataset cut mid-episode stays valid.
    """
    terminals = np.asarray(terminals).reshape(-1)
    ends = np.flatnonzero(terminals > 0)
    if ends.size == 0 or ends[-1] != terminals.size - 1:
        ends = np.append(ends, terminals.size - 1)
    return ends[np.searchsorted(ends, np.arange(terminals.size))].astype(np.int32)


def check_finite(name: str, array: np.ndarray) -> None:
    """``ValueError`` naming ``name`` and the first index if ``array`` holds NaN or inf."""
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"dataset key {name!r} holds NaN or inf (first at index {first}); fix or drop those rows")


def from_arrays(
    observations,
    actions,
    rewards,
    terminals,
    masks=None,
    next_observations=None,
) -> ChunkDataset:
    """Build a ``ChunkDataset`` from numpy arrays (OGBench's layout) and move it to the device.

    Args:
      observations: ``(N, obs_dim)``. actions: ``(N, action_dim)``. rewards: ``(N,)``.
      terminals: ``(N,)``, 1 on the last transition of each episode (OGBench's meaning).
      masks: like ``rewards``, 0 where the next state is terminal (no bootstrap); default all ones.
      next_observations: ``(N, obs_dim)``; default ``observations`` shifted by one within
        each episode (the last transition of an episode then repeats its own state).
    """
    arrays = {
        "observations": np.asarray(observations, np.float32),
        "actions": np.asarray(actions, np.float32),
        "rewards": np.asarray(rewards, np.float32),
        "terminals": np.asarray(terminals, np.float32).reshape(-1),
    }
    n = arrays["observations"].shape[0]
    if arrays["rewards"].ndim != 2:
        arrays["rewards"] = arrays["rewards"].reshape(-1)
    arrays["masks"] = (np.ones(arrays["rewards"].shape, np.float32) if masks is None
                       else np.asarray(masks, np.float32).reshape(arrays["rewards"].shape[:1] + (-1,)))
    if arrays["rewards"].ndim == 1:
        arrays["masks"] = arrays["masks"].reshape(-1)
    if arrays["masks"].shape != arrays["rewards"].shape:
        raise ValueError(f"masks have shape {arrays['masks'].shape} but rewards {arrays['rewards'].shape}; give one "
                         f"mask per reward (one column per task)")
    ends = episode_ends(arrays["terminals"])
    if next_observations is None:
        nxt = np.minimum(np.arange(n) + 1, ends)
        next_observations = arrays["observations"][nxt]
    arrays["next_observations"] = np.asarray(next_observations, np.float32)
    if arrays["observations"].ndim != 2 or arrays["actions"].ndim != 2:
        raise ValueError(
            f"observations and actions must be 2-D (rows, dim), got {arrays['observations'].shape} and {arrays['actions'].shape}"
        )
    for name, array in arrays.items():
        if array.shape[0] != n:
            raise ValueError(f"dataset key {name!r} has {array.shape[0]} rows but observations has {n}; all keys need one row per transition")
        check_finite(name, array)
    if arrays["next_observations"].shape != arrays["observations"].shape:
        raise ValueError(f"next_observations shape {arrays['next_observations'].shape} differs from observations {arrays['observations'].shape}")
    return ChunkDataset(
        observations=jnp.asarray(arrays["observations"]),
        actions=jnp.asarray(arrays["actions"]),
        rewards=jnp.asarray(arrays["rewards"]),
        masks=jnp.asarray(arrays["masks"]),
        next_observations=jnp.asarray(arrays["next_observations"]),
        episode_end=jnp.asarray(ends),
    )


def from_dict(dataset: Mapping[str, np.ndarray]) -> ChunkDataset:
    """``from_arrays`` on a dict with OGBench's keys (``masks`` and ``next_observations`` optional)."""
    missing = [k for k in ("observations", "actions", "rewards", "terminals") if k not in dataset]
    if missing:
        raise ValueError(f"dataset is missing keys {missing}; got {sorted(dataset)}")
    return from_arrays(
        dataset["observations"],
        dataset["actions"],
        dataset["rewards"],
        dataset["terminals"],
        dataset.get("masks"),
        dataset.get("next_observations"),
    )


def from_task_dicts(datasets: Sequence[Mapping[str, np.ndarray]], names: Sequence[str] | None = None) -> ChunkDataset:
    """One ``ChunkDataset`` for several tasks of one domain: shared arrays once, rewards and masks ``(N, M)``.

    ``datasets``: one dict per task with OGBench's keys, as ``rql_lite.ogbench.datasets.load_ogbench`` returns for each
    single-task variant of the same dataset file. Observations, actions, terminals and
    next observations must be identical across them (only rewards and masks may differ);
    ``names`` label the tasks in the error if they are not.
    """
    if not datasets:
        raise ValueError("give at least one task's dataset")
    names = list(names) if names is not None else [f"task {i}" for i in range(len(datasets))]
    first = datasets[0]
    for name, other in zip(names[1:], datasets[1:]):
        for key in ("observations", "actions", "terminals", "next_observations"):
            if key not in first and key not in other:
                continue
            a, b = first.get(key), other.get(key)
            if a is None or b is None or np.shape(a) != np.shape(b) or not np.array_equal(a, b):
                raise ValueError(f"the datasets of {names[0]} and {name} differ in {key!r}; tasks trained in one program "
                                 f"must share one dataset (the single-task variants of one domain's dataset file)")
    columns = lambda key: np.stack([np.asarray(d[key], np.float32).reshape(-1) for d in datasets], axis=1)  # noqa: E731
    masks = columns("masks") if all("masks" in d for d in datasets) else None
    return from_arrays(first["observations"], first["actions"], columns("rewards"), first["terminals"], masks,
                       first.get("next_observations"))


def sample_chunks(dataset: ChunkDataset, key: jax.Array, batch_size: int, horizon: int, task=0) -> dict:
    """Sample ``batch_size`` action chunks of length ``horizon`` (jittable; sizes static).

    ``task``: the reward/mask column to read when the dataset holds several (an integer, may be
    traced, e.g. vmapped over runs); ignored for a one-column dataset.

    Returns a batch as ``rql_lite.agent.update`` expects: observations ``(B, obs)``,
    actions ``(B, h, d)``, rewards/masks/valid ``(B, h)``, next_observations ``(B, obs)``
    (the state after the chunk's last valid step, where the target bootstraps).
    """
    start = jax.random.randint(key, (batch_size,), 0, dataset.observations.shape[0])
    end = dataset.episode_end[start]
    rows = start[:, None] + jnp.arange(horizon)[None, :]
    valid = rows <= end[:, None]
    rows = jnp.minimum(rows, end[:, None])
    if dataset.rewards.ndim == 2:  # read only the sampled entries of this task's column
        rewards, masks = dataset.rewards[rows, task], dataset.masks[rows, task]
    else:
        rewards, masks = dataset.rewards[rows], dataset.masks[rows]
    return {
        "observations": dataset.observations[start],
        "actions": dataset.actions[rows],
        "rewards": rewards * valid,
        "masks": masks,
        "valid": valid.astype(jnp.float32),
        "next_observations": dataset.next_observations[rows[:, -1]],
    }
