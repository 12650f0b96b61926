"""Roll out trained agents' EMA policies in OGBench single-task envs: success rates and frames.

One episode loop serves every evaluation. ``evaluate_many`` rolls out R agents (stacked runs)
for E episodes each, all at once: the episodes run in waves of R x B slots stepped in lockstep,
one jitted policy call per chunk gives every slot its next chunk, and the envs live in worker
processes (``rql_lite.ogbench.env_workers``). ``evaluate`` is its one-slot case: one agent in
one env, one episode after another.

The policy is queried every ``h`` steps and its chunk of ``h`` actions runs open-loop, as the
authors' release does, cut short if the episode ends inside it; an episode ends at
``terminated or truncated`` (OGBench's time limit) or after ``max_steps``. Success is OGBench's
``info["success"]`` at the episode's last step. Episode ``i`` of an evaluation with ``seed``
resets with ``episode_seed(seed, i)`` and draws its policy noise from
``fold_in(fold_in(PRNGKey(seed), i), chunk_index)``: same seed, same results, however the
episodes are spread over slots, waves and workers.

Videos: the first ``video_episodes`` episodes of each run can record their frames (the envs then
render: headless Linux uses EGL, else OSMesa, see ``env_workers.choose_gl``); ``rql_lite.ogbench.videos``
writes them. Where no GL backend works, an evaluation that makes its own envs says so in one line on
stderr and records no frames (``skip_video_without_gl``).
"""
from __future__ import annotations

import functools
import math
import os
import sys
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rql_lite import checks
from rql_lite.agent import AgentConfig, TrainState, acting_params, sample_actions
from rql_lite.ogbench.env_workers import EnvPool, TaskError, env_description, gl_status, make_env

DEFAULT_RENDER_SIZE = 200  # OGBench's default render width and height

ENV_MEMORY_BYTES = 150 * 2**20  # planned per OGBench manipulation env (its MuJoCo model and meshes), generously
WORKER_MEMORY_BYTES = 600 * 2**20  # planned per worker process with OGBench and MuJoCo imported, generously
MAX_ENVS_PER_WORKER = 64
MIN_ENVS_PER_WORKER = 4  # for the default number of workers (see eval_pool)


# --------------------------------------------------------------------------- envs


def make_eval_env(task: str, render: bool = False, width: int = DEFAULT_RENDER_SIZE,
                  height: int = DEFAULT_RENDER_SIZE, **env_kwargs):
    """The OGBench env for ``task`` (e.g. ``"cube-single-play-singletask-task2-v0"``), no dataset.

    ``ogbench.make_env_and_datasets(task, env_only=True)`` strips the dataset type from the
    name and builds the single-task env with gymnasium (its time limit included). With
    ``render=True`` its ``render()`` returns ``(height, width, 3)`` frames (``env_workers.make_env``).
    """
    return make_env(task, (width, height) if render else None, **env_kwargs)


def _check_fits(description: dict, config: AgentConfig) -> None:
    """``ValueError`` unless an env (its ``env_workers.env_description``) has the agent's dimensions."""
    obs_shape, act_shape, name = description["obs_shape"], description["action_shape"], description["name"]
    if obs_shape is not None and tuple(obs_shape) != (config.obs_dim,):
        raise ValueError(
            f"env {name} has observations of shape {tuple(obs_shape)} (dim {int(np.prod(obs_shape))}) but the agent "
            f"expects obs_dim={config.obs_dim}: the agent was trained for another task; evaluate it on its own task")
    if act_shape is not None and tuple(act_shape) != (config.action_dim,):
        raise ValueError(
            f"env {name} has actions of shape {tuple(act_shape)} but the agent emits action_dim={config.action_dim}: "
            "the agent was trained for another task; evaluate it on its own task")


def episode_seed(seed: int, episode: int) -> int:
    """The ``env.reset`` seed of episode ``episode`` of an evaluation with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(episode)]).generate_state(1)[0])


# --------------------------------------------------------------------------- the policy, for every slot at once


@functools.partial(jax.jit, static_argnums=(0, 6))
def _policy_chunks(config: AgentConfig, params, obs: jax.Array, base_keys: jax.Array, episodes: jax.Array,
                   chunk_index: jax.Array, exact: bool) -> jax.Array:
    """Action chunks of every slot: ``(R, B, obs_dim) -> (R, B, h, d)``, in one call.

    ``params``: the runs' stacked ``agent.acting_params`` (the EMA policy; leading axis R); ``base_keys (R, 2)``:
    ``PRNGKey(seed)`` of each run; ``episodes (R, B)``: each slot's episode number. Each slot
    draws its noise as ``rql_lite.act`` draws it for a batch of one, from
    ``fold_in(fold_in(PRNGKey(seed), episode), chunk_index)``, and integrates a batch of one.
    ``exact``: run the slots of a run one after another (``lax.map``) so that every matrix
    product has the shapes of ``act``'s and rounds the same (bitwise equal to acting with ``act``
    on CPU); otherwise as one vmapped batch, which rounds some products differently in the last bit.
    """
    def one(p, o, key):  # exactly act's computation for one observation
        return sample_actions(config, p, o[None], key)[0]

    def run(p, obs_r, base_key, episodes_r):
        keys = jax.vmap(lambda e: jax.random.fold_in(jax.random.fold_in(base_key, e), chunk_index))(episodes_r)
        if exact:
            return jax.lax.map(lambda a: one(p, a[0], a[1]), (obs_r, keys))
        return jax.vmap(one, in_axes=(None, 0, 0))(p, obs_r, keys)

    return jax.vmap(run)(params, obs, base_keys, episodes)


# --------------------------------------------------------------------------- the pool of envs


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


def _check_task_names(tasks) -> list[str]:
    if isinstance(tasks, str):
        raise ValueError(f"tasks must be a list of task names (one per run), got the string {tasks!r}; "
                         f"for one task and R runs pass [{tasks!r}] * R")
    tasks = list(tasks)
    for r, task in enumerate(tasks):
        if not isinstance(task, str) or not task:
            raise ValueError(f"tasks[{r}] must be a task name (str), got {task!r}")
    return tasks


def _check_workers_and_max_envs(workers, max_envs) -> None:
    checks.check_int(workers, "workers", 0, allow_none=True, none_means="one per CPU core")
    checks.check_int(max_envs, "max_envs", 1, allow_none=True, none_means="memory-based")


def eval_pool(tasks: Sequence[str], num_episodes: int, workers: int | None = None, max_envs: int | None = None,
              render: bool = False, width: int = DEFAULT_RENDER_SIZE, height: int = DEFAULT_RENDER_SIZE) -> EnvPool:
    """Start the envs (and worker processes) that ``evaluate_many(tasks, ..., pool=...)`` steps.

    ``evaluate_many`` makes and closes one itself by default. Make one yourself to reuse it
    across evaluations of the same runs (a training run evaluates every ``eval_every``
    steps): building an OGBench env costs about as much CPU time as running an episode in it,
    and memory for its MuJoCo model. The pool holds ``R * B`` envs, ``B`` of each run's task,
    with ``B = min(num_episodes, max_envs // R)`` (at least 1); ``workers`` and ``max_envs``
    as in ``evaluate_many``; ``render``: the envs can record frames of ``width`` x ``height``.
    Close it when done: ``with eval_pool(...) as pool: ...``.
    Raises ``ValueError`` naming the first task whose env cannot be made.
    """
    tasks = _check_task_names(tasks)
    if not tasks:
        raise ValueError("tasks is empty; give one task per run")
    checks.check_int(num_episodes, "num_episodes", 1)
    _check_workers_and_max_envs(workers, max_envs)
    wanted = (os.cpu_count() or 1) if workers is None else int(workers)
    limit = default_max_envs(wanted) if max_envs is None else int(max_envs)
    per_wave = max(1, min(int(num_episodes), limit // len(tasks)))  # B
    slots = len(tasks) * per_wave
    # By default a worker gets at least MIN_ENVS_PER_WORKER envs: starting one (a fresh interpreter
    # importing OGBench and MuJoCo) costs about as much as building a few envs; below that, this process.
    count = min(wanted, slots // MIN_ENVS_PER_WORKER) if workers is None else min(wanted, slots)
    pool = EnvPool([task for task in tasks for _ in range(per_wave)], count,
                   render_size=(int(width), int(height)) if render else None)
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


# --------------------------------------------------------------------------- evaluation


def _no_episodes(runs: int) -> list[dict[str, Any]]:
    return [{"success_rate": 0.0, "successes": [], "returns": [], "episode_lengths": [], "frames": []}
            for _ in range(runs)]


def skip_video_without_gl(video_episodes) -> int:
    """``video_episodes``, or 0 after one line on stderr saying why, where MuJoCo cannot render."""
    if checks.is_int(video_episodes) and video_episodes > 0:
        can_render, why = gl_status()
        if not can_render:
            print(f"no video: {why}", file=sys.stderr)
            return 0
    return video_episodes


def evaluate(env, state: TrainState, num_episodes: int, seed: int = 0, video_episodes: int = 0,
             video_every: int = 1, max_steps: int | None = None, exact: bool | None = None,
             progress: bool = False) -> dict[str, Any]:
    """Roll out ``state``'s EMA policy for ``num_episodes`` episodes in ``env``, one after another.

    The one-slot case of ``evaluate_many``: the same loop, with one run and one env.

    Args:
      env: an OGBench env (``make_eval_env``; ``render=True`` to record videos), or a task name to
        make one (closed again at the end).
      state: a single (not seed-stacked) ``TrainState``; actions come from its
        ``agent.acting_params`` (the EMA policy), as ``rql_lite.act`` computes them.
      num_episodes: episodes to run (>= 0).
      seed: everything random derives from it (see the module docstring). Same seed, same results.
      video_episodes: record frames of the first this many episodes (the env must render).
      video_every: keep every this-many-th step's frame.
      max_steps: cap on steps per episode (``None``: the env's own time limit).
      exact: as in ``evaluate_many``.
      progress: show a progress bar over the episodes (``tqdm.auto``: a widget in Jupyter and Colab).

    Returns a dict: ``success_rate`` (mean of ``successes``; 0.0 for no episodes),
    ``successes`` (0/1 per episode: ``info["success"]`` at its last step), ``returns``,
    ``episode_lengths``, and ``frames``: one ``(T, H, W, 3)`` uint8 array per recorded
    episode with ``T = 1 + length // video_every`` (the reset frame, then the frame after
    every ``video_every``-th step).
    """
    own = isinstance(env, str)
    if own:
        video_episodes = skip_video_without_gl(video_episodes)
        env = make_eval_env(env, render=checks.is_int(video_episodes) and video_episodes > 0)
    try:
        checks.check_int(num_episodes, "num_episodes", 0)
        checks.check_int(video_episodes, "video_episodes", 0)
        checks.check_int(video_every, "video_every", 1)
        checks.check_int(max_steps, "max_steps", 1, allow_none=True)
        if np.ndim(state.step) != 0:
            raise ValueError(f"state holds stacked seeds (step has shape {np.shape(state.step)}); "
                             "pass one seed's state, e.g. rql_lite.train.unstack(states, i)")
        description = env_description(env)
        _check_fits(description, state.config)
        if num_episodes == 0:
            return _no_episodes(1)[0]
        with EnvPool([description["name"]], workers=1, envs=[env]) as pool:
            pool.tasks, pool.per_wave, pool.specs = [description["name"]], 1, pool.start()
            stacked = jax.tree_util.tree_map(lambda x: x[None], state)
            exact = jax.default_backend() == "cpu" if exact is None else bool(exact)
            return _roll_out(pool, pool.tasks, stacked, int(num_episodes), [int(seed)], max_steps, exact,
                             int(video_episodes), int(video_every), {}, progress=bool(progress))[0]
    finally:
        if own:
            env.close()


def evaluate_many(tasks: Sequence[str], states: TrainState, num_episodes: int, seeds: Sequence[int],
                  max_steps: int | None = None, workers: int | None = None, *, max_envs: int | None = None,
                  exact: bool | None = None, pool: EnvPool | None = None, timings: dict | None = None,
                  video_episodes: int = 0, video_every: int = 1) -> list[dict[str, Any]]:
    """Roll out R agents' EMA policies for ``num_episodes`` episodes each, all at once.

    Result ``r`` equals ``evaluate(make_eval_env(tasks[r]), unstack(states, r), num_episodes,
    seed=seeds[r], max_steps=max_steps)``: the same reset seeds (``episode_seed``), the same policy
    noise, the same open-loop chunks and end conditions.

    The episodes run in *waves*: a wave holds ``B`` episodes of every run (``R * B`` envs) and
    steps them in lockstep: one jitted policy call per chunk gives every slot its next chunk
    (finished episodes are computed and ignored), then the env workers run the chunks. ``B`` is
    ``num_episodes`` unless ``max_envs`` is smaller than ``R * num_episodes``: OGBench's
    manipulation envs take memory and time to build, so 20 runs x 50 episodes
    cannot all be held at once. Envs are reused from wave to wave (a reset with a seed starts the
    same episode in any env of the task).

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
        products, bitwise equal to ``rql_lite.act``'s on CPU (see ``_policy_chunks``); ``False``: one
        vmapped batch, faster on accelerators, which rounds some actions differently in the last
        bit, so chaotic contact dynamics can later make an episode end differently (the statistics
        are the same).
      pool: envs from ``eval_pool(tasks, ...)`` to use (and leave open) instead of making and
        closing them here; ``workers`` and ``max_envs`` are then the pool's.
      timings: a dict to fill with where the time went: ``startup_s`` (workers and envs),
        ``policy_s`` and ``policy_calls`` (the first call, which compiles, is also in
        ``first_policy_call_s``), ``env_s`` (resets and chunk steps, waiting for the workers),
        ``waves``, ``episodes_per_wave``, ``envs``, ``workers`` (0: in this process),
        ``worker_info`` (pid and whether JAX was imported, per worker).
      video_episodes, video_every: record frames of each run's first ``video_episodes`` episodes,
        as ``evaluate`` does (the envs render: a given ``pool`` must come from ``eval_pool(...,
        render=True)``).

    Returns a list of R dicts with ``success_rate``, ``successes``, ``returns``,
    ``episode_lengths`` (lists of ``num_episodes`` entries) and ``frames``, as ``evaluate`` returns them.
    """
    tasks = _check_task_names(tasks)
    if checks.is_int(seeds) or isinstance(seeds, (str, bool)):
        raise ValueError(f"seeds must be a list of integers (one per run), got {seeds!r}")
    seeds = list(seeds)
    checks.check_int(num_episodes, "num_episodes", 0)
    checks.check_int(max_steps, "max_steps", 1, allow_none=True)
    checks.check_int(video_episodes, "video_episodes", 0)
    checks.check_int(video_every, "video_every", 1)
    _check_workers_and_max_envs(workers, max_envs)
    if np.ndim(states.step) != 1:
        raise ValueError(f"states must be stacked runs with a leading run axis (as rql_lite.train.train returns), but "
                         f"step has shape {np.shape(states.step)}; for one agent use evaluate(env, state, ...), or "
                         "stack it: jax.tree_util.tree_map(lambda x: x[None], state)")
    runs = int(np.shape(states.step)[0])
    if len(tasks) != runs or len(seeds) != runs:
        raise ValueError(f"states holds {runs} runs but tasks has {len(tasks)} and seeds {len(seeds)} entries; "
                         "give one task and one seed per run, in the runs' order")
    for r, seed in enumerate(seeds):
        checks.check_int(seed, f"seeds[{r}]")
    if pool is not None and (getattr(pool, "tasks", None) != tasks or not getattr(pool, "specs", None)):
        raise ValueError(f"pool holds envs for tasks {getattr(pool, 'tasks', None)} (or was closed), not for "
                         f"{tasks}; make one with eval_pool(tasks, num_episodes)")
    if pool is not None and video_episodes and pool.render_size is None:
        raise ValueError("video_episodes needs envs that render; make the pool with eval_pool(..., render=True)")
    episodes = int(num_episodes)
    if runs == 0 or episodes == 0:  # nothing to run: no env is made
        return _no_episodes(runs)

    own = pool is None
    if own:
        video_episodes = skip_video_without_gl(video_episodes)
        pool = eval_pool(tasks, episodes, workers, max_envs, render=video_episodes > 0)
    try:
        for r in range(runs):
            try:
                _check_fits(pool.specs[r * pool.per_wave], states.config)
            except ValueError as err:
                raise ValueError(f"tasks[{r}]: {err}") from None
        exact = jax.default_backend() == "cpu" if exact is None else bool(exact)
        clock = {"startup_s": pool.startup_s if own else 0.0}
        results = _roll_out(pool, tasks, states, episodes, seeds, max_steps, exact, int(video_episodes),
                            int(video_every), clock)
        if timings is not None:
            timings.update(clock, workers=pool.num_workers if pool.num_workers > 1 else 0,
                           worker_info=list(pool.worker_info))
        return results
    finally:
        if own:
            pool.close()


def _roll_out(pool: EnvPool, tasks: list[str], states: TrainState, episodes: int, seeds: list[int],
              max_steps: int | None, exact: bool, video_episodes: int, video_every: int,
              clock: dict, progress: bool = False) -> list[dict[str, Any]]:
    """The episode loop: ``episodes`` episodes of each of the R stacked runs, in waves of the pool's
    ``per_wave`` episodes per run (its ``R * per_wave`` slots: slot ``s`` holds run ``s // per_wave``).
    Arguments are checked by the callers; ``clock`` receives the timings ``evaluate_many`` reports;
    ``progress`` shows a bar over the episodes, moved as each wave ends."""
    from tqdm.auto import tqdm

    bar = tqdm(total=episodes * len(tasks), desc="evaluation", unit="episode", disable=not progress)
    try:
        return _roll_out_waves(pool, tasks, states, episodes, seeds, max_steps, exact, video_episodes, video_every,
                               clock, bar)
    finally:
        bar.close()


def _roll_out_waves(pool, tasks, states, episodes, seeds, max_steps, exact, video_episodes, video_every, clock,
                    bar) -> list[dict[str, Any]]:
    """``_roll_out``'s loop, moving ``bar`` by the episodes each wave finishes."""
    cfg, runs, per_wave = states.config, len(tasks), pool.per_wave
    waves, slots = math.ceil(episodes / per_wave), runs * per_wave
    base_keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])  # as evaluate makes them
    params, h, d = acting_params(states), cfg.horizon, cfg.action_dim
    recorded = min(video_episodes, episodes)
    out = [{"successes": [0] * episodes, "returns": [0.0] * episodes, "episode_lengths": [0] * episodes,
            "frames": [None] * recorded} for _ in range(runs)]
    clock.update(policy_s=0.0, policy_calls=0, first_policy_call_s=None, env_s=0.0, waves=waves,
                 episodes_per_wave=per_wave, envs=slots)

    for wave in range(waves):
        numbers = wave * per_wave + np.arange(per_wave)  # episode number of each slot of a run
        valid = np.tile(numbers < episodes, runs)  # (slots,): the last wave may be partly idle
        reset_seeds = [episode_seed(seeds[s // per_wave], int(numbers[s % per_wave])) if valid[s] else None
                       for s in range(slots)]
        record = [bool(valid[s]) and int(numbers[s % per_wave]) < recorded for s in range(slots)]
        tic = time.perf_counter()
        obs = pool.reset(reset_seeds, None if max_steps is None else int(max_steps), record, video_every)
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
        bar.update(int(valid.sum()))
        if any(record):
            for s, frames in enumerate(pool.take_frames()):
                if record[s]:
                    out[s // per_wave]["frames"][int(numbers[s % per_wave])] = frames
    return [{"success_rate": float(np.mean(o["successes"])), **o} for o in out]
