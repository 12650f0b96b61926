"""Regenerate OGBench datasets locally with OGBench's own scripted recipes: the manipulation "play"
datasets (scripted oracles) and the point-maze "navigate" datasets (a noisy subgoal controller).

OGBench's ``make_env_and_datasets`` downloads its datasets; without internet we rebuild
them with the same recipe the OGBench authors used for the published ``*-play-v0`` files:

* env: ``gymnasium.make(env_id, terminate_at_goal=False, mode="data_collection",
  max_episode_steps=episode_length + 1)``;
* actor: the non-Markovian *plan* oracles (``noise=0.1, noise_smoothing=0.5``), one per
  kind of subtask (cube, button, drawer, window), and a fresh random subtask from
  ``env.unwrapped.set_new_target`` every time the current plan runs out;
* 1000 train episodes (3000 for cube-triple, 5000 for cube-quadruple) plus 10% validation
  episodes, written to ``NAME.npz`` and ``NAME-val.npz``.

and for ``pointmaze-{medium,large,giant}-navigate-v0`` the navigate recipe of
``rql_lite.ogbench.maze_navigate`` (OGBench's ``generate_locomaze.py``, noise 0.5): 1000 episodes of
1000 steps for medium and large, 500 of 2000 for giant, plus 10% validation episodes.

File layout (what ``ogbench.utils.load_dataset`` expects): every episode contributes
``episode_length + 1`` rows ``(observation, action, terminal, qpos, qvel[, button_states])``.
Row ``t`` holds the state *before* step ``t`` and the action taken there; the last row has
``terminals=True`` and only supplies the final observation, since the loader drops its
action. An episode therefore yields exactly ``episode_length`` transitions.

Every episode is seeded from ``(seed, episode index)``, so a dataset is bit-for-bit
reproducible whatever the number of worker processes.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import difflib
import functools
import multiprocessing
import os
import time
import zipfile

import numpy as np
from tqdm.auto import tqdm  # a widget in Jupyter and Colab, text in a terminal

from rql_lite import checks
from rql_lite.configs import dataset_name_for_task
from rql_lite.files import atomic_path
from rql_lite.ogbench import maze_navigate
from rql_lite.ogbench.env_workers import prepare_for_envs

ORACLE_NOISE = 0.1
ORACLE_NOISE_SMOOTHING = 0.5


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one play dataset is generated.

    Attributes:
      env_id: gymnasium id of the goal-conditioned env, e.g. ``"cube-double-v0"``.
      family: ``"cube"``, ``"scene"`` or ``"puzzle"``; selects the oracle set.
      p_stack: ``(low, high)``; each episode draws its cube-stacking probability from
        ``U(low, high)``. ``None`` leaves ``set_new_target``'s default (scene, puzzle).
      num_episodes: default number of train episodes.
      episode_length: default steps (= loadable transitions) per episode; OGBench's
        ``max_episode_steps`` is one more.

    ``family == "pointmaze"`` uses the navigate controller instead of oracles.
    """

    env_id: str
    family: str
    p_stack: tuple[float, float] | None
    num_episodes: int
    episode_length: int = 1000


DATASETS: dict[str, Recipe] = {
    "cube-single-play-v0": Recipe("cube-single-v0", "cube", (0.0, 0.0), 1000),
    "cube-double-play-v0": Recipe("cube-double-v0", "cube", (0.0, 0.25), 1000),
    "cube-triple-play-v0": Recipe("cube-triple-v0", "cube", (0.05, 0.35), 3000),
    "cube-quadruple-play-v0": Recipe("cube-quadruple-v0", "cube", (0.1, 0.5), 5000),
    "scene-play-v0": Recipe("scene-v0", "scene", None, 1000),
    "puzzle-3x3-play-v0": Recipe("puzzle-3x3-v0", "puzzle", None, 1000),
    "puzzle-4x4-play-v0": Recipe("puzzle-4x4-v0", "puzzle", None, 1000),
    # Not among the paper's domains: the horizon study's mazes (data_gen_scripts/commands.sh).
    "pointmaze-medium-navigate-v0": Recipe("pointmaze-medium-v0", "pointmaze", None, 1000),
    "pointmaze-large-navigate-v0": Recipe("pointmaze-large-v0", "pointmaze", None, 1000),
    "pointmaze-giant-navigate-v0": Recipe("pointmaze-giant-v0", "pointmaze", None, 500, episode_length=2000),
}

class GeneratedDataset(tuple):
    """The ``(train_path, val_path)`` pair, plus the run's statistics in ``.stats``.

    It unpacks like a plain 2-tuple; ``stats`` holds ``num_episodes``, ``num_val_episodes``,
    ``num_transitions`` (loadable transitions, both files), ``seconds`` (simulation),
    ``save_seconds`` (compression and writing), ``transitions_per_second`` (simulation
    throughput), ``workers`` and ``unhealthy_retries``.
    """

    def __new__(cls, train_path: str, val_path: str, stats: dict | None = None):
        pair = super().__new__(cls, (train_path, val_path))
        pair.stats = stats
        return pair

    @property
    def train_path(self) -> str:
        return self[0]

    @property
    def val_path(self) -> str:
        return self[1]


def get_recipe(dataset_name: str) -> Recipe:
    """Return the recipe for a dataset (or single-task) name.

    Raises:
      ValueError: for an unknown name; the message suggests close names and lists all.
    """
    name = dataset_name_for_task(dataset_name)
    if name in DATASETS:
        return DATASETS[name]
    close = difflib.get_close_matches(name, DATASETS, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"Unknown dataset {dataset_name!r}.{hint} Valid datasets: {', '.join(DATASETS)}."
    )


def published_episode_length(dataset_name: str) -> int:
    """Steps per episode of the published dataset (or a task using it): the recipe's, 1000 where this
    project has no recipe (OGBench's other datasets)."""
    try:
        return get_recipe(dataset_name).episode_length
    except ValueError:
        return 1000


def generate_dataset(
    dataset_name: str,
    out_dir: str,
    num_episodes: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    workers: int = 1,
    episode_length: int | None = None,
    progress: bool = True,
) -> GeneratedDataset:
    """Generate ``NAME.npz`` and ``NAME-val.npz`` for one play dataset.

    Args:
      dataset_name: a key of ``DATASETS`` or a task name using it
        (e.g. ``"cube-double-play-singletask-task2-v0"``).
      out_dir: directory for the two files (created if missing).
      num_episodes: train episodes; ``None`` uses the recipe's count.
      val_fraction: validation episodes as a fraction of the train episodes. At least one
        validation episode is always generated, since OGBench's loader reads the
        ``-val`` file too.
      seed: base seed; episode ``i`` is seeded from ``(seed, i)``.
      workers: number of processes; ``1`` runs in this process.
      episode_length: environment steps (= loadable transitions) per episode; ``None`` uses the
        recipe's (1000, or 2000 for the giant maze).
      progress: show a tqdm progress bar over episodes.

    Returns:
      ``(train_path, val_path)`` as a ``GeneratedDataset``, whose ``.stats`` reports
      the throughput.
    """
    recipe = get_recipe(dataset_name)
    name = dataset_name_for_task(dataset_name)
    num_train = recipe.num_episodes if num_episodes is None else checks.check_int(num_episodes, "num_episodes", 1)
    episode_length = recipe.episode_length if episode_length is None else episode_length
    checks.check_int(episode_length, "episode_length", 1)
    checks.check_int(workers, "workers", 1)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    num_val = max(1, round(num_train * val_fraction))
    num_total = num_train + num_val
    rows_per_episode = episode_length + 1

    os.makedirs(out_dir, exist_ok=True)
    train_path = os.path.join(out_dir, f"{name}.npz")
    val_path = os.path.join(out_dir, f"{name}-val.npz")

    # Episodes are written straight into preallocated arrays: a 5000-episode dataset is
    # several GB, and concatenating per-episode arrays would need twice that.
    train = val = None
    retries = 0
    bar = tqdm(total=num_total, desc=name, unit="ep", disable=not progress)
    start = time.perf_counter()
    for index, episode, attempts in _run_episodes(recipe, episode_length, seed, num_total, workers):
        if train is None:
            train = _allocate_like(episode, num_train * rows_per_episode)
            val = _allocate_like(episode, num_val * rows_per_episode)
        split, slot = (train, index) if index < num_train else (val, index - num_train)
        for key, rows in episode.items():
            split[key][slot * rows_per_episode : (slot + 1) * rows_per_episode] = rows
        retries += attempts - 1
        bar.update()
        rate = bar.n * episode_length / (time.perf_counter() - start)
        bar.set_postfix(transitions_per_s=f"{rate:.0f}")
    bar.close()
    seconds = time.perf_counter() - start
    _env_and_oracles.cache_clear()  # frees the env built in this process when workers == 1

    # The val file goes first, so an existing NAME.npz always has its NAME-val.npz.
    save_start = time.perf_counter()
    _save_npz_atomic(val_path, val)
    _save_npz_atomic(train_path, train)

    stats = dict(
        num_episodes=num_train,
        num_val_episodes=num_val,
        num_transitions=num_total * episode_length,
        seconds=seconds,
        save_seconds=time.perf_counter() - save_start,
        transitions_per_second=num_total * episode_length / seconds,
        workers=workers,
        unhealthy_retries=retries,
    )
    return GeneratedDataset(train_path, val_path, stats)


def _run_episodes(recipe: Recipe, episode_length: int, seed: int, num_episodes: int, workers: int):
    """Yield ``(index, episode, attempts)`` for every episode, in completion order."""
    if workers == 1:
        for index in range(num_episodes):
            yield (index, *_collect_episode(recipe, episode_length, seed, index))
        return

    # "spawn" because forked children would inherit MuJoCo/OpenGL state from the parent.
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn")
    )
    try:
        futures = {
            pool.submit(_collect_episode, recipe, episode_length, seed, index): index
            for index in range(num_episodes)
        }
        for future in concurrent.futures.as_completed(futures):
            yield (futures[future], *future.result())
    finally:
        # On Ctrl-C or an error, drop the queued episodes instead of finishing them all.
        pool.shutdown(wait=True, cancel_futures=True)


@functools.lru_cache(maxsize=1)
def _env_and_oracles(recipe: Recipe, episode_length: int):
    """Build (once per process) the env and the oracle for each subtask kind.

    Building the MuJoCo model takes about as long as simulating an episode, so workers
    reuse one env; ``env.reset`` restores all state the recorded data depends on.
    """
    prepare_for_envs()  # before MuJoCo's first import: EGL, not GLFW, on a headless machine
    import gymnasium
    import ogbench  # noqa: F401  (registers the manipulation and maze envs with gymnasium)

    if recipe.family == "pointmaze":
        env = gymnasium.make(recipe.env_id, terminate_at_goal=False, max_episode_steps=episode_length + 1)
        return env, maze_navigate.maze_cells(env.unwrapped.maze_map)  # the controller needs only the cells
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    # The extra step's row is the terminal row that only provides the last observation.
    env = gymnasium.make(
        recipe.env_id,
        terminate_at_goal=False,
        mode="data_collection",
        max_episode_steps=episode_length + 1,
    )
    # The oracles must get env as a keyword: ButtonPlanOracle's first positional
    # parameter is gripper_always_closed.
    noise = dict(noise=ORACLE_NOISE, noise_smoothing=ORACLE_NOISE_SMOOTHING)
    if recipe.family == "cube":
        oracles = {"cube": CubePlanOracle(env=env, **noise)}
    elif recipe.family == "scene":
        oracles = {
            "cube": CubePlanOracle(env=env, **noise),
            "button": ButtonPlanOracle(env=env, **noise),
            "drawer": DrawerPlanOracle(env=env, **noise),
            "window": WindowPlanOracle(env=env, **noise),
        }
    elif recipe.family == "puzzle":
        # Puzzle buttons are pressed with a closed fist; an open gripper straddles them.
        oracles = {"button": ButtonPlanOracle(env=env, gripper_always_closed=True, **noise)}
    else:
        raise ValueError(f"Unknown recipe family {recipe.family!r}")
    return env, oracles


def _collect_episode(recipe: Recipe, episode_length: int, seed: int, index: int):
    """Roll out episode ``index``; returns ``(arrays, attempts)``.

    Scene episodes in which the cube leaves the visible workspace are discarded and
    re-rolled (as in OGBench), each attempt from its own seed so retries stay
    deterministic.
    """
    env, oracles = _env_and_oracles(recipe, episode_length)
    # The oracles draw their plan noise from NumPy's *global* RNG, not from the env's
    # generator, so it has to be seeded per episode; the caller's state is restored.
    saved_state = np.random.get_state()
    try:
        attempt = 0
        while True:
            attempt_seed = np.random.SeedSequence(seed, spawn_key=(index, attempt))
            env_seed, oracle_seed = attempt_seed.generate_state(2)
            np.random.seed(oracle_seed)
            if recipe.family == "pointmaze":
                episode, _ = maze_navigate.rollout(env, oracles, int(env_seed))
            else:
                episode = _rollout(env, oracles, recipe, int(env_seed))
            attempt += 1
            if recipe.family != "scene" or _scene_episode_is_healthy(episode["qpos"]):
                return episode, attempt
    finally:
        np.random.set_state(saved_state)


def _rollout(env, oracles, recipe: Recipe, env_seed: int) -> dict[str, np.ndarray]:
    """Run one episode with the plan oracles and return its rows (see module docstring)."""
    ob, info = env.reset(seed=env_seed)
    # Drawn after the reset, from the freshly seeded global RNG, like OGBench's script.
    target_kwargs = {} if recipe.p_stack is None else {"p_stack": np.random.uniform(*recipe.p_stack)}
    has_buttons = "button_states" in info
    oracle = oracles[info["privileged/target_task"]]
    oracle.reset(ob, info)

    rows = {"observations": [], "actions": [], "terminals": [], "qpos": [], "qvel": []}
    if has_buttons:
        rows["button_states"] = []
    done = False
    while not done:
        action = np.clip(oracle.select_action(ob, info), -1.0, 1.0)
        next_ob, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if oracle.done:
            # The subtask's plan has run out (whether or not it succeeded): start another.
            target_ob, target_info = env.unwrapped.set_new_target(**target_kwargs)
            oracle = oracles[target_info["privileged/target_task"]]
            oracle.reset(target_ob, target_info)

        # The step info's prev_* entries describe the state `ob` was computed from.
        rows["observations"].append(ob)
        rows["actions"].append(action)
        rows["terminals"].append(done)
        rows["qpos"].append(info["prev_qpos"])
        rows["qvel"].append(info["prev_qvel"])
        if has_buttons:
            rows["button_states"].append(info["prev_button_states"])
        ob = next_ob

    # Same dtypes as OGBench's published files.
    dtypes = {"terminals": bool, "button_states": np.int64}
    return {key: np.asarray(value, dtype=dtypes.get(key, np.float32)) for key, value in rows.items()}


def _scene_episode_is_healthy(qpos: np.ndarray) -> bool:
    """OGBench's scene check: the cube stays visible unless it sits in the drawer.

    Rarely the simulation flings the cube off the table; such episodes would make
    goal states ambiguous, so they are re-rolled.
    """
    cube_xyz = qpos[:, 14:17]  # qpos: 6 arm + 8 gripper joints, then the cube's free joint
    too_far_right = cube_xyz[:, 1] >= 0.29
    outside_drawer = (cube_xyz[:, 2] < 0.06) | (cube_xyz[:, 2] > 0.08)
    too_far_left = (cube_xyz[:, 1] <= -0.3) & outside_drawer
    return not (too_far_right.any() or too_far_left.any())


def _allocate_like(episode: dict[str, np.ndarray], num_rows: int) -> dict[str, np.ndarray]:
    return {key: np.empty((num_rows, *rows.shape[1:]), rows.dtype) for key, rows in episode.items()}


def _write_npz_reproducibly(f, arrays: dict[str, np.ndarray]) -> None:
    """What ``np.savez_compressed`` writes, but with every zip entry dated 1980-01-01.

    ``np.savez_compressed`` stamps each entry with the time of writing, so two generations of
    the same data differ in a few bytes and their sha256 (which run records keep to identify a
    dataset) differs too. With a fixed date the bytes, and so the hash, depend on the arrays only.
    ``np.load`` reads the file as usual.
    """
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, mode="w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.asanyarray(array), allow_pickle=False)


def _save_npz_atomic(path: str, arrays: dict[str, np.ndarray]) -> None:
    """The arrays as a compressed, byte-reproducible ``.npz`` at ``path``, written atomically: an
    interrupted run leaves the old file or the complete new one, never a truncated archive."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: NumPy names nothing itself
        _write_npz_reproducibly(f, arrays)
