"""Tests of the measurement helpers of the chapter "The roads not taken" (rql_lite.teaching.roads): tiny sizes."""
import jax
import numpy as np
import pytest

from rql_lite.agent import init_state
from rql_lite.teaching import roads, toy_mdp


def test_between_modes_puts_the_best_action_between_the_data_modes():
    bandit = roads.between_modes()
    best = float(bandit.best_action()[0])
    assert best == pytest.approx(0.15, abs=2e-3)
    a = bandit.actions(4000, seed=0)
    assert a.shape == (4000, 1) and np.all(np.abs(a) <= 1)
    assert np.mean(a > 0) == pytest.approx(0.5, abs=0.05)
    # The data rarely comes near the best action, and its mean reward is well below the best.
    assert np.mean(np.abs(a[:, 0] - best) < 0.1) < 0.05
    assert bandit.reward(a).mean() < 0.5 * bandit.best_reward()
    d = bandit.dataset(16, seed=1)
    np.testing.assert_array_equal(d["masks"], 0.0)
    np.testing.assert_allclose(d["rewards"], bandit.reward(d["actions"]))
    assert bandit.chunk_dataset(16, seed=1).action_dim == 1


def test_mode_shares_and_reach_on_hand_placed_actions():
    centers = np.array([[-0.5], [0.5]])
    actions = np.array([[-0.5], [-0.45], [0.52], [0.0]])
    m = roads.mode_shares(actions, centers, radius=0.1)
    np.testing.assert_allclose(m["shares"], [0.5, 0.25])
    assert m["between"] == pytest.approx(0.25) and m["covered"] == 2
    bandit = roads.between_modes()
    r = roads.reach(np.full((10, 1), 0.15), bandit)
    assert r["at_best"] == 1.0 and r["off_data"] == 1.0 and r["reward"] == pytest.approx(bandit.best_reward())
    r = roads.reach(np.full((10, 1), 0.5), bandit)
    assert r["at_best"] == 0.0 and r["off_data"] == 0.0 and r["reward"] < 0.5


def test_network_calls_per_action():
    calls = {a: roads.network_calls_per_action(roads.toy_config(a, 1, 1, num_samples=8))["total"]
             for a in ("rql", "fql", "ifql", "fawac", "fbrac")}
    assert calls == {"rql": 10, "fql": 1, "ifql": 8 * 10 + 8, "fawac": 10, "fbrac": 10}


def test_critic_term_gradient_norms_obey_the_triangle_inequality_and_depend_on_k():
    config = roads.toy_config("fbrac", 1, 1, policy_hidden=(8,), value_hidden=(8,))
    state = init_state(config, jax.random.PRNGKey(0))
    obs = np.zeros((16, 1), np.float32)
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (16, 1)))
    per, batch = roads.critic_term_gradient_norms(config, state.policy_params, state.value_params, obs, z)
    assert per.shape == (16,) and np.all(per >= 0) and np.mean(per > 0) > 0.3 and np.all(np.isfinite(per))
    assert batch <= per.mean() * (1 + 1e-5)  # the norm of a mean is at most the mean of the norms
    per2, _ = roads.critic_term_gradient_norms(config.replace(flow_steps=2), state.policy_params,
                                               state.value_params, obs, z)
    assert not np.allclose(per, per2)


def test_diverged_flags_nan_and_large_values_per_seed():
    history = [{"step": 10, "wall_s": 1e6, "value_loss": np.array([0.1, 0.2, 0.3]),
                "value_mean": np.array([1.0, np.nan, 2.0])},
               {"step": 20, "wall_s": 2e6, "value_loss": np.array([0.1, 0.2, 1e4]),
                "value_mean": np.array([1.0, 1.0, 2.0])}]
    np.testing.assert_array_equal(roads.diverged(history), [False, True, True])
    assert roads.diverged([]).size == 0


def test_train_seeds_and_the_policy_measurements_on_a_tiny_run():
    bandit = roads.between_modes()
    config = roads.toy_config("ifql", 1, 1, policy_hidden=(8,), value_hidden=(8,), batch_size=16, num_samples=4)
    states, history, seconds = roads.train_seeds(config, bandit.chunk_dataset(64), seeds=[0, 1], steps=3)
    assert len(states) == 2 and seconds > 0 and history[-1]["step"] == 3
    assert int(states[1].step) == 3
    a = roads.policy_actions(states[0], np.zeros(1), 32)
    assert a.shape == (32, 1) and np.all(np.abs(a) <= 1)
    assert not np.allclose(a, roads.policy_actions(states[1], np.zeros(1), 32))  # two seeds, two policies
    many = roads.with_samples(states[0], 16)
    assert many.config.num_samples == 16 and many.config.replace(num_samples=4) == states[0].config
    assert roads.seconds_per_action(many, num_obs=4, repeats=2) > 0


def test_two_stage_measurements_on_a_tiny_run():
    task = toy_mdp.TwoStage()
    raw = task.dataset(64, seed=0)
    from rql_lite import data

    ds = data.from_arrays(raw["observations"], raw["actions"], raw["rewards"], raw["terminals"], raw["masks"],
                          raw["next_observations"])
    config = roads.toy_config("bc", 2, 2, policy_hidden=(8,), value_hidden=(8,), batch_size=16)
    states, _, _ = roads.train_seeds(config, ds, seeds=[0], steps=2)
    ep = roads.two_stage_episodes(states[0], task, 50)
    assert 0 <= ep["left"] <= 1 and 0 <= ep["best"] <= ep["left"] and ep["rollout"]["returns"].shape == (50,)
    m = roads.room_mode_shares(states[0], task, 1.0, 40)
    assert m["shares"].shape == (2,) and m["shares"].sum() + m["between"] == pytest.approx(1.0)
