"""Euler integration against analytic flows, per-sample times, and reversal of a learned flow."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rql_lite.flow import euler, euler_path, flow_matching_loss
from rql_lite.networks import VelocityField

# dx/dt = t * A x  has the solution  x(t1) = expm(A (t1^2 - t0^2) / 2) x(t0).
A = jnp.array([[-0.5, 1.0], [-1.0, -0.5]])


def field(x, t):
    return t * (x @ A.T)


def exact(x, t0, t1):
    from jax.scipy.linalg import expm

    return x @ expm(A * (t1**2 - t0**2) / 2.0).T


X0 = jnp.array([[1.0, 0.5], [-0.3, 0.8], [0.2, -1.2]])
KS = np.array([8, 16, 32, 64, 128, 256])


def loglog_slope(ks, errors):
    return np.polyfit(np.log(ks), np.log(errors), 1)[0]


def test_forward_error_shrinks_like_one_over_k():
    # float32 is enough: at K = 256 the Euler error (~1e-3) is far above rounding (~1e-7).
    errors = [float(jnp.max(jnp.abs(euler(field, X0, 0.0, 1.0, int(k)) - exact(X0, 0.0, 1.0)))) for k in KS]
    slope = loglog_slope(KS, errors)
    assert -1.1 < slope < -0.9, (slope, errors)


def test_reverse_after_forward_error_shrinks_like_one_over_k():
    errors = []
    for k in KS:
        x1 = euler(field, X0, 0.0, 1.0, int(k))
        back = euler(field, x1, 1.0, 0.0, int(k))  # reversal: the same call with t1 < t0
        errors.append(float(jnp.max(jnp.abs(back - X0))))
    slope = loglog_slope(KS, errors)
    assert -1.1 < slope < -0.9, (slope, errors)


def test_reversal_step_uses_velocity_at_the_current_later_time():
    # One reverse step from t=1 to t=0.5 must be x - 0.5 * v(x, 1), as the spec's reversal rule says.
    x = jnp.array([[1.0, 2.0]])
    got = euler(field, x, 1.0, 0.5, 1)
    np.testing.assert_allclose(got, x - 0.5 * field(x, jnp.ones((1, 1))), rtol=1e-6)


def test_per_sample_times_match_scalar_calls():
    t0 = jnp.array([0.0, 0.2, 1.0])
    t1 = jnp.array([1.0, 0.9, 0.3])  # the last sample integrates backward
    batched = euler(field, X0, t0, t1, 20)
    for i in range(3):
        single = euler(field, X0[i : i + 1], float(t0[i]), float(t1[i]), 20)
        np.testing.assert_allclose(batched[i], single[0], rtol=1e-5, atol=1e-6)


def test_path_ends_where_euler_ends_and_starts_at_x():
    path = euler_path(field, X0, 0.0, 1.0, 7)
    assert path.shape == (8, 3, 2)
    np.testing.assert_allclose(path[0], X0)
    np.testing.assert_allclose(path[-1], euler(field, X0, 0.0, 1.0, 7), rtol=1e-6)


def test_flow_matching_loss_is_zero_for_the_exact_straight_velocity():
    x0 = jax.random.normal(jax.random.PRNGKey(0), (16, 3))
    x1 = jax.random.normal(jax.random.PRNGKey(1), (16, 3))
    t = jax.random.uniform(jax.random.PRNGKey(2), (16,))
    # For a single pair the conditional target x1 - x0 is a valid velocity at every t.
    loss = flow_matching_loss(lambda x, tt: x1 - x0, x0, x1, t)
    assert float(loss) < 1e-12
    mask = jnp.zeros((16, 3)).at[:, 0].set(1.0)
    bad_in_masked = lambda x, tt: (x1 - x0).at[:, 1:].add(100.0)
    assert float(flow_matching_loss(bad_in_masked, x0, x1, t, mask)) < 1e-12
    assert float(flow_matching_loss(bad_in_masked, x0, x1, t)) > 1000.0


def two_gaussians(key, n):
    k1, k2 = jax.random.split(key)
    centers = jnp.array([[-1.5, 0.0], [1.5, 0.5]])
    return centers[jax.random.randint(k1, (n,), 0, 2)] + 0.15 * jax.random.normal(k2, (n, 2))


def test_reversal_of_a_learned_flow_recovers_noise_that_maps_back_to_the_data_point():
    net = VelocityField(action_dim=2, hidden_dims=(64, 64))
    params = net.init(jax.random.PRNGKey(0), None, jnp.zeros((1, 2)), jnp.zeros((1, 1)))
    opt = optax.adam(3e-3)

    def loss_fn(p, key):
        kx, kz, kt = jax.random.split(key, 3)
        x1 = two_gaussians(kx, 256)
        return flow_matching_loss(lambda x, t: net.apply(p, None, x, t), jax.random.normal(kz, x1.shape), x1,
                                  jax.random.uniform(kt, (256,)))

    @jax.jit
    def fit(params):
        def step(carry, key):
            p, s = carry
            loss, g = jax.value_and_grad(loss_fn)(p, key)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        (p, _), losses = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(jax.random.PRNGKey(1), 1500))
        return p, losses

    params, train_losses = fit(params)
    assert float(train_losses[-100:].mean()) < float(train_losses[:100].mean())

    v = lambda x, t: net.apply(params, None, x, t)
    data = two_gaussians(jax.random.PRNGKey(7), 64)
    gaps = {}
    for k in (10, 100, 400):
        noise = euler(v, data, 1.0, 0.0, k)
        gaps[k] = float(jnp.max(jnp.linalg.norm(euler(v, noise, 0.0, 1.0, k) - data, axis=1)))
    # Stated tolerance: with K = 400 steps each way, every point lands back within 0.02.
    assert gaps[400] < 0.02, gaps
    assert gaps[400] < gaps[10], gaps
    # The recovered noise looks like the prior: mean near 0, spread near 1.
    noise = euler(v, two_gaussians(jax.random.PRNGKey(8), 2048), 1.0, 0.0, 100)
    assert float(jnp.abs(noise.mean(0)).max()) < 0.2
    assert 0.7 < float(noise.std(0).mean()) < 1.3


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_step_count_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="num_steps"):
        euler(field, X0, 0.0, 1.0, bad)


def test_bad_time_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="flow times"):
        euler(field, X0, jnp.zeros(5), 1.0, 4)
