"""Roll out a trained agent's EMA policy in an OGBench single-task env; record videos.

``evaluate`` queries the policy once every ``h`` steps and executes the whole action
chunk open-loop, as the authors' release does; an episode ends at ``terminated or
truncated`` (OGBench's time limit) or after ``max_steps``. Success is OGBench's
``info["success"]`` at the episode's last step. ``evaluate_many`` gives the same results for
many agents (stacked runs) at once: all their episodes in lockstep, one policy call per chunk
for all of them, the envs in worker processes (``rql_lite.ogbench.env_workers``).

Rendering (videos only) needs an OpenGL backend. Headless Linux uses EGL: on a CPU
machine Mesa's software rasteriser (Debian/Ubuntu packages ``libegl1 libegl-mesa0
libgl1-mesa-dri libopengl0``), on an NVIDIA machine the driver's EGL. Making an env sets
``MUJOCO_GL=egl`` on Linux when it is unset (``env_workers.prepare_for_envs``), and rendering
switches MuJoCo to EGL if MuJoCo was imported earlier without it (``ensure_headless_gl``).

Videos: ``write_video`` picks the format from the file extension. ``.mp4`` (and any
other ffmpeg format) needs an ``ffmpeg`` program: the one on PATH, else the binary that
the ``imageio-ffmpeg`` package ships (a dependency of ``rql_lite[ogbench]``);
``.gif`` (Pillow) and ``.npz`` (the raw uint8 frames) need nothing beyond the venv.
"""
from __future__ import annotations

import functools
import math
import os
import platform
import sys
import time
import uuid
from types import SimpleNamespace
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rql_lite.agent import AgentConfig, TrainState, act, sample_actions
from rql_lite.ogbench.env_workers import prepare_for_envs

DEFAULT_FPS = 20  # OGBench manipulation envs step at 20 Hz (control timestep 0.05 s)
DEFAULT_RENDER_SIZE = 200  # OGBench's default render width and height


# --------------------------------------------------------------------------- rendering


def ensure_headless_gl() -> str:
    """Make MuJoCo's offscreen renderer usable on a headless Linux machine; return the backend.

    ``MUJOCO_GL`` is read when ``mujoco`` is first imported. If that happened with it unset
    (e.g. another module imported ``ogbench`` first) on Linux without a display, MuJoCo
    would try GLFW and fail; in that case its context class is switched to EGL. An explicit
    ``MUJOCO_GL`` choice is always respected.
    """
    if platform.system() != "Linux":
        return "default"
    import mujoco  # noqa: F401

    module = sys.modules.get("mujoco.rendering.classic.gl_context") or sys.modules.get("mujoco.gl_context")
    if module is None:
        return os.environ.get("MUJOCO_GL", "")
    chosen = getattr(module, "_MUJOCO_GL", os.environ.get("MUJOCO_GL", ""))
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if chosen in ("", "enable", "enabled", "on", "true", "1") and not has_display:
        if os.environ.get("PYOPENGL_PLATFORM", "egl").lower() != "egl":
            raise RuntimeError(
                "rendering needs MUJOCO_GL=egl on a headless machine, but PYOPENGL_PLATFORM="
                f"{os.environ['PYOPENGL_PLATFORM']!r} was set; unset it or set both before starting Python")
        from mujoco.egl import GLContext

        module.GLContext = GLContext
        return "egl"
    return chosen or "glfw"


def _render_help(err: BaseException) -> str:
    return (
        f"could not render with MuJoCo (MUJOCO_GL={os.environ.get('MUJOCO_GL', '<unset>')}): "
        f"{err.__class__.__name__}: {err}. On headless Linux run with MUJOCO_GL=egl (set before mujoco "
        "is imported) and install the EGL/Mesa libraries: apt-get install -y libegl1 libegl-mesa0 "
        "libgl1-mesa-dri libopengl0 (on NVIDIA machines the driver provides EGL)."
    )


def _render(env) -> np.ndarray:
    try:
        frame = env.render()
    except Exception as err:  # GL errors come as many types (FatalError, AttributeError, ...)
        raise RuntimeError(_render_help(err)) from err
    if frame is None:
        raise RuntimeError("env.render() returned None; make the env with make_eval_env(task, render=True)")
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise RuntimeError(f"env.render() returned shape {frame.shape}; expected an RGB image (H, W, 3)")
    return frame.astype(np.uint8, copy=False)


# --------------------------------------------------------------------------- env


def make_eval_env(task: str, render: bool = False, width: int = DEFAULT_RENDER_SIZE,
                  height: int = DEFAULT_RENDER_SIZE, **env_kwargs):
    """The OGBench env for ``task`` (e.g. ``"cube-single-play-singletask-task2-v0"``), no dataset.

    ``ogbench.make_env_and_datasets(task, env_only=True)`` strips the dataset type from the
    name and builds the single-task env with gymnasium (its time limit included). With
    ``render=True`` the frame size is passed as ``width``/``height``; OGBench's manipulation
    envs accept ``render_mode`` but ignore it (``env.render()`` always returns an RGB array;
    passing ``render_mode='rgb_array'`` only makes gymnasium warn), and its locomotion envs
    default to ``render_mode='rgb_array'``, so none is passed.
    """
    prepare_for_envs()
    import ogbench

    if render:
        ensure_headless_gl()
        env_kwargs = {"width": int(width), "height": int(height), **env_kwargs}
    return ogbench.make_env_and_datasets(task, env_only=True, **env_kwargs)


def _check_dims(env, state: TrainState) -> None:
    cfg = state.config
    obs_shape = getattr(env.observation_space, "shape", None)
    act_shape = getattr(env.action_space, "shape", None)
    name = getattr(getattr(env, "spec", None), "id", type(env).__name__)
    if obs_shape is not None and tuple(obs_shape) != (cfg.obs_dim,):
        raise ValueError(
            f"env {name} has observations of shape {tuple(obs_shape)} (dim {int(np.prod(obs_shape))}) but the agent "
            f"expects obs_dim={cfg.obs_dim}: the agent was trained for another task; evaluate it on its own task")
    if act_shape is not None and tuple(act_shape) != (cfg.action_dim,):
        raise ValueError(
            f"env {name} has actions of shape {tuple(act_shape)} but the agent emits action_dim={cfg.action_dim}: "
            "the agent was trained for another task; evaluate it on its own task")


def episode_seed(seed: int, episode: int) -> int:
    """The ``env.reset`` seed of episode ``episode`` of an evaluation with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(episode)]).generate_state(1)[0])


# --------------------------------------------------------------------------- evaluation


def evaluate(env, state: TrainState, num_episodes: int, seed: int = 0, video_episodes: int = 0,
             video_every: int = 1, max_steps: int | None = None) -> dict[str, Any]:
    """Roll out ``state``'s EMA policy for ``num_episodes`` episodes.

    Args:
      env: an OGBench env (``make_eval_env``), or a task name to make one.
      state: a single (not seed-stacked) ``TrainState``; actions come from
        ``state.ema_policy_params`` through ``rql_lite.agent.act`` (jitted).
      num_episodes: episodes to run (>= 0).
      seed: everything random derives from it: episode ``i`` resets with
        ``episode_seed(seed, i)`` and draws its policy noise from
        ``fold_in(fold_in(PRNGKey(seed), i), chunk_index)``. Same seed, same results.
      video_episodes: record frames for the first this many episodes (the env must render).
      video_every: keep every this-many-th step's frame.
      max_steps: cap on steps per episode (``None``: the env's own time limit).

    The policy is queried every ``h`` steps; its chunk of ``h`` actions runs open-loop,
    cut short if the episode ends inside it.

    Returns a dict: ``success_rate`` (mean of ``successes``; 0.0 for no episodes),
    ``successes`` (0/1 per episode: ``info["success"]`` at its last step), ``returns``,
    ``episode_lengths``, and ``frames``: one ``(T, H, W, 3)`` uint8 array per recorded
    episode with ``T = 1 + length // video_every`` (the reset frame, then the frame after
    every ``video_every``-th step).
    """
    if isinstance(env, str):
        env = make_eval_env(env, render=video_episodes > 0)
    for name, value, low in (("num_episodes", num_episodes, 0), ("video_episodes", video_episodes, 0),
                             ("video_every", video_every, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if max_steps is not None and (not isinstance(max_steps, (int, np.integer)) or max_steps < 1):
        raise ValueError(f"max_steps must be None or an integer >= 1, got {max_steps!r}")
    if np.ndim(state.step) != 0:
        raise ValueError(f"state holds stacked seeds (step has shape {np.shape(state.step)}); "
                         "pass one seed's state, e.g. rql_lite.train.unstack(states, i)")
    _check_dims(env, state)
    if video_episodes:
        ensure_headless_gl()

    cfg = state.config
    base_key = jax.random.PRNGKey(int(seed))
    successes, returns, lengths, videos = [], [], [], []
    for episode in range(int(num_episodes)):
        record = episode < video_episodes
        obs, info = env.reset(seed=episode_seed(seed, episode))
        obs = np.asarray(obs)
        if obs.shape != (cfg.obs_dim,):
            raise ValueError(f"env.reset returned an observation of shape {obs.shape} but the agent expects "
                             f"obs_dim={cfg.obs_dim}: the agent was trained for another task")
        frames = [_render(env)] if record else []
        episode_key = jax.random.fold_in(base_key, episode)
        total, steps, chunk_index, done = 0.0, 0, 0, False
        while not done:
            chunk = np.asarray(act(state, obs, jax.random.fold_in(episode_key, chunk_index)))
            chunk_index += 1
            if not np.isfinite(chunk).all():
                raise FloatingPointError(
                    f"the policy produced non-finite actions at step {steps} of episode {episode}; "
                    "the EMA policy parameters hold NaN/inf (training diverged?)")
            for action in chunk:  # (h, d): open-loop execution of the chunk
                obs, reward, terminated, truncated, info = env.step(action)
                steps += 1
                total += float(reward)
                if record and steps % video_every == 0:
                    frames.append(_render(env))
                if terminated or truncated or (max_steps is not None and steps >= max_steps):
                    done = True
                    break
        successes.append(int(bool(info.get("success", False))))
        returns.append(total)
        lengths.append(steps)
        if record:
            videos.append(np.stack(frames))
    return {
        "success_rate": float(np.mean(successes)) if successes else 0.0,
        "successes": successes,
        "returns": returns,
        "episode_lengths": lengths,
        "frames": videos,
    }


# --------------------------------------------------------------------------- many agents at once

ENV_MEMORY_BYTES = 150 * 2**20  # planned per OGBench manipulation env (its MuJoCo model and meshes), generously
WORKER_MEMORY_BYTES = 600 * 2**20  # planned per worker process with OGBench and MuJoCo imported, generously
MAX_ENVS_PER_WORKER = 64
MIN_ENVS_PER_WORKER = 4  # for the default number of workers (see eval_pool)


@functools.partial(jax.jit, static_argnums=(0, 6))
def _policy_chunks(config: AgentConfig, params, obs: jax.Array, base_keys: jax.Array, episodes: jax.Array,
                   chunk_index: jax.Array, exact: bool) -> jax.Array:
    """Action chunks of every slot: ``(R, B, obs_dim) -> (R, B, h, d)``, in one call.

    ``params``: the runs' stacked EMA policy parameters (leading axis R); ``base_keys (R, 2)``:
    ``PRNGKey(seed)`` of each run; ``episodes (R, B)``: each slot's episode number. Each slot
    draws its noise as ``act`` draws it for a batch of one, from
    ``fold_in(fold_in(PRNGKey(seed), episode), chunk_index)``, and integrates a batch of one.
    ``exact``: run the slots of a run one after another (``lax.map``) so that every matrix
    product has the shapes of ``act``'s and rounds the same (bitwise equal to ``evaluate`` on
    CPU); otherwise as one vmapped batch, which rounds some products differently in the last bit.
    """
    def one(p, o, key):  # exactly act's computation for one observation
        return sample_actions(config, p, o[None], key)[0]

    def run(p, obs_r, base_key, episodes_r):
        keys = jax.vmap(lambda e: jax.random.fold_in(jax.random.fold_in(base_key, e), chunk_index))(episodes_r)
        if exact:
            return jax.lax.map(lambda a: one(p, a[0], a[1]), (obs_r, keys))
        return jax.vmap(one, in_axes=(None, 0, 0))(p, obs_r, keys)

    return jax.vmap(run)(params, obs, base_keys, episodes)


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_max_envs(workers: int) -> int:
    """How many envs ``evaluate_many`` keeps at once by default: half the available memory at
    ``ENV_MEMORY_BYTES`` per env (after ``WORKER_MEMORY_BYTES`` per worker), at most
    ``MAX_ENVS_PER_WORKER`` per worker, at least 1."""
    cap = MAX_ENVS_PER_WORKER * max(1, workers)
    memory = _available_memory()
    if memory:
        cap = min(cap, (memory // 2 - max(0, workers) * WORKER_MEMORY_BYTES) // ENV_MEMORY_BYTES)
    return max(1, int(cap))


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_workers_and_max_envs(workers, max_envs) -> None:
    if workers is not None and (not _is_int(workers) or workers < 0):
        raise ValueError(f"workers must be None (one per CPU core) or an integer >= 0, got {workers!r}")
    if max_envs is not None and (not _is_int(max_envs) or max_envs < 1):
        raise ValueError(f"max_envs must be None (memory-based) or an integer >= 1, got {max_envs!r}")


def eval_pool(tasks: Sequence[str], num_episodes: int, workers: int | None = None, max_envs: int | None = None):
    """Start the envs (and worker processes) that ``evaluate_many(tasks, ..., pool=...)`` steps.

    ``evaluate_many`` makes and closes one itself by default. Make one yourself to reuse it
    across evaluations of the same runs (a training run evaluates every ``eval_every``
    steps): building an OGBench env costs about as much CPU time as running an episode in it,
    and memory for its MuJoCo model. The pool holds ``R * B`` envs, ``B`` of each run's task,
    with ``B = min(num_episodes, max_envs // R)`` (at least 1); ``workers`` and ``max_envs``
    as in ``evaluate_many``. Close it when done: ``with eval_pool(...) as pool: ...``.
    Raises ``ValueError`` naming the first task whose env cannot be made.
    """
    from rql_lite.ogbench.env_workers import EnvPool, TaskError

    if isinstance(tasks, str):
        raise ValueError(f"tasks must be a list of task names (one per run), got the string {tasks!r}; "
                         f"for one task and R runs pass [{tasks!r}] * R")
    tasks = list(tasks)
    for r, task in enumerate(tasks):
        if not isinstance(task, str) or not task:
            raise ValueError(f"tasks[{r}] must be a task name (str), got {task!r}")
    if not tasks:
        raise ValueError("tasks is empty; give one task per run")
    if not _is_int(num_episodes) or num_episodes < 1:
        raise ValueError(f"num_episodes must be an integer >= 1, got {num_episodes!r}")
    _check_workers_and_max_envs(workers, max_envs)
    wanted = (os.cpu_count() or 1) if workers is None else int(workers)
    limit = default_max_envs(wanted) if max_envs is None else int(max_envs)
    per_wave = max(1, min(int(num_episodes), limit // len(tasks)))  # B
    slots = len(tasks) * per_wave
    # By default a worker gets at least MIN_ENVS_PER_WORKER envs: starting one (a fresh interpreter
    # importing OGBench and MuJoCo) costs about as much as building a few envs; below that, this process.
    count = min(wanted, slots // MIN_ENVS_PER_WORKER) if workers is None else min(wanted, slots)
    pool = EnvPool([task for task in tasks for _ in range(per_wave)], count)
    pool.tasks, pool.per_wave = tasks, per_wave  # slot s holds run s // B's task
    tic = time.perf_counter()
    try:
        pool.specs = pool.start()
    except TaskError as err:
        pool.close()
        r = tasks.index(err.task)
        raise ValueError(f"tasks[{r}] = {err.task!r} is not a task whose env can be made ({err.message}); give an "
                         "OGBench task name such as 'cube-double-play-singletask-task1-v0'") from None
    except BaseException:
        pool.close()
        raise
    pool.startup_s = time.perf_counter() - tic
    return pool


def evaluate_many(tasks: Sequence[str], states: TrainState, num_episodes: int, seeds: Sequence[int],
                  max_steps: int | None = None, workers: int | None = None, *, max_envs: int | None = None,
                  exact: bool | None = None, pool=None, timings: dict | None = None) -> list[dict[str, Any]]:
    """Roll out R agents' EMA policies for ``num_episodes`` episodes each, all at once.

    Result ``r`` equals ``evaluate(make_eval_env(tasks[r]), unstack(states, r), num_episodes,
    seed=seeds[r], max_steps=max_steps)`` (without ``frames``): the same reset seeds
    (``episode_seed``), the same policy noise, the same open-loop chunks and end conditions.

    The episodes run in *waves*: a wave holds ``B`` episodes of every run (``R * B`` envs) and
    steps them in lockstep: one jitted policy call per chunk gives every slot its next chunk
    (finished episodes are computed and ignored), then the env workers run the chunks. ``B`` is
    ``num_episodes`` unless ``max_envs`` is smaller than ``R * num_episodes``: OGBench's
    manipulation envs take memory and time to build, so 20 runs x 50 episodes
    cannot all be held at once. Envs are reused from wave to wave (``evaluate`` reuses one env
    too; a reset with a seed starts the same episode either way).

    Args:
      tasks: R OGBench task names, one per run (runs may be on different tasks of one domain;
        gymnasium's ``"module:EnvId-v0"`` form also works).
      states: stacked ``TrainState`` (leading axis R), as ``rql_lite.train.train`` returns.
      num_episodes: episodes per run (>= 0).
      seeds: R evaluation seeds: the ``seed`` that ``evaluate`` would get for each run.
      max_steps: cap on steps per episode (``None``: the env's own time limit).
      workers: env processes (default ``os.cpu_count()``, but at most one per
        ``MIN_ENVS_PER_WORKER`` envs); at most one per env; 0 or 1 steps the envs in this
        process. Workers are started ("spawn") for this call and import gymnasium/OGBench
        only, never JAX; they are shut down before this returns or raises.
      max_envs: envs held at once (default ``default_max_envs(workers)``, memory-based); the
        results do not depend on it.
      exact: default ``True`` on CPU and ``False`` on an accelerator, where the per-episode loop
        would cost one small kernel per layer, flow step and episode. ``True``: per-episode policy
        products, bitwise equal to ``evaluate``'s on CPU (see ``_policy_chunks``); ``False``: one vmapped batch, faster on accelerators, which rounds
        some actions differently in the last bit, so chaotic contact dynamics can later make an
        episode end differently (the statistics are the same).
      pool: envs from ``eval_pool(tasks, ...)`` to use (and leave open) instead of making and
        closing them here; ``workers`` and ``max_envs`` are then the pool's.
      timings: a dict to fill with where the time went: ``startup_s`` (workers and envs),
        ``policy_s`` and ``policy_calls`` (the first call, which compiles, is also in
        ``first_policy_call_s``), ``env_s`` (resets and chunk steps, waiting for the workers),
        ``waves``, ``episodes_per_wave``, ``envs``, ``workers`` (0: in this process),
        ``worker_info`` (pid and whether JAX was imported, per worker).

    Returns a list of R dicts with ``success_rate``, ``successes``, ``returns``,
    ``episode_lengths`` (lists of ``num_episodes`` entries), as ``evaluate`` returns them.
    """
    if isinstance(tasks, str):
        raise ValueError(f"tasks must be a list of task names (one per run), got the string {tasks!r}; "
                         f"for one task and R runs pass [{tasks!r}] * R")
    if _is_int(seeds) or isinstance(seeds, (str, bool)):
        raise ValueError(f"seeds must be a list of integers (one per run), got {seeds!r}")
    tasks, seeds = list(tasks), list(seeds)
    if not _is_int(num_episodes) or num_episodes < 0:
        raise ValueError(f"num_episodes must be an integer >= 0, got {num_episodes!r}")
    if max_steps is not None and (not _is_int(max_steps) or max_steps < 1):
        raise ValueError(f"max_steps must be None or an integer >= 1, got {max_steps!r}")
    _check_workers_and_max_envs(workers, max_envs)
    if np.ndim(states.step) != 1:
        raise ValueError(f"states must be stacked runs with a leading run axis (as rql_lite.train.train returns), but "
                         f"step has shape {np.shape(states.step)}; for one agent use evaluate(env, state, ...), or "
                         "stack it: jax.tree_util.tree_map(lambda x: x[None], state)")
    runs = int(np.shape(states.step)[0])
    if len(tasks) != runs or len(seeds) != runs:
        raise ValueError(f"states holds {runs} runs but tasks has {len(tasks)} and seeds {len(seeds)} entries; "
                         "give one task and one seed per run, in the runs' order")
    for r, task in enumerate(tasks):
        if not isinstance(task, str) or not task:
            raise ValueError(f"tasks[{r}] must be a task name (str), got {task!r}")
    for r, seed in enumerate(seeds):
        if not _is_int(seed):
            raise ValueError(f"seeds[{r}] must be an integer, got {seed!r}")
    if pool is not None and (getattr(pool, "tasks", None) != tasks or not getattr(pool, "specs", None)):
        raise ValueError(f"pool holds envs for tasks {getattr(pool, 'tasks', None)} (or was closed), not for "
                         f"{tasks}; make one with eval_pool(tasks, num_episodes)")
    episodes = int(num_episodes)
    if runs == 0 or episodes == 0:  # nothing to run: no env is made (evaluate would still check the dims)
        return [{"success_rate": 0.0, "successes": [], "returns": [], "episode_lengths": []} for _ in range(runs)]

    own = pool is None
    if own:
        pool = eval_pool(tasks, episodes, workers, max_envs)
    try:
        if exact is None:
            exact = jax.default_backend() == "cpu"
        return _evaluate_in_pool(pool, tasks, states, episodes, seeds, max_steps, bool(exact), own, timings)
    finally:
        if own:
            pool.close()


def _evaluate_in_pool(pool, tasks, states, episodes, seeds, max_steps, exact, own, timings) -> list[dict[str, Any]]:
    """``evaluate_many``'s loop over waves and chunks, once its arguments are checked."""
    cfg, runs, per_wave = states.config, len(tasks), pool.per_wave
    for r in range(runs):
        spec = pool.specs[r * per_wave]
        stub = SimpleNamespace(observation_space=SimpleNamespace(shape=spec["obs_shape"]),
                               action_space=SimpleNamespace(shape=spec["action_shape"]),
                               spec=SimpleNamespace(id=spec["name"]))
        try:
            _check_dims(stub, states)
        except ValueError as err:
            raise ValueError(f"tasks[{r}]: {err}") from None
    waves, slots = math.ceil(episodes / per_wave), runs * per_wave
    base_keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])  # as evaluate makes them
    params, h, d = states.ema_policy_params, cfg.horizon, cfg.action_dim
    out = [{"successes": [0] * episodes, "returns": [0.0] * episodes, "episode_lengths": [0] * episodes}
           for _ in range(runs)]
    clock = {"startup_s": pool.startup_s if own else 0.0, "policy_s": 0.0, "policy_calls": 0,
             "first_policy_call_s": None, "env_s": 0.0}

    for wave in range(waves):
        numbers = wave * per_wave + np.arange(per_wave)  # episode number of each slot of a run
        valid = np.tile(numbers < episodes, runs)  # (slots,): the last wave may be partly idle
        reset_seeds = [episode_seed(seeds[s // per_wave], int(numbers[s % per_wave])) if valid[s] else None
                       for s in range(slots)]
        tic = time.perf_counter()
        obs = pool.reset(reset_seeds, None if max_steps is None else int(max_steps))
        clock["env_s"] += time.perf_counter() - tic
        if obs.shape != (slots, cfg.obs_dim):
            raise ValueError(f"env.reset returned observations of shape {obs.shape[1:]} but the agent expects "
                             f"obs_dim={cfg.obs_dim}: the agent was trained for another task")
        episode_numbers = jnp.asarray(np.broadcast_to(np.minimum(numbers, episodes - 1), (runs, per_wave)), jnp.int32)
        done, steps, chunk_index = ~valid, [0] * slots, 0
        while not done.all():
            tic = time.perf_counter()
            chunks = np.asarray(_policy_chunks(
                cfg, params, jnp.asarray(obs.reshape(runs, per_wave, cfg.obs_dim), jnp.float32), base_keys,
                episode_numbers, jnp.int32(chunk_index), exact)).reshape(slots, h, d)
            spent = time.perf_counter() - tic
            clock["policy_s"] += spent
            clock["policy_calls"] += 1
            if clock["first_policy_call_s"] is None:
                clock["first_policy_call_s"] = spent
            chunk_index += 1
            bad = ~done & ~np.isfinite(chunks).all(axis=(1, 2))
            if bad.any():
                s = int(np.flatnonzero(bad)[0])
                r, e = s // per_wave, int(numbers[s % per_wave])
                raise FloatingPointError(
                    f"the policy of run {r} (task {tasks[r]}) produced non-finite actions at step {steps[s]} of "
                    f"episode {e}; its EMA policy parameters hold NaN/inf (training diverged?)")
            tic = time.perf_counter()
            result = pool.step(chunks)
            clock["env_s"] += time.perf_counter() - tic
            obs, done, steps = result["obs"], result["done"] | ~valid, result["steps"]
        for s in np.flatnonzero(valid):
            r, e = s // per_wave, int(numbers[s % per_wave])
            out[r]["successes"][e] = int(result["successes"][s])
            out[r]["returns"][e] = float(result["totals"][s])
            out[r]["episode_lengths"][e] = int(result["steps"][s])
    if timings is not None:
        timings.update(clock, waves=waves, episodes_per_wave=per_wave, envs=slots,
                       workers=pool.num_workers if pool.num_workers > 1 else 0, worker_info=list(pool.worker_info))
    return [{"success_rate": float(np.mean(o["successes"])), **o} for o in out]


# --------------------------------------------------------------------------- videos


VIDEO_FORMATS = ".mp4 (ffmpeg), any other ffmpeg container (.webm, .mov, ...), .gif (Pillow), .npz (raw frames)"


def _as_frames(frames) -> np.ndarray:
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("no frames to write")
        frames = np.stack([np.asarray(f) for f in frames])
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must have shape (T, H, W, 3) with T >= 1, got {frames.shape}")
    if frames.dtype != np.uint8:
        if np.issubdtype(frames.dtype, np.floating) and frames.size and float(frames.max()) <= 1.0:
            frames = frames * 255.0
        frames = np.clip(np.round(frames), 0, 255).astype(np.uint8)
    return frames


def ffmpeg_available() -> bool:
    """Whether mediapy can encode videos; points it at imageio-ffmpeg's binary if none is on PATH."""
    import mediapy

    if not mediapy.video_is_available():
        try:
            import imageio_ffmpeg

            mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())
        except (ImportError, RuntimeError):  # not installed, or no binary for this platform
            return False
    return bool(mediapy.video_is_available())


def write_video(frames: np.ndarray | Sequence[np.ndarray], path: str, fps: float = DEFAULT_FPS) -> str:
    """Write ``(T, H, W, 3)`` uint8 frames to ``path`` atomically; return ``path``.

    The format follows the extension: ``.gif`` via Pillow, ``.npz`` as
    ``np.savez_compressed(frames=...)``, anything else (``.mp4``, ...) via
    ``mediapy.write_video``, which needs the ``ffmpeg`` program. The file is written
    to a temporary name in the same directory and moved into place, so a reader never
    sees a half-written video. Frame sizes are padded to even numbers for ffmpeg's
    H.264 encoder.
    """
    frames = _as_frames(frames)
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    ext = os.path.splitext(base)[1].lower()
    if not ext:
        raise ValueError(f"{path!r} has no extension; use one of {VIDEO_FORMATS}")
    if ext not in (".gif", ".npz") and not ffmpeg_available():
        raise RuntimeError(
            f"writing {ext} videos needs the ffmpeg program, which was not found on PATH. Install it "
            "(Debian/Ubuntu: apt-get install -y ffmpeg; macOS: brew install ffmpeg; conda: conda install ffmpeg) "
            "or point mediapy at a binary with mediapy.set_ffmpeg(path). Without ffmpeg, write a .gif "
            "or .npz instead (e.g. the same path with the extension changed).")
    os.makedirs(directory, exist_ok=True)
    # Same directory (os.replace is atomic within a filesystem), same extension (ffmpeg and
    # Pillow pick the format from it); created by the writer itself, so it gets normal permissions.
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{ext}")
    try:
        if ext == ".npz":
            np.savez_compressed(tmp, frames=frames, fps=np.float64(fps))
        elif ext == ".gif":
            from PIL import Image

            images = [Image.fromarray(f) for f in frames]
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                           duration=max(1, round(1000.0 / fps)), loop=0)
        else:
            import mediapy

            pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
            if pad_h or pad_w:  # yuv420p needs even sizes
                frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            mediapy.write_video(tmp, frames, fps=fps)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def show_video(frames, fps: float = DEFAULT_FPS, title: str | None = None, width: int | None = None) -> None:
    """Show ``(T, H, W, 3)`` frames inline in a notebook with mediapy (an H.264 video in the page)."""
    import mediapy

    if not ffmpeg_available():
        raise RuntimeError("showing a video needs ffmpeg; pip install imageio-ffmpeg (or install ffmpeg)")
    mediapy.show_video(_as_frames(frames), fps=fps, title=title, width=width)
