"""Checkpoints round-trip exactly, are written atomically, and refuse damaged or foreign files, and files
of another network definition (loaded silently, those would compute something else)."""
import json
import os
from pathlib import Path

import flax.serialization
import jax
import numpy as np
import pytest

from rql_lite.agent import AgentConfig, act, init_state
from rql_lite.networks import NETWORK_DEFINITION
from rql_lite.runs import checkpoint
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


def test_a_policy_only_agent_acts_like_its_state_and_is_much_smaller(tmp_path):
    config = AgentConfig(obs_dim=3, action_dim=2, horizon=2, policy_hidden=(16,), value_hidden=(16, 16), num_values=4)
    state = init_state(config, jax.random.PRNGKey(4))
    state = state.replace(ema_policy_params=jax.tree_util.tree_map(lambda x: x - 0.2, state.ema_policy_params))
    full, small = str(tmp_path / "agent.msgpack"), str(tmp_path / "policy.msgpack")
    checkpoint.save_agent(full, state, {"task": "t"})
    checkpoint.save_agent(small, state, {"task": "t"}, policy_only=True)
    assert os.path.getsize(small) < 0.25 * os.path.getsize(full)
    loaded, meta = checkpoint.load_agent(small)
    assert meta["policy_only"] and loaded.value_params is None
    obs = np.ones((4, 3), np.float32)
    np.testing.assert_array_equal(act(loaded, obs, jax.random.PRNGKey(0)), act(state, obs, jax.random.PRNGKey(0)))


def test_every_flipped_bit_and_every_truncation_is_refused_by_name(tmp_path):
    states, _ = init_states(CFG, [0, 1])
    path = tmp_path / "ckpt.msgpack"
    checkpoint.save(str(path), states, {"task": "t"})
    good = path.read_bytes()
    rng = np.random.default_rng(0)
    in_network_record = good.index(b"Dense -> GELU")  # a flip there must read as damage, not as another network
    for position in list(rng.integers(0, len(good), 40)) + [0, in_network_record, len(good) // 2, len(good) - 1]:
        damaged = bytearray(good)
        damaged[position] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(damaged))
        with pytest.raises(checkpoint.CheckpointDamaged, match=str(path)):
            checkpoint.load(str(path), states)
    for length in (0, 10, len(good) // 3, len(good) - 1):
        path.write_bytes(good[:length])
        with pytest.raises(checkpoint.CheckpointDamaged, match="corrupt"):
            checkpoint.load(str(path), states)


def test_each_save_keeps_the_previous_checkpoint_and_load_latest_falls_back_to_it(tmp_path):
    first, _ = init_states(CFG, [0])
    second, _ = init_states(CFG, [1])
    path = str(tmp_path / "ckpt.msgpack")
    with pytest.raises(checkpoint.NoCheckpoint):
        checkpoint.load_latest(path, first)
    checkpoint.save(path, first, {"n": 1})
    checkpoint.save(path, second, {"n": 2})
    assert sorted(os.listdir(tmp_path)) == ["ckpt.msgpack", "ckpt.msgpack.prev"]
    _, meta, used, problems = checkpoint.load_latest(path, first)
    assert meta["n"] == 2 and used == path and not problems

    with open(path, "r+b") as f:  # damage the latest: the previous one stands in, and says why
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    restored, meta, used, problems = checkpoint.load_latest(path, second)
    assert meta["n"] == 1 and used == path + ".prev" and "checksum" in problems[0]
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(first)):
        np.testing.assert_array_equal(a, b)
    os.remove(path)  # as a kill between the two renames of a save leaves it
    assert checkpoint.load_latest(path, second)[1]["n"] == 1
    with open(path + ".prev", "r+b") as f:
        f.truncate(100)
    with pytest.raises(checkpoint.CheckpointDamaged, match=r"ckpt\.msgpack\.prev is corrupt"):
        checkpoint.load_latest(path, second)


def test_a_checkpoint_of_the_previous_format_without_checksum_still_loads(tmp_path):
    states, _ = init_states(CFG, [0])
    path = tmp_path / "v1.msgpack"
    path.write_bytes(flax.serialization.msgpack_serialize({
        "format": "rql_lite-checkpoint-v1",
        "metadata": json.dumps({"task": "t", "network": NETWORK_DEFINITION}),
        "states": jax.tree_util.tree_map(np.asarray, flax.serialization.to_state_dict(states))}))
    restored, meta = checkpoint.load(str(path), states)
    assert meta["task"] == "t"
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(states)):
        np.testing.assert_array_equal(a, b)


def _rewrite_metadata(path, drop_network=True, network=None):
    payload = flax.serialization.msgpack_restore(Path(path).read_bytes())
    meta = json.loads(payload["metadata"])
    meta.pop("network", None)
    if not drop_network:
        meta["network"] = network
    payload["metadata"] = json.dumps(meta, sort_keys=True)
    Path(path).write_bytes(flax.serialization.msgpack_serialize(payload))


def test_a_checkpoint_made_with_the_old_network_is_refused_by_name(tmp_path):
    config = AgentConfig(obs_dim=3, action_dim=2, horizon=2, policy_hidden=(8,), value_hidden=(8,), num_values=2)
    states, _ = init_states(config, [0])
    path = str(tmp_path / "ckpt.msgpack")
    checkpoint.save(path, states, {"task": "t"})
    checkpoint.load(path, states)  # this version's own file loads
    _rewrite_metadata(path)  # a file from before the definition was recorded: v1
    with pytest.raises(ValueError, match="another network definition.*LayerNorm -> GELU"):
        checkpoint.load(path, states)


def test_an_agent_exported_with_another_network_is_refused_by_name(tmp_path):
    config = AgentConfig(obs_dim=3, action_dim=2, horizon=2, policy_hidden=(8,), value_hidden=(8,), num_values=2)
    path = str(tmp_path / "agent.msgpack")
    checkpoint.save_agent(path, init_state(config, jax.random.PRNGKey(0)), {"task": "t"})
    checkpoint.load_agent(path)
    _rewrite_metadata(path, drop_network=False, network="v9: something else")
    with pytest.raises(ValueError, match="v9: something else"):
        checkpoint.load_agent(path)
