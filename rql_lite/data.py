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

import difflib
import hashlib
import os
import zipfile
import zlib
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


def _check_finite(name: str, array: np.ndarray) -> None:
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
        _check_finite(name, array)
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

    ``datasets``: one dict per task with OGBench's keys, as ``load_ogbench`` returns for each
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


# --------------------------------------------------------------------------------------
# OGBench: official download, locally generated files, or a path. ``ogbench`` is imported
# lazily so the core library works without it.
# --------------------------------------------------------------------------------------

DEFAULT_DATA_DIR = os.path.join("~", ".rql_lite", "datasets")


def known_tasks() -> list[str]:
    """Every singletask name this project has hyperparameters for (``...-task{1..5}-v0``)."""
    from rql_lite.configs import DOMAINS

    return [f"{domain}-singletask-task{i}-v0" for domain in DOMAINS for i in range(1, 6)]


def check_task(task: str) -> None:
    """``ValueError`` for a task name this project does not know, listing close names."""
    tasks = known_tasks()
    if task in tasks:
        return
    close = difflib.get_close_matches(task, tasks, n=4, cutoff=0.5)
    hint = f" Close names: {', '.join(close)}." if close else ""
    raise ValueError(f"unknown task {task!r}.{hint} Tasks look like 'cube-double-play-singletask-task2-v0' "
                     f"(domains: {', '.join(sorted({t.split('-singletask')[0] for t in tasks}))}).")


def portable_path(path: str) -> str:
    """``path`` as it can be written into a shared record: under the home directory it starts
    with ``~``, under the working directory it is relative; otherwise absolute."""
    path = os.path.abspath(os.path.expanduser(path))
    cwd, home = os.getcwd(), os.path.expanduser("~")
    if path.startswith(cwd + os.sep):
        return os.path.relpath(path, cwd)
    if path.startswith(home + os.sep):
        return os.path.join("~", os.path.relpath(path, home))
    return path


DATASET_KEYS = ("observations", "actions", "terminals")  # what every OGBench dataset file holds


def check_dataset_source(source: str) -> None:
    """``ValueError`` unless ``source`` is ``"official"``, ``"generated"`` or an existing ``NAME.npz``
    with its ``NAME-val.npz`` beside it. Reads nothing but the directory."""
    if source in ("official", "generated"):
        return
    path = os.path.expanduser(source)
    if not path.endswith(".npz") or not os.path.isfile(path):
        raise ValueError(f"--dataset {source!r} is neither 'official', 'generated' nor an existing NAME.npz file")
    val = path[: -len(".npz")] + "-val.npz"
    if not os.path.isfile(val):
        raise ValueError(f"--dataset {path} has no validation file beside it ({os.path.basename(val)}); "
                         f"OGBench datasets come as NAME.npz and NAME-val.npz")


def check_npz(path: str) -> int:
    """Check a dataset file's structure without loading its arrays; return its number of rows.

    Reads only the zip directory and each array's header: a file that is not a zip archive
    (or was cut short), lacks one of ``DATASET_KEYS``, holds arrays that disagree in length, or
    whose observations or actions are not 2-D is refused with a ``ValueError`` naming the file.
    """
    fix = "regenerate it (delete it and rerun with --dataset generated) or download it again"
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        size = os.path.getsize(path) if os.path.exists(path) else 0
        raise ValueError(f"dataset file {path} ({size} bytes) is not a readable .npz archive "
                         f"({type(err).__name__}: truncated or not an .npz); {fix}") from None
    shapes = {}
    with archive:
        for member in archive.namelist():
            if not member.endswith(".npy"):
                continue
            try:
                with archive.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shapes[member[: -len(".npy")]] = read_header(f)[0]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
                raise ValueError(f"dataset file {path} is damaged (array {member[:-4]!r}: {type(err).__name__}); "
                                 f"{fix}") from None
    missing = [k for k in DATASET_KEYS if k not in shapes]
    if missing:
        raise ValueError(f"dataset file {path} lacks {', '.join(repr(k) for k in missing)} (it holds "
                         f"{sorted(shapes)}); an OGBench dataset needs {', '.join(DATASET_KEYS)}: {fix}")
    for key in ("observations", "actions"):
        if len(shapes[key]) != 2:
            raise ValueError(f"dataset file {path}: {key!r} has shape {shapes[key]}, expected (rows, dim); {fix}")
    rows = {key: (shape[0] if shape else None) for key, shape in shapes.items()}
    if len(set(rows.values())) != 1:
        detail = ", ".join(f"{k} {n}" for k, n in sorted(rows.items()))
        raise ValueError(f"dataset file {path} holds arrays of unequal length (rows: {detail}); every key needs "
                         f"one row per transition: {fix}")
    return rows["observations"]


def check_writable_directory(path: str, what: str) -> None:
    """``ValueError`` unless ``path`` is a directory this process can write in, or can be created.

    ``what`` names the argument in the message, e.g. ``"--out"``. Creates nothing.
    """
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{what} {path} is a file, not a directory; choose a directory (new or empty)")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{what} {path} cannot be created: {existing} is a file; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "it" if existing == path else f"its parent {existing}"
        raise ValueError(f"{what} {path} is not writable ({where} is read-only for this user); choose a writable "
                         f"directory or change its permissions")


def sha256_of(paths) -> str:
    """One sha256 over the bytes of ``paths`` in order (the train file, then the val file)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def sparsify_rewards(rewards: np.ndarray) -> np.ndarray:
    """The sparse variant used for scene and puzzle: -1 until every subtask is done, then 0."""
    return np.where(np.asarray(rewards) != 0.0, -1.0, 0.0).astype(np.float32)


def generated_folder(data_dir: str = DEFAULT_DATA_DIR, num_episodes: int | None = None, seed: int = 0,
                     episode_length: int = 1000) -> str:
    """Where ``generate`` writes, and ``load_ogbench(source="generated")`` looks for, a dataset made
    with these settings: ``DATA_DIR/generated/{published|Nep}[-Lsteps]-seedS`` (``~`` expanded)."""
    size = "published" if num_episodes is None else f"{num_episodes}ep"
    if episode_length != 1000:
        size += f"-{episode_length}steps"
    return os.path.join(os.path.expanduser(data_dir), "generated", f"{size}-seed{seed}")


def load_ogbench(
    task: str,
    source: str = "generated",
    data_dir: str = DEFAULT_DATA_DIR,
    num_episodes: int | None = None,
    workers: int = 1,
    seed: int = 0,
    episode_length: int = 1000,
    progress: bool = True,
):
    """Make the OGBench env for ``task`` and load its dataset (train and val splits).

    Args:
      task: e.g. ``"cube-double-play-singletask-task2-v0"``.
      source: ``"official"`` (OGBench's download; needs internet), ``"generated"`` (made
        locally with OGBench's oracles if missing, then cached under ``data_dir``), or the
        path of a ``NAME.npz`` file in OGBench's layout (``NAME-val.npz`` beside it).
      num_episodes, workers, seed, episode_length: generation settings for ``"generated"``
        (``num_episodes=None`` is the published count).
      progress: show a progress bar while a dataset is generated.

    Returns:
      ``(env, train, val, info)``: numpy dicts with OGBench's keys (rewards made sparse for
      scene and puzzle, as the paper does) and ``info`` with ``source``, ``path``, ``sha256``.
    """
    from rql_lite.ogbench.env_workers import prepare_for_envs

    prepare_for_envs()  # before MuJoCo's first import: EGL, not GLFW, on a headless machine
    import ogbench

    from rql_lite.configs import DOMAINS, domain_of

    check_task(task)
    from rql_lite.ogbench.generate import dataset_name_for_task

    name = dataset_name_for_task(task)
    data_dir = os.path.expanduser(data_dir)
    if source == "official":
        official_dir = os.path.join(data_dir, "official")
        try:
            ogbench.download_datasets([name], official_dir)
        except OSError as err:  # URLError and friends are OSErrors
            raise ValueError(
                f"could not download the official {name} dataset ({err.__class__.__name__}: no internet?). "
                f"Generate one locally instead: --dataset generated (or python -m rql_lite generate {name})"
            ) from None
        path = os.path.join(official_dir, f"{name}.npz")
    elif source == "generated":
        from rql_lite.ogbench import generate as datagen

        folder = generated_folder(data_dir, num_episodes, seed, episode_length)
        path = os.path.join(folder, f"{name}.npz")
        if not (os.path.exists(path) and os.path.exists(path.replace(".npz", "-val.npz"))):
            try:
                datagen.get_recipe(name)
            except ValueError:
                raise ValueError(f"{name} cannot be generated offline (only the manipulation datasets have "
                                 f"oracles in ogbench); use --dataset official where there is internet") from None
            check_writable_directory(folder, "--data-dir")
            datagen.generate_dataset(name, folder, num_episodes=num_episodes, seed=seed, workers=workers,
                                     episode_length=episode_length, progress=progress)
    else:
        check_dataset_source(source)
        path = os.path.expanduser(source)
    val_path = path[: -len(".npz")] + "-val.npz"
    for split_path in (path, val_path):
        check_npz(split_path)
    try:
        env, train, val = ogbench.make_env_and_datasets(task, dataset_path=path)
    except KeyError as err:  # OGBench's relabelling reads keys such as qpos that check_npz does not require
        raise ValueError(f"dataset {path} (or its -val file) lacks key {err} that {task} needs; regenerate it "
                         f"(--dataset generated) or pass a file made for this task") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise ValueError(f"dataset {path} (or its -val file) is damaged ({type(err).__name__}: {err}); "
                         f"regenerate it (--dataset generated) or download it again") from None
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    for split_name, split in (("train", train), ("val", val)):
        if split["observations"].shape[1] != obs_dim or split["actions"].shape[1] != action_dim:
            raise ValueError(
                f"dataset {path} ({split_name}) has observation dim {split['observations'].shape[1]} and action dim "
                f"{split['actions'].shape[1]}, but {task} needs {obs_dim} and {action_dim}: it was made for another "
                f"environment; regenerate it or pass the right file"
            )
        for key in ("observations", "actions", "next_observations", "rewards"):
            _check_finite(key, np.asarray(split[key]))
        if DOMAINS[domain_of(task)]["sparse"]:
            split["rewards"] = sparsify_rewards(split["rewards"])
    info = {"source": source if source in ("official", "generated") else "path", "path": portable_path(path),
            "sha256": sha256_of([path, val_path]), "num_transitions": int(len(train["actions"]))}
    return env, train, val, info
