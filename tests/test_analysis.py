"""Readers of a trained agent: shapes, the flat RQL target, and agreement with the update's own targets."""
import jax
import numpy as np

from rql_lite import analysis, data, losses, toy_mdp
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
