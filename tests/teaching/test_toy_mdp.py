"""Tests of the toy problems of chapters 3-5: exact values and dataset structure."""
import jax.numpy as jnp
import numpy as np
import pytest

from rql_lite import data
from rql_lite.teaching import toy_mdp


def test_chain_values_hand_checked():
    # L = 3, gamma = 0.5: reward 1 on leaving state 2, so V = (0.25, 0.5, 1).
    np.testing.assert_allclose(toy_mdp.chain_values(3, 0.5), [0.25, 0.5, 1.0])
    ev = toy_mdp.expanded_chain_values(3, 0.5, 4)
    assert ev.shape == (3, 5)
    np.testing.assert_allclose(ev[:, 0], ev[:, -1])
    np.testing.assert_allclose(ev[1], 0.5)


def test_chain_dataset_structure():
    L, E = 4, 7
    d = toy_mdp.chain_dataset(L, E, action_dim=2, seed=1)
    n = L * E
    assert d["observations"].shape == (n, L) and d["next_observations"].shape == (n, L)
    assert d["actions"].shape == (n, 2) and np.all(np.abs(d["actions"]) <= 1)
    # One terminal per episode, on the last state, which is the only rewarded step.
    assert d["terminals"].sum() == E and np.all(d["terminals"][L - 1 :: L] == 1)
    np.testing.assert_array_equal(d["rewards"], d["terminals"])
    np.testing.assert_array_equal(d["masks"], 1 - d["terminals"])
    # next state is one to the right within an episode
    s, s_next = d["observations"].argmax(1), d["next_observations"].argmax(1)
    np.testing.assert_array_equal(s_next[d["masks"] == 1], s[d["masks"] == 1] + 1)
    ds = data.from_arrays(d["observations"], d["actions"], d["rewards"], d["terminals"], d["masks"], d["next_observations"])
    np.testing.assert_array_equal(np.asarray(ds.episode_end)[:L], L - 1)


def test_tabular_rql_is_k_independent_and_tfql_is_not():
    L, gamma = 3, 0.9
    # lr = 1: RQL is exact after L sweeps; TFQL needs L (K + 1).
    for K in (2, 5):
        rql = toy_mdp.tabular_chain_errors(L, K, gamma, "rql", 40, lr=1.0)
        tfql = toy_mdp.tabular_chain_errors(L, K, gamma, "tfql", 40, lr=1.0)
        assert toy_mdp.first_below(rql, 1e-6) == L
        assert toy_mdp.first_below(tfql, 1e-6) == L * (K + 1)
    with pytest.raises(ValueError):
        toy_mdp.tabular_chain_errors(L, 2, gamma, "sarsa", 3)


def test_first_below():
    assert toy_mdp.first_below([3, 2, 0.5, 2, 0.1, 0.05], 1.0) == 5
    assert np.isnan(toy_mdp.first_below([3, 2, 2], 1.0))
    assert toy_mdp.first_below([0.1, 0.1], 1.0) == 1


def test_bandit_reward_and_dataset():
    bandit = toy_mdp.ContextualBandit()
    # at a bump's centre, far from the others, the reward is that bump's height at this context
    r = bandit.reward(np.array([-1.0, 1.0]), np.array([[-0.6, -0.6], [0.6, 0.6]]))
    np.testing.assert_allclose(r, [1.0, 1.0], atol=1e-3)
    np.testing.assert_allclose(bandit.heights([0.0])[0], [0.55, 0.45, 0.45, 0.55])
    d = bandit.dataset(500, seed=0)
    assert d["observations"].shape == (500, 1) and d["actions"].shape == (500, 2)
    assert np.all(d["masks"] == 0) and np.all(d["terminals"] == 1)
    np.testing.assert_allclose(d["rewards"], bandit.reward(d["observations"][:, 0], d["actions"]))


def test_two_stage_dataset_and_rollout():
    task = toy_mdp.TwoStage()
    d = task.dataset(200, seed=0)
    assert d["observations"].shape == (400, 2)
    np.testing.assert_array_equal(d["terminals"], np.tile([0.0, 1.0], 200))
    np.testing.assert_array_equal(d["observations"][0::2], 0.0)
    # step-1 observation records the room chosen by the step-0 action
    np.testing.assert_array_equal(d["observations"][1::2, 1], task.room(d["actions"][0::2]))
    np.testing.assert_array_equal(d["next_observations"][0::2], d["observations"][1::2])
    assert np.all(d["rewards"][0::2] == 0)
    # a perfect policy gets the best return
    best = lambda obs, key: jnp.where(obs[:, :1] > 0, jnp.array([[-0.6, 0.6]]), jnp.array([[-0.6, 0.0]]))
    out = task.rollout(best, 10, discount=0.9)
    np.testing.assert_allclose(out["returns"], task.best_return(0.9), rtol=1e-3)
    # the behaviour data is mostly worse than that
    assert d["episode_return"].mean() < 0.6


def test_on_best_bump_needs_the_left_room_and_the_top_bump():
    task = toy_mdp.TwoStage()
    room = np.array([-1.0, -1.0, 1.0])
    a1 = np.array([[-0.6, 0.6], [-0.6, -0.6], [-0.6, 0.6]])  # best bump, poor bump, best bump's spot but right room
    assert task.on_best_bump(room, a1).tolist() == [True, False, False]


def test_tabular_relative_error_and_tfql_needs_about_k_plus_one_times_the_updates_on_a_long_chain():
    L, K, gamma = 60, 5, 0.99
    rel = toy_mdp.tabular_chain_errors(L, K, gamma, "rql", 5, relative=True)
    assert rel[0] == 1.0   # after one update the reward has reached only the last state: the rest are 100% off
    hits = {a: toy_mdp.first_below(toy_mdp.tabular_chain_errors(L, K, gamma, a, 3000, relative=True), 0.05)
            for a in ("rql", "tfql")}
    assert np.isfinite(hits["tfql"]) and K < hits["tfql"] / hits["rql"] < K + 2
