"""Training loop: ``lax.scan`` runs many updates per dispatch, one program trains many agents
(``vmap`` side by side on an accelerator, ``lax.map`` one after another on a CPU: see
``runs_program``), and with several devices they are sharded across them (``place_on_devices``).

The agents of one program are *runs*: a (task, seed) pair each. With one task they are the
seeds; with several tasks of one domain (a dataset with one reward/mask column per task, see
``rql_lite.data.from_task_dicts``) run ``r`` reads column ``task_index[r]``. Runs are laid out
task-major: ``[(t, s) for t in tasks for s in seeds]``.

The random key of update number ``i`` is ``fold_in(run_key, i)``: it depends only on
the seed and the step count, so a run resumed from a checkpoint draws exactly the
batches and noise it would have drawn without the interruption.
"""
from __future__ import annotations

import math
import os
import platform
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rql_lite import checks
from rql_lite.agent import AgentConfig, TrainState, init_state, update_unchecked
from rql_lite.data import ChunkDataset, sample_chunks


class TrainingInterrupted(Exception):
    """Raised by ``train`` on Ctrl-C; carries the last complete states so they can be saved."""

    def __init__(self, states, history):
        super().__init__("training interrupted")
        self.states, self.history = states, history


def device_description() -> str:
    """The device JAX computes on, for records: e.g. ``"cpu: AMD EPYC (2 logical cores)"`` or
    ``"gpu: NVIDIA H100 80GB HBM3 x1"``."""
    dev = jax.devices()[0]
    if dev.platform == "cpu":
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
            cpu = names[0] if names else cpu
        except OSError:
            pass
        return f"cpu: {cpu} ({os.cpu_count()} logical cores)"
    return f"{dev.platform}: {getattr(dev, 'device_kind', dev.platform)} x{jax.device_count()}"


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """``(init_key, run_key)`` for one integer seed."""
    init_key, run_key = jax.random.split(jax.random.PRNGKey(seed))
    return init_key, run_key


def train_step(state: TrainState, dataset: ChunkDataset, run_key: jax.Array, task=0) -> tuple[TrainState, dict]:
    """Sample one batch of task ``task``'s rewards on device and apply one update (pure)."""
    cfg = state.config
    k_sample, k_update = jax.random.split(jax.random.fold_in(run_key, state.step))
    batch = sample_chunks(dataset, k_sample, cfg.batch_size, cfg.horizon, task)
    return update_unchecked(state, batch, k_update)


def run_updates(state: TrainState, dataset: ChunkDataset, run_key: jax.Array, task, num_updates: int):
    """``num_updates`` steps in one ``lax.scan``; returns the state and the mean metrics."""

    def body(state, _):
        return train_step(state, dataset, run_key, task)

    state, metrics = jax.lax.scan(body, state, None, length=num_updates)
    return state, jax.tree_util.tree_map(jnp.mean, metrics)


def _run_updates_one_after_another(states, dataset, run_keys, task_index, num_updates: int):
    """The runs of one program one after another (``lax.map``): each run computes exactly what its
    own program (``run_updates_jit``) computes."""
    return jax.lax.map(lambda run: run_updates(run[0], dataset, run[1], run[2], num_updates),
                       (states, run_keys, task_index))


# One run, and many runs in one program; the dataset is shared. ``num_updates`` is static: one
# compile per chunk size. Two ways to put R runs in one program:
# - "vmap": batched over the runs (one matmul per layer for all runs): what fills a GPU;
# - "map": the runs one after another inside the program, each computing bitwise what it computes
#   alone. On a CPU at the paper's sizes the matmuls of one run already use every core, so batching
#   gains nothing and vmap's layouts cost time; at tiny sizes vmap is the faster one on a CPU too.
#   The bench measures both (``python -m rql_lite bench``: ``runs_sweep`` and ``runs_sweep_vmap`` of
#   its record) and the Speed page shows the latest record's ratios.
run_updates_jit = jax.jit(run_updates, static_argnums=4, donate_argnums=0)
run_updates_vmapped = jax.jit(
    jax.vmap(run_updates, in_axes=(0, None, 0, 0, None)), static_argnums=4, donate_argnums=0
)
run_updates_mapped = jax.jit(_run_updates_one_after_another, static_argnums=4, donate_argnums=0)
RUN_BATCHINGS = ("vmap", "map")


def default_batching() -> str:
    """``"map"`` on one CPU device, ``"vmap"`` on an accelerator or several devices (the runs are
    then sharded across them, which needs the batched form; see ``runs_program``)."""
    return "map" if jax.default_backend() == "cpu" and jax.device_count() == 1 else "vmap"


def runs_program(batching: str | None = None):
    """The jitted program ``(states, dataset, run_keys, task_index, num_updates) -> (states, metrics)``
    that trains R runs at once: ``"vmap"`` (batched), ``"map"`` (one after another) or ``None``
    (``default_batching()``)."""
    batching = default_batching() if batching is None else batching
    if batching not in RUN_BATCHINGS:
        raise ValueError(f"batching must be one of {RUN_BATCHINGS} (or None for this device's default), got {batching!r}")
    return run_updates_vmapped if batching == "vmap" else run_updates_mapped


def run_updates_runs(states: TrainState, dataset: ChunkDataset, run_keys: jax.Array, task_index, num_updates: int,
                     batching: str | None = None):
    """``num_updates`` updates of each of R runs (leading axis of ``states``, ``run_keys (R, 2)``,
    ``task_index (R,)``) in one program; returns the states and each run's mean metrics ``(R,)``."""
    return runs_program(batching)(states, dataset, run_keys, task_index, num_updates)


def run_updates_seeds(states: TrainState, dataset: ChunkDataset, run_keys: jax.Array, num_updates: int,
                      batching: str | None = None):
    """Many seeds of one task in one program: ``run_updates_runs`` with every run on column 0."""
    tasks = jnp.zeros(run_keys.shape[:1], jnp.int32)
    return run_updates_runs(states, dataset, run_keys, tasks, num_updates, batching)


def run_layout(num_tasks: int, seeds: Sequence[int]) -> tuple[list[int], list[int]]:
    """``(task_index, seed)`` per run, task-major: run ``t * len(seeds) + j`` is task ``t``, seed ``seeds[j]``."""
    return ([t for t in range(num_tasks) for _ in seeds], [int(s) for _ in range(num_tasks) for s in seeds])


def init_states(config: AgentConfig, seeds: Sequence[int]) -> tuple[TrainState, jax.Array]:
    """Stacked train states (leading axis = run) and the matching run keys ``(R, 2)``, one per entry
    of ``seeds`` (which may repeat a seed: the same seed on several tasks starts identically)."""
    if len(seeds) == 0:
        raise ValueError("give at least one seed")
    keys = [seed_keys(int(s)) for s in seeds]
    init_keys = jnp.stack([k[0] for k in keys])
    run_keys = jnp.stack([k[1] for k in keys])
    states = jax.vmap(lambda k: init_state(config, k))(init_keys)
    return states, run_keys


def place_on_devices(states: TrainState, run_keys: jax.Array, dataset: ChunkDataset, task_index: jax.Array | None = None):
    """Spread the run axis over the available devices; the dataset goes to each of them.

    With ``D`` devices and ``R`` runs, the runs are split over ``gcd(R, D)`` devices along a
    one-axis mesh; the vmapped, jitted update then runs each device's runs where they live, with
    no communication between devices (runs are independent). With one device this changes
    nothing. This is JAX's own sharding; there is no job runner. Returns
    ``(states, run_keys, dataset, task_index)`` (``task_index`` default: all zeros).
    """
    if task_index is None:
        task_index = jnp.zeros(run_keys.shape[:1], jnp.int32)
    task_index = jnp.asarray(task_index, jnp.int32)
    devices = jax.devices()
    count = math.gcd(int(run_keys.shape[0]), len(devices))
    if count == 1:
        return states, run_keys, dataset, task_index
    mesh = jax.sharding.Mesh(np.array(devices[:count]), ("run",))
    by_run = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("run"))
    everywhere = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return (jax.device_put(states, by_run), jax.device_put(run_keys, by_run), jax.device_put(dataset, everywhere),
            jax.device_put(task_index, by_run))


def unstack(states: TrainState, index: int) -> TrainState:
    """The state of one seed out of a stacked state."""
    return jax.tree_util.tree_map(lambda x: x[index], states)


def train(
    config: AgentConfig,
    dataset: ChunkDataset,
    seeds: Sequence[int] = (0,),
    num_steps: int = 1000,
    steps_per_dispatch: int = 1000,
    states: TrainState | None = None,
    callback: Callable[[int, TrainState, dict], dict | None] | None = None,
    callback_every: int | None = None,
    progress: bool = True,
    desc: str = "train",
    task_index: Sequence[int] | None = None,
    deadline: float | None = None,
    callback_estimate_s: float = 0.0,
    batching: str | None = None,
) -> tuple[TrainState, list[dict]]:
    """Train ``len(seeds)`` agents (runs) in one program for ``num_steps`` updates each.

    Args:
      config, dataset: the agent and its data (``dataset`` dims must match ``config``).
      seeds: integer seed of each run; the returned state has a leading axis of this length.
      task_index: the dataset's reward/mask column of each run (default: column 0 for every run);
        ``run_layout`` builds ``task_index`` and ``seeds`` for tasks x seeds.
      num_steps: total updates per seed (counted from the states' current step).
      steps_per_dispatch: updates per ``lax.scan`` call; the progress bar moves between them.
      states: stacked states to continue from (resume); default fresh states from ``seeds``.
      callback: ``callback(step, states, metrics)`` every ``callback_every`` steps (evaluation,
        checkpoints); a dict it returns is shown in the progress bar.
      progress: show a tqdm bar with steps/s and losses.
      deadline: a ``time.perf_counter()`` value to end before. A dispatch is not started if the
        time per update and the longest callback so far predict that it, its callback and one more
        callback (the caller's final save) would pass it; the first dispatch always runs, so every
        call makes progress. The caller sees an early stop from the returned states' step. This is
        how a run is cut into time-limited segments: save at the step reached, resume from it.
      batching: how the runs share the program (``runs_program``): ``"vmap"``, ``"map"``, or
        ``None``, this device's default (``"map"`` on CPU, ``"vmap"`` on an accelerator).
      callback_estimate_s: the longest callback expected before one has been timed (e.g. an
        evaluation timed in an earlier segment), so that the first one is planned for too.

    Returns:
      ``(states, history)``; history has one dict per dispatch: ``step``, ``wall_s`` and each
      metric as a ``(num_seeds,)`` numpy array (the mean over that dispatch's updates).
    """
    if dataset.obs_dim != config.obs_dim or dataset.action_dim != config.action_dim:
        raise ValueError(
            f"dataset has obs_dim={dataset.obs_dim}, action_dim={dataset.action_dim} but the config "
            f"expects obs_dim={config.obs_dim}, action_dim={config.action_dim}"
        )
    checks.check_int(num_steps, "num_steps", 0)
    checks.check_int(steps_per_dispatch, "steps_per_dispatch", 1)
    runs_program(batching)  # checks the name before any work
    if task_index is None:
        task_index = [0] * len(seeds)
    if len(task_index) != len(seeds):
        raise ValueError(f"task_index has {len(task_index)} entries but there are {len(seeds)} runs (seeds); give one each")
    if any(not 0 <= int(t) < dataset.num_tasks for t in task_index):
        raise ValueError(f"task_index {list(task_index)} names a column the dataset lacks (it has {dataset.num_tasks})")
    fresh_states, run_keys = init_states(config, seeds)
    states = fresh_states if states is None else states
    states, run_keys, dataset, tasks = place_on_devices(states, run_keys, dataset, jnp.asarray(task_index, jnp.int32))
    start = int(np.asarray(states.step).reshape(-1)[0])
    stop = start + num_steps
    callback_every = callback_every or steps_per_dispatch

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, desc=desc, unit="step", dynamic_ncols=True)
    history, extra = [], {}
    step, t0 = start, time.perf_counter()
    seconds_per_update, longest_callback = None, float(callback_estimate_s)
    while step < stop:
        # Land exactly on callback steps so evaluation happens where it is asked for.
        n = min(steps_per_dispatch, stop - step, callback_every - step % callback_every)
        tick = time.perf_counter()
        if deadline is not None and seconds_per_update is not None:
            ends_on_callback = callback is not None and (step + n) % callback_every == 0
            predicted = tick + seconds_per_update * n + longest_callback * (1 + ends_on_callback)
            if predicted > deadline:
                break
        new_states = None
        try:
            new_states, metrics = run_updates_runs(states, dataset, run_keys, tasks, n, batching)
            metrics = {k: np.asarray(v) for k, v in metrics.items()}  # waits for the dispatch
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
            # The dispatch either finished (its states are complete) or never started.
            last = states if new_states is None else jax.block_until_ready(new_states)
            raise TrainingInterrupted(last, history) from None
        states = new_states
        step += n
        dt = time.perf_counter() - tick
        history.append({"step": step, "wall_s": time.perf_counter() - t0, **metrics})
        # The first dispatch holds the compilation: it over-predicts, which errs on the safe side.
        seconds_per_update = dt / n if seconds_per_update is None else min(seconds_per_update, dt / n)
        if callback is not None and step % callback_every == 0:
            called = time.perf_counter()
            extra = callback(step, states, metrics) or extra
            longest_callback = max(longest_callback, time.perf_counter() - called)
        if bar is not None:
            bar.update(n)
            bar.set_postfix(
                {"steps/s": f"{n / dt:.1f}", "V": f"{metrics['value_loss'].mean():.3g}",
                 "pi": f"{metrics['policy_loss'].mean():.3g}", "bc": f"{metrics['bc_loss'].mean():.3g}", **extra}
            )
    if bar is not None:
        bar.close()
    return states, history
