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
