"""Readers of a trained agent: shapes, the flat RQL target, and agreement with the update's own targets."""
import jax
import jax.numpy as jnp
import numpy as np

from rql_lite import analysis, data, losses
from rql_lite.teaching import toy_mdp
from rql_lite.agent import AgentConfig, init_state, value_targets


def test_agent_readers_shapes_and_rql_target_is_flat():
    cfg = AgentConfig(obs_dim=3, action_dim=1, flow_steps=4, num_values=2, policy_hidden=(16,),
                      value_hidden=(16,), discount=0.9)
    state = init_state(cfg, jax.random.PRNGKey(0))
    d = toy_mdp.chain_dataset(3, 4, seed=0)
    ds = data.from_arrays(d["observations"], d["actions"], d["rewards"], d["terminals"], d["masks"], d["next_observations"])
    batch = data.sample_chunks(ds, jax.random.PRNGKey(1), 8, 1)
    traj = analysis.virtual_trajectory(cfg, state.policy_params, batch["observations"], batch["actions"][:, 0])
    assert traj.shape == (5, 8, 1)
    np.testing.assert_allclose(traj[-1], batch["actions"][:, 0])  # f = 1 is the action itself
    v = analysis.values_on_grid(cfg, state.policy_params, state.value_params, batch["observations"], batch["actions"][:, 0])
    assert v.shape == (5, 8)
    z = jax.random.normal(jax.random.PRNGKey(2), (8, 1))
    rql, tfql = analysis.targets_on_grid(cfg, state.policy_params, state.target_value_params, batch, z)
    assert rql.shape == tfql.shape == (5, 8)
    assert np.all(np.ptp(rql, axis=0) == 0.0)  # bitwise the same target at every flow time
    np.testing.assert_allclose(tfql[-1], rql[-1])  # both use the environment target at f = 1
    assert np.any(np.ptp(tfql, axis=0) > 0)  # an untrained value differs across flow times
    x1 = analysis.flow_forward(cfg, state.policy_params, batch["observations"], traj[0], 0.0)
    assert x1.shape == (8, 1)


def test_targets_at_equals_the_updates_own_targets_for_the_same_draws():
    d = toy_mdp.chain_dataset(3, 4, seed=0)
    ds = data.from_arrays(d["observations"], d["actions"], d["rewards"], d["terminals"], d["masks"], d["next_observations"])
    batch = data.sample_chunks(ds, jax.random.PRNGKey(1), 8, 1)
    key = jax.random.PRNGKey(3)
    for agent in ("rql", "tfql"):
        cfg = AgentConfig(obs_dim=3, action_dim=1, flow_steps=4, num_values=2, policy_hidden=(16,),
                          value_hidden=(16,), discount=0.9, agent=agent)
        state = init_state(cfg, jax.random.PRNGKey(0))
        from_update = value_targets(state, batch, key)
        # The same draws value_targets makes: flow times from the first half of the key, z from the second.
        k_time, k_next = jax.random.split(key)
        flow_time = losses.sample_flow_times(k_time, 8, cfg.flow_steps, cfg.flow_time_mode)
        z = jax.random.normal(k_next, (8, cfg.chunk_dim))
        rql, tfql = analysis.targets_at(cfg, state.policy_params, state.target_value_params, batch, flow_time, z)
        np.testing.assert_allclose({"rql": rql, "tfql": tfql}[agent], from_update["target"], rtol=1e-6, atol=1e-6)


def test_round_trip_is_exact_for_a_constant_velocity():
    velocity = lambda x, t: jnp.ones_like(x) * 0.7  # noqa: E731  Euler is exact on straight lines
    a = np.array([[0.2, -0.4], [0.5, 0.1], [-0.9, 0.3]], np.float32)
    for mode in ("mixed", "grid"):
        x_f, produced = analysis.round_trip(velocity, a, 5, mode)
        assert x_f.shape == produced.shape == (6, 3, 2)
        np.testing.assert_allclose(produced, np.broadcast_to(a, (6, 3, 2)), atol=1e-6)
        np.testing.assert_allclose(x_f[0], a - 0.7, atol=1e-6)     # the noise it came from
        cost = analysis.round_trip_cost(velocity, a, lambda x: jnp.sum(x, -1), 5, mode)
        np.testing.assert_allclose(cost["bias"], 0.0, atol=1e-5)
        np.testing.assert_allclose(cost["miss"], 0.0, atol=1e-5)


def test_round_trip_miss_and_bias_on_a_linear_velocity_match_the_hand_computation():
    # v(x, t) = x: K reverse steps of size 1/K shrink by (1 - 1/K)^K, K forward steps grow by
    # (1 + 1/K)^K, so from f = 0 the flow makes a (1 - 1/K^2)^K, short of a.
    K = 4
    velocity = lambda x, t: x  # noqa: E731
    a = np.array([[0.5, 0.5], [0.8, 0.2]], np.float32)
    value_of = lambda x: jnp.sum(x, -1)  # noqa: E731  larger actions are worth more
    cost = analysis.round_trip_cost(velocity, a, value_of, K, "mixed")
    expect = a * (1 - 1 / K**2) ** K
    _, produced = analysis.round_trip(velocity, a, K, "mixed")
    np.testing.assert_allclose(produced[0], expect, rtol=1e-5)
    np.testing.assert_allclose(cost["miss"][0], np.linalg.norm(a - expect, axis=1), rtol=1e-4)
    assert np.all(cost["miss"][-1] == 0) and np.all(cost["bias"][-1] == 0)   # f = 1: the action itself
    assert np.all(cost["bias"][:-1] > 0)            # the target credits more than the flow delivers
    np.testing.assert_allclose(cost["assigned"], a.sum(1))
    # Grid reversal: from f = k/K, K - k steps back and K - k forward, (1 - 1/K^2)^(K - k).
    _, produced_grid = analysis.round_trip(velocity, a, K, "grid")
    for k in range(K + 1):
        np.testing.assert_allclose(produced_grid[k], a * (1 - 1 / K**2) ** (K - k), rtol=1e-5)
    # Clipping: what the environment executes.
    big = np.array([[0.9, 0.9]], np.float32)
    out = analysis.round_trip_cost(lambda x, t: 3.0 * x, big, value_of, K, "mixed", clip=1.0)
    assert np.all(out["produced"] <= 2.0 + 1e-6)


def test_agent_round_trip_cost_shapes_and_zero_at_the_action():
    cfg = AgentConfig(obs_dim=3, action_dim=2, flow_steps=4, num_values=2, policy_hidden=(16,),
                      value_hidden=(16,), discount=0.9)
    state = init_state(cfg, jax.random.PRNGKey(0))
    obs = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1]]
    actions = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (5, 2), minval=-1, maxval=1))
    cost = analysis.agent_round_trip_cost(cfg, state.policy_params, state.value_params, obs, actions)
    assert cost["miss"].shape == cost["bias"].shape == cost["produced"].shape == (5, 5)
    np.testing.assert_allclose(cost["assigned"], analysis.values_at(cfg, state.value_params, obs, actions, 1.0),
                               rtol=1e-5)
    np.testing.assert_allclose(cost["bias"][-1], 0.0, atol=1e-5)
    assert np.all(np.isfinite(cost["bias"]))
