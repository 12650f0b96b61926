"""Fidelity to the authors' release and to the paper (see the book's Fidelity page).

1. The value network computes what the release's ``MLP`` computes: each hidden layer is
   Dense -> GELU -> LayerNorm. Checked against a NumPy forward pass written from that order.
2. In grid mode the reversed points are the points of the K-step path (the paper's reversal).
3. The analysis readers reverse with the agent's own rule.

Files made with the old network definition are refused by name: tests/runs/test_checkpoint.py. How
often the data rules where the two differ apply on a dataset: tests/ogbench/test_fidelity_counts.py.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rql_lite import networks
from rql_lite.agent import AgentConfig, init_state, policy_net, reverse_to
from rql_lite.analysis import virtual_trajectory
from rql_lite.flow import euler, euler_path, reverse_on_grid


def _gelu_tanh(x):
    # Flax's nn.gelu default (approximate=True), which the release uses too.
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def _layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def _release_order_mlp(p, x, num_hidden, layer_norm):
    """The release's MLP, layer by layer: Dense -> GELU -> LayerNorm for hidden layers, then Dense."""
    for i in range(num_hidden):
        x = x @ p[f"Dense_{i}"]["kernel"] + p[f"Dense_{i}"]["bias"]
        x = _gelu_tanh(x)
        if layer_norm:
            x = _layer_norm(x, p[f"LayerNorm_{i}"]["scale"], p[f"LayerNorm_{i}"]["bias"])
    last = p[f"Dense_{num_hidden}"]
    return x @ last["kernel"] + last["bias"]


def _randomise(params, key):
    """Random values in every leaf (LayerNorm scale/bias too, so a wrong order cannot hide)."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [jax.random.normal(k, leaf.shape, leaf.dtype) * 0.7 for k, leaf in zip(keys, leaves)])


@pytest.mark.parametrize("layer_norm", [True, False])
def test_value_ensemble_matches_a_numpy_forward_pass_in_the_release_order(layer_norm):
    hidden, heads, b = (16, 12, 8), 3, 5
    module = networks.ValueEnsemble(num_heads=heads, hidden_dims=hidden, layer_norm=layer_norm)
    k_obs, k_x, k_f, k_init, k_rand = jax.random.split(jax.random.PRNGKey(0), 5)
    obs, x, f = jax.random.normal(k_obs, (b, 4)), jax.random.normal(k_x, (b, 6)), jax.random.uniform(k_f, (b,))
    params = _randomise(module.init(k_init, obs, x, f), k_rand)
    got = np.asarray(module.apply(params, obs, x, f))
    assert got.shape == (heads, b)

    inputs = np.concatenate([np.asarray(obs), np.asarray(x), np.asarray(f)[:, None]], axis=-1).astype(np.float64)
    stacked = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params["params"])
    mlp = stacked[next(iter(stacked))]  # the vmapped MLP's parameters, each with a leading head axis
    for n in range(heads):
        head = jax.tree_util.tree_map(lambda a, n=n: a[n], mlp)
        want = _release_order_mlp(head, inputs, len(hidden), layer_norm)[:, 0]
        np.testing.assert_allclose(got[n], want, rtol=2e-4, atol=2e-4)


def test_the_old_layer_order_would_give_other_values():
    """The test above can fail: the v1 order (LayerNorm before GELU) computes something else."""
    hidden = (16, 12)
    module = networks.ValueEnsemble(num_heads=1, hidden_dims=hidden, layer_norm=True)
    obs, x, f = jnp.ones((4, 3)), jnp.linspace(-1, 1, 8).reshape(4, 2), jnp.full((4,), 0.3)
    params = _randomise(module.init(jax.random.PRNGKey(1), obs, x, f), jax.random.PRNGKey(2))
    head = jax.tree_util.tree_map(lambda a: np.asarray(a[0], np.float64), params["params"])
    head = head[next(iter(head))]
    inputs = np.concatenate([obs, x, f[:, None]], axis=-1).astype(np.float64)
    h = inputs
    for i in range(len(hidden)):
        h = h @ head[f"Dense_{i}"]["kernel"] + head[f"Dense_{i}"]["bias"]
        h = _gelu_tanh(_layer_norm(h, head[f"LayerNorm_{i}"]["scale"], head[f"LayerNorm_{i}"]["bias"]))
    old = (h @ head[f"Dense_{len(hidden)}"]["kernel"] + head[f"Dense_{len(hidden)}"]["bias"])[:, 0]
    got = np.asarray(module.apply(params, obs, x, f))[0]
    assert np.max(np.abs(got - old)) > 1e-2


def _velocity(x, t):
    # A nonlinear, time-dependent field, so that different step rules land in different places.
    return jnp.sin(2.0 * x) * (1.0 + t) - 0.5 * x * t


@pytest.mark.parametrize("K", [1, 4, 10])
def test_grid_reversal_lands_on_the_points_of_the_k_step_path(K):
    a = jax.random.normal(jax.random.PRNGKey(3), (K + 1, 3))  # one sample per grid time
    path = euler_path(_velocity, a, 1.0, 0.0, K)  # path[j] is the point at flow time 1 - j/K
    k = jnp.arange(K + 1)
    x = reverse_on_grid(_velocity, a, k / K, K)
    for i in range(K + 1):
        np.testing.assert_allclose(x[i], path[K - i, i], rtol=1e-6, atol=1e-6)


def test_grid_mode_of_the_agent_uses_the_path_and_mixed_mode_keeps_the_release_rule():
    config = AgentConfig(obs_dim=2, action_dim=2, horizon=1, flow_steps=5, policy_hidden=(16,), value_hidden=(8,),
                         num_values=2)
    state = init_state(config, jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (6, 2))
    actions = jax.random.normal(jax.random.PRNGKey(2), (6, 2))
    f = jnp.arange(6) / 5.0
    v = lambda x, t: policy_net(config).apply(state.policy_params, obs, x, t)  # noqa: E731
    grid = reverse_to(config.replace(flow_time_mode="grid"), state.policy_params, obs, actions, f)
    path = euler_path(v, actions, 1.0, 0.0, 5)
    for i in range(6):
        np.testing.assert_allclose(grid[i], path[5 - i, i], rtol=1e-5, atol=1e-6)
    mixed = reverse_to(config, state.policy_params, obs, actions, f)
    np.testing.assert_allclose(mixed, euler(v, actions, 1.0, f, 5), rtol=1e-6, atol=1e-6)
    # Between the end points the two rules put the points in different places.
    assert float(jnp.max(jnp.abs(mixed[1:5] - grid[1:5]))) > 1e-4


@pytest.mark.parametrize("mode", ["mixed", "grid"])
def test_the_analysis_readers_reverse_with_the_agents_own_rule(mode):
    """analysis.virtual_trajectory (chapters 3 and 6) must show the points the update trains on."""
    config = AgentConfig(obs_dim=2, action_dim=2, horizon=1, flow_steps=4, policy_hidden=(16,), value_hidden=(8,),
                         num_values=2, flow_time_mode=mode)
    state = init_state(config, jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (3, 2))
    actions = jax.random.normal(jax.random.PRNGKey(2), (3, 2))
    path = virtual_trajectory(config, state.policy_params, obs, actions)  # (K+1, B, D), f = k/K
    for k in range(5):
        want = reverse_to(config, state.policy_params, obs, actions, jnp.full((3,), k / 4))
        np.testing.assert_allclose(path[k], want, rtol=1e-5, atol=1e-6)
