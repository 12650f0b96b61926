"""AgentConfig.matmul_precision: validated, recorded, compiled into every network product, bit-identical
to the old networks by default, and absent from older files (which load and resume as "default")."""
import json
import re

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rql_lite import networks
from rql_lite.agent import (AgentConfig, _act, _update_jit, act, complete_config_dict, config_dict, init_state,
                            policy_net, value_net)
from rql_lite.configs import paper_benchmark_config
from rql_lite.data import from_arrays, sample_chunks
from rql_lite.networks import MATMUL_PRECISIONS, bf16_matmul
from rql_lite.runs import checkpoint
from rql_lite.train import init_states, run_updates_jit, seed_keys

SMOKE = paper_benchmark_config("smoke")
TINY = AgentConfig(obs_dim=3, action_dim=2, horizon=2, policy_hidden=(8,), value_hidden=(8,), num_values=2,
                   batch_size=4, flow_steps=3)


def test_the_field_defaults_to_the_release_behaviour_and_is_validated():
    assert TINY.matmul_precision == "default"
    assert MATMUL_PRECISIONS == ("default", "float32", "tensorfloat32", "bfloat16")
    for value in MATMUL_PRECISIONS:
        assert TINY.replace(matmul_precision=value).matmul_precision == value
    with pytest.raises(ValueError, match="matmul_precision must be one of .*'default'.*'bfloat16'"):
        TINY.replace(matmul_precision="fp16")


def test_a_config_without_the_field_loads_as_default():
    stored = config_dict(TINY)
    assert stored["matmul_precision"] == "default"  # recorded in run.json, checkpoints and records
    del stored["matmul_precision"]  # as written before the field existed
    assert AgentConfig(**stored).matmul_precision == "default"
    assert complete_config_dict(stored) == config_dict(TINY)
    assert complete_config_dict({**stored, "matmul_precision": "bfloat16"})["matmul_precision"] == "bfloat16"


def test_an_older_checkpoint_without_the_field_is_accepted_as_this_run_and_an_older_agent_file_acts(tmp_path):
    states, _ = init_states(TINY, [0])
    old = config_dict(TINY)
    del old["matmul_precision"]
    path = str(tmp_path / "ckpt.msgpack")
    checkpoint.save(path, states, {"config": old, "step": 0})
    _, meta = checkpoint.load(path, states, expected={"config": config_dict(TINY)})
    assert "matmul_precision" not in meta["config"]
    with pytest.raises(ValueError, match="its config"):  # another precision is another run
        checkpoint.load(path, states, expected={"config": config_dict(TINY.replace(matmul_precision="bfloat16"))})

    agent_path = str(tmp_path / "agent.msgpack")
    checkpoint.save_agent(agent_path, init_state(TINY, jax.random.PRNGKey(0)), {"task": "t"})
    with open(agent_path, "rb") as f:
        payload = flax.serialization.msgpack_restore(f.read())
    metadata = json.loads(payload["metadata"])
    del metadata["config"]["matmul_precision"]
    payload["metadata"] = json.dumps(metadata)
    with open(agent_path, "wb") as f:
        f.write(flax.serialization.msgpack_serialize(payload))
    state, _ = checkpoint.load_agent(agent_path)
    assert state.config.matmul_precision == "default"


def _dot_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "stablehlo.dot_general" in line]


def _lowered_update_and_act(config):
    state = init_state(config, jax.random.PRNGKey(0))
    batch = sample_chunks(_dataset(config), jax.random.PRNGKey(1), config.batch_size, config.horizon)
    update = _update_jit.lower(state, batch, jax.random.PRNGKey(2)).as_text()
    act = _act.lower(state, jnp.zeros((3, config.obs_dim)), jax.random.PRNGKey(3)).as_text()
    return update, act


def _dataset(config, size=200, episode_length=50):
    rng = np.random.default_rng(0)
    return from_arrays(rng.normal(size=(size, config.obs_dim)), rng.uniform(-1, 1, size=(size, config.action_dim)),
                       rng.normal(size=size), (np.arange(size) % episode_length) == episode_length - 1)


@pytest.mark.parametrize("precision,expected", [("default", "DEFAULT"), ("float32", "HIGHEST"),
                                                ("tensorfloat32", "HIGH")])
def test_the_precision_reaches_every_product_of_the_update_and_of_acting(precision, expected):
    for text in _lowered_update_and_act(TINY.replace(matmul_precision=precision)):
        dots = _dot_lines(text)
        assert dots, "no products found"
        for line in dots:
            assert f"precision = [{expected}, {expected}]" in line, line
            assert "bf16" not in line


def test_bfloat16_rounds_the_operands_of_every_product_on_cpu():
    # XLA:CPU has no bfloat16 x bfloat16 -> float32 loop-level product, so the operands are rounded to
    # bfloat16 and widened back: every product reads two converts from bfloat16.
    assert jax.default_backend() == "cpu"
    for text in _lowered_update_and_act(TINY.replace(matmul_precision="bfloat16")):
        dots = _dot_lines(text)
        widened = re.findall(r"stablehlo\.convert %\S+ : \(tensor<[0-9x]*bf16>\) -> tensor<[0-9x]*f32>", text)
        assert dots and len(widened) >= 2 * len(dots), (len(dots), len(widened))
        for line in dots:
            assert "precision = [HIGHEST, HIGHEST]" in line  # the widened products are exact sums


def test_bfloat16_and_tensorfloat32_on_gpu_lower_to_the_named_products(monkeypatch):
    """Lowered for CUDA from this CPU machine: bfloat16 operands with float32 results, and the
    TF32_TF32_F32 algorithm. The GPU itself measures what they cost."""
    x = jnp.ones((4, 6))
    params = networks.MLP((), 3).init(jax.random.PRNGKey(0), x)  # on this CPU, before pretending
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    for precision, pattern in (("bfloat16", r"stablehlo.dot_general .*xbf16>, tensor<[0-9x]*xbf16>\) -> tensor<[0-9x]*xf32>"),
                               ("tensorfloat32", r"stablehlo.dot_general .*algorithm = <lhs_precision_type = tf32, "
                                                 r"rhs_precision_type = tf32, accumulation_type = f32")):
        dense = networks.MLP((), 3, matmul_precision=precision)
        f = jax.jit(jax.value_and_grad(lambda p, a, m=dense: jnp.sum(m.apply(p, a) ** 2), argnums=(0, 1)))
        text = jax.export.export(f, platforms=["cuda"])(params, x).mlir_module()
        assert len(re.findall(pattern, text)) == 3, precision  # the forward product and both backward ones


def test_parameters_and_the_default_path_are_unchanged():
    # Checksums of the smoke networks made before the field existed (same key, same inputs).
    state = init_state(SMOKE, jax.random.PRNGKey(0))
    policy_sum = sum(np.abs(np.asarray(leaf, np.float64)).sum() for leaf in jax.tree_util.tree_leaves(state.policy_params))
    value_sum = sum(np.abs(np.asarray(leaf, np.float64)).sum() for leaf in jax.tree_util.tree_leaves(state.value_params))
    assert policy_sum == pytest.approx(1104.9739946112422, rel=1e-12)
    assert value_sum == pytest.approx(2063.3408287665497, rel=1e-12)
    obs = jax.random.normal(jax.random.PRNGKey(1), (8, SMOKE.obs_dim))
    x = jax.random.normal(jax.random.PRNGKey(2), (8, SMOKE.chunk_dim))
    t = jnp.linspace(0, 1, 8)[:, None]
    out = {}
    for precision in MATMUL_PRECISIONS:
        cfg = SMOKE.replace(matmul_precision=precision)
        other = init_state(cfg, jax.random.PRNGKey(0))
        for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(other)):
            np.testing.assert_array_equal(a, b)  # the same parameters whatever the precision
        out[precision] = (np.asarray(policy_net(cfg).apply(state.policy_params, obs, x, t)),
                          np.asarray(value_net(cfg).apply(state.value_params, obs, x, t[:, 0])))
    assert np.asarray(out["default"][0], np.float64).sum() == pytest.approx(8.449674653587863, rel=1e-5)
    assert np.asarray(out["default"][1], np.float64).sum() == pytest.approx(-8.97496297955513, rel=1e-5)
    for precision in ("float32", "tensorfloat32"):  # XLA:CPU computes these in float32: the same program
        for a, b in zip(out["default"], out[precision]):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(out["default"], out["bfloat16"]):
        assert 1e-4 < np.abs(a - b).max() < 0.1  # rounded, not broken


def test_bf16_matmul_is_bfloat16_operands_with_float32_sums_forward_and_backward():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    x, w, g = jax.random.normal(k1, (2, 32, 64)), jax.random.normal(k2, (64, 16)), jax.random.normal(k3, (2, 32, 16))

    def rounded(a):
        return np.asarray(jnp.asarray(a).astype(jnp.bfloat16).astype(jnp.float32), np.float64)

    y, vjp = jax.vjp(bf16_matmul, x, w)
    dx, dw = vjp(g)
    np.testing.assert_allclose(y, rounded(x) @ rounded(w), atol=1e-4)
    np.testing.assert_allclose(dx, rounded(g) @ rounded(w).T, atol=1e-4)
    np.testing.assert_allclose(dw, np.einsum("bik,bin->kn", rounded(x), rounded(g)), atol=1e-4)
    assert np.abs(np.asarray(y) - np.asarray(x, np.float64) @ np.asarray(w, np.float64)).max() > 1e-3
    assert y.dtype == dx.dtype == dw.dtype == jnp.float32


def test_a_bfloat16_agent_trains_and_acts():
    cfg = TINY.replace(matmul_precision="bfloat16")
    init_key, run_key = seed_keys(0)
    state, metrics = run_updates_jit(init_state(cfg, init_key), _dataset(cfg), run_key, 0, 3)
    assert int(state.step) == 3 and all(np.isfinite(float(v)) for v in metrics.values())
    assert state.policy_params["params"]["MLP_0"]["Dense_0"]["kernel"].dtype == jnp.float32
    chunk = act(state, np.zeros(cfg.obs_dim), jax.random.PRNGKey(0))
    assert chunk.shape == (cfg.horizon, cfg.action_dim) and np.all(np.isfinite(chunk))
