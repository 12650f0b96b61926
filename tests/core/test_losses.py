"""Value targets of RQL and TFQL against hand-computed numbers (h = 3, gamma = 0.9)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rql_lite import losses
from rql_lite.agent import AgentConfig, init_state, value_targets

GAMMA = 0.9
# Three chunks of h = 3 steps, rewards 1, 2, 3:
#  0: a full chunk inside one episode;
#  1: a true terminal after step 1 (masks[1] = 0): step 2's reward is dropped, no bootstrap;
#  2: the episode ends after step 1 (valid[2] = 0): padding dropped, bootstrap after 2 steps.
REWARDS = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 0.0]], np.float32)
MASKS = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], np.float32)
VALID = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 0]], np.float32)
HAND_RETURNS = np.array([1 + 0.9 * 2 + 0.81 * 3, 1 + 0.9 * 2, 1 + 0.9 * 2])
HAND_BOOTSTRAP = np.array([0.729, 0.0, 0.81])
# A two-head target ensemble that outputs 1 and 3 everywhere: mean 2, std 1, rho = 0.5 -> 1.5.
HAND_NEXT_VALUE = 1.5


def test_chunk_returns_by_hand():
    returns, bootstrap = losses.chunk_returns(jnp.asarray(REWARDS), jnp.asarray(MASKS), jnp.asarray(VALID), GAMMA)
    np.testing.assert_allclose(returns, HAND_RETURNS, rtol=1e-6)
    np.testing.assert_allclose(bootstrap, HAND_BOOTSTRAP, rtol=1e-6)


def test_padding_rewards_are_ignored_even_if_nonzero():
    rewards = REWARDS.copy()
    rewards[2, 2] = 100.0  # lies past the episode end
    returns, _ = losses.chunk_returns(jnp.asarray(rewards), jnp.asarray(MASKS), jnp.asarray(VALID), GAMMA)
    np.testing.assert_allclose(returns[2], HAND_RETURNS[2], rtol=1e-6)


def test_expectile_loss_weights():
    diff = jnp.array([2.0, -2.0])
    np.testing.assert_allclose(losses.expectile_loss(diff, 0.9), [0.9 * 4, 0.1 * 4], rtol=1e-6)
    np.testing.assert_allclose(losses.expectile_loss(diff, 0.5), [2.0, 2.0], rtol=1e-6)


def test_ensemble_aggregate_is_mean_minus_rho_std():
    values = jnp.array([[1.0, 5.0], [3.0, 5.0]])
    np.testing.assert_allclose(losses.aggregate_ensemble(values, 0.5), [1.5, 5.0], rtol=1e-6)


def test_flow_time_draw_half_continuous_half_grid():
    f = np.asarray(losses.sample_flow_times(jax.random.PRNGKey(0), 1000, 10, "mixed"))
    assert f.min() >= 0.0 and f.max() <= 1.0
    on_grid = np.isclose(f * 10, np.round(f * 10), atol=1e-5)
    assert on_grid[500:].all()  # second half: the grid {0, 1/K, ..., 1}
    assert on_grid[:500].mean() < 0.05  # first half: continuous
    grid = np.asarray(losses.sample_flow_times(jax.random.PRNGKey(1), 2000, 4, "grid"))
    assert set(np.round(grid * 4).astype(int)) == {0, 1, 2, 3, 4}
    with pytest.raises(ValueError, match="mixed"):
        losses.sample_flow_times(jax.random.PRNGKey(0), 4, 4, "other")


def constant_target_state(agent: str, repeats: int = 20):
    cfg = AgentConfig(obs_dim=2, action_dim=1, horizon=3, flow_steps=4, num_values=2, discount=GAMMA,
                      pessimism=0.5, policy_hidden=(16,), value_hidden=(8, 8), agent=agent, flow_time_mode="grid")
    state = init_state(cfg, jax.random.PRNGKey(0))
    # Zero every weight, then give the last layer's bias of head 0 the value 1 and head 1 the value 3.
    target = jax.tree_util.tree_map(jnp.zeros_like, state.target_value_params)
    target["params"]["VmapMLP_0"]["Dense_2"]["bias"] = jnp.array([[1.0], [3.0]])
    state = state.replace(target_value_params=target)
    b = 3 * repeats
    rng = np.random.default_rng(0)
    batch = {
        "observations": jnp.asarray(rng.normal(size=(b, 2)), jnp.float32),
        "actions": jnp.asarray(rng.uniform(-1, 1, size=(b, 3, 1)), jnp.float32),
        "rewards": jnp.asarray(np.tile(REWARDS, (repeats, 1))),
        "masks": jnp.asarray(np.tile(MASKS, (repeats, 1))),
        "valid": jnp.asarray(np.tile(VALID, (repeats, 1))),
        "next_observations": jnp.asarray(rng.normal(size=(b, 2)), jnp.float32),
    }
    return state, batch, repeats


def test_rql_target_by_hand_is_the_same_at_every_flow_time():
    state, batch, repeats = constant_target_state("rql")
    out = value_targets(state, batch, jax.random.PRNGKey(3))
    hand = np.tile(HAND_RETURNS + HAND_BOOTSTRAP * HAND_NEXT_VALUE, repeats)
    np.testing.assert_allclose(out["target"], hand, rtol=1e-5)
    assert len(np.unique(np.round(np.asarray(out["flow_time"]), 4))) > 2  # many flow times, one target each


def test_tfql_target_by_hand_one_step_inside_the_flow_env_target_at_the_end():
    state, batch, repeats = constant_target_state("tfql")
    out = value_targets(state, batch, jax.random.PRNGKey(3))
    f, target = np.asarray(out["flow_time"]), np.asarray(out["target"])
    env = np.tile(HAND_RETURNS + HAND_BOOTSTRAP * HAND_NEXT_VALUE, repeats)
    at_end = f >= 1.0
    assert at_end.any() and (~at_end).any()  # the draw covers both cases
    np.testing.assert_allclose(target[at_end], env[at_end], rtol=1e-5)
    # Inside the flow: no reward, no discount, just the target ensemble at the next flow state.
    np.testing.assert_allclose(target[~at_end], HAND_NEXT_VALUE, rtol=1e-5)
