"""Gradient isolation, averaging rules, acting, and clear errors for bad configuration or batches."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rql_lite.agent import AgentConfig, _loss, act, check_batch, init_state, update

CFG = AgentConfig(obs_dim=3, action_dim=2, horizon=2, flow_steps=4, num_values=3, batch_size=8,
                  policy_hidden=(16, 16), value_hidden=(16, 16), tau=0.1, ema_rate=0.9)


def make_batch(cfg=CFG, b=8, seed=0):
    rng = np.random.default_rng(seed)
    h = cfg.horizon
    return {
        "observations": jnp.asarray(rng.normal(size=(b, cfg.obs_dim)), jnp.float32),
        "actions": jnp.asarray(rng.uniform(-1, 1, size=(b, h, cfg.action_dim)), jnp.float32),
        "rewards": jnp.asarray(rng.normal(size=(b, h)), jnp.float32),
        "masks": jnp.ones((b, h)),
        "valid": jnp.ones((b, h)),
        "next_observations": jnp.asarray(rng.normal(size=(b, cfg.obs_dim)), jnp.float32),
    }


def leaves_abs_max(tree):
    return max(float(jnp.max(jnp.abs(x))) for x in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize("agent", ["rql", "tfql"])
@pytest.mark.parametrize("policy_loss", ["release", "paper"])
def test_gradient_isolation(agent, policy_loss):
    cfg = CFG.replace(agent=agent, policy_loss=policy_loss)
    state = init_state(cfg, jax.random.PRNGKey(0))
    params = {"policy": state.policy_params, "value": state.value_params}
    batch, key = make_batch(cfg), jax.random.PRNGKey(1)

    def grad_of(term):
        return jax.grad(lambda p: _loss(p, state, batch, key)[1][term])(params)

    g_value, g_policy, g_bc = grad_of("value_loss"), grad_of("policy_loss"), grad_of("bc_loss")
    assert leaves_abs_max(g_value["policy"]) == 0.0  # the value loss moves no policy parameter
    assert leaves_abs_max(g_value["value"]) > 0.0
    assert leaves_abs_max(g_policy["value"]) == 0.0  # the policy term moves no value parameter
    assert leaves_abs_max(g_policy["policy"]) > 0.0
    assert leaves_abs_max(g_bc["value"]) == 0.0
    assert leaves_abs_max(g_bc["policy"]) > 0.0


def test_target_and_ema_move_only_by_their_averaging_rules():
    state = init_state(CFG, jax.random.PRNGKey(0))
    for i in range(3):  # after a few steps target != online, so the rule is really exercised
        new, _ = update(state, make_batch(seed=i), jax.random.PRNGKey(i))
        expect_target = jax.tree_util.tree_map(lambda v, t: CFG.tau * v + (1 - CFG.tau) * t,
                                               new.value_params, state.target_value_params)
        expect_ema = jax.tree_util.tree_map(lambda p, e: (1 - CFG.ema_rate) * p + CFG.ema_rate * e,
                                            new.policy_params, state.ema_policy_params)
        for got, want in ((new.target_value_params, expect_target), (new.ema_policy_params, expect_ema)):
            for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        assert int(new.step) == i + 1
        state = new
    moved = jax.tree_util.tree_map(lambda a, b: jnp.max(jnp.abs(a - b)), state.target_value_params, state.value_params)
    assert leaves_abs_max(moved) > 0.0


def test_act_gives_clipped_chunks_from_the_ema_policy():
    state = init_state(CFG, jax.random.PRNGKey(0))
    chunk = act(state, jnp.zeros((5, 3)), jax.random.PRNGKey(0))
    assert chunk.shape == (5, 2, 2)
    assert float(jnp.max(jnp.abs(chunk))) <= 1.0
    assert act(state, jnp.zeros(3), jax.random.PRNGKey(0)).shape == (2, 2)
    # Acting reads the EMA parameters: scrambling the online policy changes nothing.
    scrambled = state.replace(policy_params=jax.tree_util.tree_map(lambda x: x + 1.0, state.policy_params))
    np.testing.assert_array_equal(act(scrambled, jnp.zeros((5, 3)), jax.random.PRNGKey(0)), chunk)
    with pytest.raises(ValueError, match="obs_dim=3"):
        act(state, jnp.zeros((5, 4)), jax.random.PRNGKey(0))


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(expectile=1.0), "expectile"),
        (dict(expectile=0.0), "expectile"),
        (dict(flow_steps=0), "flow_steps"),
        (dict(horizon=0), "horizon"),
        (dict(alpha=-1.0), "alpha"),
        (dict(agent="sac"), "agent"),
        (dict(discount=1.5), "discount"),
    ],
)
def test_bad_config_is_a_clear_error(changes, message):
    with pytest.raises(ValueError, match=message):
        CFG.replace(**changes)


def test_batch_that_does_not_match_the_config_is_a_clear_error():
    state = init_state(CFG, jax.random.PRNGKey(0))
    batch = make_batch()
    batch["actions"] = jnp.zeros((8, 3, 2))  # h = 3 but the config has h = 2
    with pytest.raises(ValueError, match=r"batch\['actions'\].*horizon=2"):
        update(state, batch, jax.random.PRNGKey(0))
    batch = make_batch()
    batch["observations"] = jnp.zeros((8, 5))
    with pytest.raises(ValueError, match="obs_dim=3"):
        update(state, batch, jax.random.PRNGKey(0))
    batch = make_batch()
    del batch["valid"]
    with pytest.raises(ValueError, match="missing"):
        update(state, batch, jax.random.PRNGKey(0))


def test_nan_in_a_batch_is_a_clear_error_naming_key_and_index():
    state = init_state(CFG, jax.random.PRNGKey(0))
    batch = make_batch()
    batch["rewards"] = batch["rewards"].at[4, 1].set(jnp.nan)
    with pytest.raises(ValueError, match=r"batch\['rewards'\].*\(4, 1\)"):
        update(state, batch, jax.random.PRNGKey(0))
    check_batch(CFG, make_batch())  # a clean batch passes
