"""Checkpoints round-trip exactly, are written atomically, and refuse damaged or foreign files."""
import os

import jax
import numpy as np
import pytest

from rql_lite import checkpoint
from rql_lite.agent import AgentConfig
from rql_lite.train import init_states

CFG = AgentConfig(obs_dim=3, action_dim=2, horizon=2, policy_hidden=(8,), value_hidden=(8,), num_values=2)


def test_round_trip_is_exact(tmp_path):
    states, _ = init_states(CFG, [0, 1])
    path = str(tmp_path / "ckpt.msgpack")
    checkpoint.save(path, states, {"task": "t", "seeds": [0, 1]})
    template, _ = init_states(CFG, [5, 6])
    restored, meta = checkpoint.load(path, template, expected={"task": "t", "seeds": [0, 1]})
    assert meta["task"] == "t"
    for a, b in zip(jax.tree_util.tree_leaves(states), jax.tree_util.tree_leaves(restored)):
        np.testing.assert_array_equal(a, b)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.msgpack"]  # no temporary file left behind


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "ckpt.msgpack"
    path.write_bytes(b"\x00\x01not msgpack at all")
    template, _ = init_states(CFG, [0])
    with pytest.raises(ValueError, match="corrupt|not an rql_lite checkpoint"):
        checkpoint.load(str(path), template)


def test_foreign_checkpoint_is_a_clear_error(tmp_path):
    import flax.serialization

    path = tmp_path / "other.msgpack"
    path.write_bytes(flax.serialization.msgpack_serialize({"params": np.zeros(3)}))
    template, _ = init_states(CFG, [0])
    with pytest.raises(ValueError, match="not an rql_lite checkpoint"):
        checkpoint.load(str(path), template)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    states, _ = init_states(CFG, [0])
    path = str(tmp_path / "ckpt.msgpack")
    checkpoint.save(path, states, {"task": "cube-single", "agent": "rql"})
    with pytest.raises(ValueError, match="its agent is 'rql'"):
        checkpoint.load(path, states, expected={"task": "cube-single", "agent": "tfql"})
    bigger, _ = init_states(CFG.replace(policy_hidden=(16,)), [0])
    with pytest.raises(ValueError, match="shapes|does not fit"):
        checkpoint.load(path, bigger)


def test_an_exported_agent_acts_exactly_like_the_state_it_came_from(tmp_path):
    from rql_lite.agent import AgentConfig, act, init_state

    config = AgentConfig(obs_dim=3, action_dim=2, horizon=2, policy_hidden=(8,), value_hidden=(8,), num_values=2)
    state = init_state(config, jax.random.PRNGKey(4))
    state = state.replace(ema_policy_params=jax.tree_util.tree_map(lambda x: x + 0.1, state.ema_policy_params))
    path = str(tmp_path / "agent.msgpack")
    checkpoint.save_agent(path, state, {"task": "t"})
    loaded, meta = checkpoint.load_agent(path)
    assert meta["task"] == "t" and meta["config"]["horizon"] == 2
    obs = np.ones((4, 3), np.float32)
    np.testing.assert_array_equal(act(loaded, obs, jax.random.PRNGKey(0)), act(state, obs, jax.random.PRNGKey(0)))
    for name in ("policy_params", "value_params", "target_value_params", "ema_policy_params"):
        for a, b in zip(jax.tree_util.tree_leaves(getattr(loaded, name)), jax.tree_util.tree_leaves(getattr(state, name))):
            np.testing.assert_array_equal(a, b)
    # A checkpoint, or damaged bytes, are refused by name.
    (tmp_path / "bad.msgpack").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="not an rql_lite agent file"):
        checkpoint.load_agent(str(tmp_path / "bad.msgpack"))
