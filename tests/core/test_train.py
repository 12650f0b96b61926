"""Reproducibility of the scan/vmap training loop on CPU.

Every run here dispatches ``CHUNK`` updates at a time, so that one compiled program (per way of
batching the runs) serves all the tests: the number of updates per dispatch is static.
"""
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from rql_lite.agent import AgentConfig, config_dict, init_state
from rql_lite.data import from_arrays, from_dict, from_task_dicts
from rql_lite.train import run_layout, run_updates_jit, run_updates_runs, seed_keys, train, unstack

CHUNK = 20  # updates per dispatch

CFG = AgentConfig(obs_dim=4, action_dim=2, horizon=3, flow_steps=5, num_values=3, batch_size=32,
                  policy_hidden=(32, 32), value_hidden=(32, 32))


def toy_dataset(n=600, episode=40):
    rng = np.random.default_rng(0)
    return from_arrays(rng.normal(size=(n, 4)), rng.uniform(-1, 1, size=(n, 2)), rng.normal(size=n),
                       np.arange(n) % episode == episode - 1)


def leaves(state):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves((state.policy_params, state.value_params,
                                                              state.target_value_params, state.ema_policy_params))]


def single_seed_run(seed, steps, ds):
    """One run in its own program (``run_updates_jit``), ``CHUNK`` updates per dispatch."""
    init_key, run_key = seed_keys(seed)
    state = init_state(CFG, init_key)
    for _ in range(steps // CHUNK):
        state, _ = run_updates_jit(state, ds, run_key, 0, CHUNK)
    return state


def test_same_seed_same_parameters_bitwise_after_100_updates():
    ds = toy_dataset()
    a, b = single_seed_run(0, 100, ds), single_seed_run(0, 100, ds)
    for x, y in zip(leaves(a), leaves(b)):
        np.testing.assert_array_equal(x, y)
    c = single_seed_run(1, 100, ds)
    assert any(not np.array_equal(x, y) for x, y in zip(leaves(a), leaves(c)))


def test_vmapped_three_seed_run_matches_three_single_seed_runs():
    ds = toy_dataset()
    states, history = train(CFG, ds, seeds=[0, 1, 2], num_steps=100, steps_per_dispatch=CHUNK, progress=False)
    assert [h["step"] for h in history] == [20, 40, 60, 80, 100]
    assert history[-1]["value_loss"].shape == (3,)
    for i, seed in enumerate([0, 1, 2]):
        single = single_seed_run(seed, 100, ds)
        # Stated tolerance: vmapping batches the matmuls differently, so float32 rounding differs;
        # after 100 Adam steps every parameter agrees to 1e-4 relative / 1e-5 absolute.
        for x, y in zip(leaves(unstack(states, i)), leaves(single)):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_mapped_runs_are_bitwise_their_own_programs_and_vmapped_ones_agree_to_rounding():
    ds = toy_dataset()
    singles = [single_seed_run(seed, 40, ds) for seed in (0, 1)]
    for batching in ("map", "vmap"):
        states, history = train(CFG, ds, seeds=[0, 1], num_steps=40, steps_per_dispatch=CHUNK, progress=False,
                                batching=batching)
        for i, single in enumerate(singles):
            for x, y in zip(leaves(unstack(states, i)), leaves(single)):
                if batching == "map":
                    np.testing.assert_array_equal(x, y)  # the same computation, run after run
                else:
                    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="batching must be one of"):
        run_updates_runs(states, ds, None, None, 1, batching="pmap")


def test_training_continues_from_given_states_exactly():
    ds = toy_dataset()
    full, _ = train(CFG, ds, seeds=[0], num_steps=60, steps_per_dispatch=CHUNK, progress=False)
    half, _ = train(CFG, ds, seeds=[0], num_steps=40, steps_per_dispatch=CHUNK, progress=False)
    resumed, _ = train(CFG, ds, seeds=[0], num_steps=20, steps_per_dispatch=CHUNK, states=half, progress=False)
    assert int(resumed.step[0]) == 60
    for x, y in zip(leaves(full), leaves(resumed)):
        np.testing.assert_array_equal(x, y)


def test_dataset_that_does_not_match_the_config_is_a_clear_error():
    with pytest.raises(ValueError, match="obs_dim=4"):
        train(CFG.replace(obs_dim=5), toy_dataset(), num_steps=1, progress=False)


def test_training_lowers_the_bc_loss():
    ds = toy_dataset()
    _, history = train(CFG.replace(alpha=10.0), ds, seeds=[0], num_steps=300, steps_per_dispatch=CHUNK,
                       progress=False)
    assert history[-1]["bc_loss"][0] < history[0]["bc_loss"][0]


def test_seeds_shard_across_devices_and_match_one_device():
    """Four seeds on two (virtual CPU) devices: each device holds two seeds, and the result equals
    the one-device run (this process). A subprocess, because JAX fixes its device count when it starts."""
    script = f"""
import json, jax, numpy as np
from rql_lite.agent import AgentConfig
from rql_lite.data import from_arrays
from rql_lite.train import train
cfg = AgentConfig(**json.loads({json.dumps(json.dumps(config_dict(CFG)))}))
rng = np.random.default_rng(0)
n = 400
ds = from_arrays(rng.normal(size=(n, 4)), rng.uniform(-1, 1, (n, 2)), rng.normal(size=n), np.arange(n) % 50 == 49)
states, _ = train(cfg, ds, seeds=[0, 1, 2, 3], num_steps=20, steps_per_dispatch=20, progress=False)
leaf = jax.tree_util.tree_leaves(states.policy_params)[0]
print(json.dumps({{"devices": len(jax.devices()), "placed_on": len(leaf.sharding.device_set),
                  "leaf": np.asarray(leaf).tolist()}}))
"""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    two = json.loads(result.stdout.strip().splitlines()[-1])
    assert two["devices"] == 2 and two["placed_on"] == 2
    assert len(jax.devices()) == 1  # this process: one device
    rng = np.random.default_rng(0)
    n = 400
    ds = from_arrays(rng.normal(size=(n, 4)), rng.uniform(-1, 1, (n, 2)), rng.normal(size=n), np.arange(n) % 50 == 49)
    states, _ = train(CFG, ds, seeds=[0, 1, 2, 3], num_steps=CHUNK, steps_per_dispatch=CHUNK, progress=False)
    leaf = jax.tree_util.tree_leaves(states.policy_params)[0]
    assert len(leaf.sharding.device_set) == 1
    np.testing.assert_allclose(two["leaf"], np.asarray(leaf), rtol=1e-5, atol=1e-6)


def two_task_dataset(n=600, episode=40):
    """Two tasks on one dataset: same observations and actions, different reward/mask columns."""
    rng = np.random.default_rng(0)
    obs, actions = rng.normal(size=(n, 4)), rng.uniform(-1, 1, size=(n, 2))
    terminals = np.arange(n) % episode == episode - 1
    task_a = {"observations": obs, "actions": actions, "terminals": terminals, "rewards": rng.normal(size=n),
              "masks": np.ones(n)}
    task_b = {**task_a, "rewards": -np.abs(rng.normal(size=n)), "masks": (rng.uniform(size=n) > 0.1).astype(float)}
    return task_a, task_b


def test_a_run_on_one_task_of_a_multi_task_program_matches_the_single_task_program():
    task_a, task_b = two_task_dataset()
    both = from_task_dicts([task_a, task_b], names=["a", "b"])
    assert both.num_tasks == 2 and both.rewards.shape == (600, 2)
    tasks, seeds = run_layout(2, [0, 1])
    assert (tasks, seeds) == ([0, 0, 1, 1], [0, 1, 0, 1])
    states, history = train(CFG, both, seeds=seeds, task_index=tasks, num_steps=60, steps_per_dispatch=CHUNK,
                            progress=False)
    assert history[-1]["value_loss"].shape == (4,)
    for task, data in ((0, task_a), (1, task_b)):
        alone, _ = train(CFG, from_dict(data), seeds=[0, 1], num_steps=60, steps_per_dispatch=CHUNK, progress=False)
        for j in range(2):
            for x, y in zip(leaves(unstack(states, 2 * task + j)), leaves(unstack(alone, j))):
                np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    # The two tasks' rewards really reach their runs: same seed, different task, different parameters.
    assert any(not np.allclose(x, y) for x, y in zip(leaves(unstack(states, 0)), leaves(unstack(states, 2))))


def test_tasks_must_share_their_dataset_and_columns_must_exist():
    task_a, task_b = two_task_dataset()
    with pytest.raises(ValueError, match="a and b differ in 'actions'.*share one dataset"):
        from_task_dicts([task_a, {**task_b, "actions": task_b["actions"] * 0.5}], names=["a", "b"])
    both = from_task_dicts([task_a, task_b])
    with pytest.raises(ValueError, match="column the dataset lacks"):
        train(CFG, both, seeds=[0], task_index=[2], num_steps=1, progress=False)


def test_a_deadline_stops_before_the_dispatch_that_would_pass_it():
    # A deadline already passed: the first dispatch always runs (progress), the second is not started.
    states, history = train(CFG, toy_dataset(), seeds=[0], num_steps=100, steps_per_dispatch=CHUNK, progress=False,
                            deadline=time.perf_counter())
    assert int(states.step[0]) == CHUNK and len(history) == 1
    # An evaluation known (from an earlier segment) to take longer than the time left: stop before it.
    states, _ = train(CFG, toy_dataset(), seeds=[0], num_steps=100, steps_per_dispatch=CHUNK, progress=False,
                      callback=lambda *_: None, callback_every=CHUNK, deadline=time.perf_counter() + 60,
                      callback_estimate_s=120.0)
    assert int(states.step[0]) == CHUNK
    # A far deadline changes nothing.
    states, history = train(CFG, toy_dataset(), seeds=[0], num_steps=3 * CHUNK, steps_per_dispatch=CHUNK,
                            progress=False, deadline=time.perf_counter() + 3600)
    assert int(states.step[0]) == 3 * CHUNK
