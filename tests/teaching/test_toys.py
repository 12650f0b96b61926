"""Tests for rql_lite.teaching.toys: samplers, the toy flow trainer and the sliced Wasserstein metric."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rql_lite.flow import euler
from rql_lite.teaching.toys import TOY_NAMES, gaussian_flow, sample_toy, sliced_wasserstein, train_toy_flow


@pytest.mark.parametrize("name", TOY_NAMES)
def test_sample_shapes_and_determinism(name):
    x = sample_toy(name, jax.random.PRNGKey(0), 1000)
    assert x.shape == (1000, 2) and x.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(x)))
    assert np.array_equal(np.asarray(x), np.asarray(sample_toy(name, jax.random.PRNGKey(0), 1000)))
    assert not np.array_equal(np.asarray(x), np.asarray(sample_toy(name, jax.random.PRNGKey(1), 1000)))
    assert float(jnp.max(jnp.abs(x))) < 3.5  # all toys fit in the prior's range


def test_samplers_have_their_structure():
    key = jax.random.PRNGKey(3)
    g = np.asarray(sample_toy("eight_gaussians", key, 4000))
    radius = np.linalg.norm(g, axis=1)
    assert abs(np.median(radius) - 2.0) < 0.05
    c = np.asarray(sample_toy("checkerboard", key, 4000))
    cells = np.floor(c + 2.0).astype(int)  # only cells with even (row + col) parity are filled
    assert np.all((cells[:, 0] + cells[:, 1]) % 2 == 0)
    with pytest.raises(ValueError):
        sample_toy("spiral", key, 10)


def test_sliced_wasserstein_properties():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(k1, (2000, 2))
    y = jax.random.normal(k2, (2000, 2))
    assert float(sliced_wasserstein(x, x, k3)) == pytest.approx(0.0, abs=1e-6)
    same = float(sliced_wasserstein(x, y, k3))
    shifted = float(sliced_wasserstein(x, y + jnp.array([1.0, 0.0]), k3))
    assert same < 0.1 < shifted
    # a shift by a vector of length 1: the sliced W2 is the RMS of its projections, 1/sqrt(2) in 2-D
    assert shifted == pytest.approx(2**-0.5, abs=0.1)


def test_gaussian_flow_solution_matches_fine_euler():
    velocity, solution = gaussian_flow()
    x0 = jax.random.normal(jax.random.PRNGKey(0), (256, 2))
    exact = solution(x0, 1.0)
    err_fine = float(jnp.max(jnp.abs(euler(velocity, x0, 0.0, 1.0, 512) - exact)))
    err_coarse = float(jnp.max(jnp.abs(euler(velocity, x0, 0.0, 1.0, 4) - exact)))
    assert err_fine < 5e-3 < err_coarse


def test_trained_toy_flow_lowers_loss_and_beats_the_prior():
    flow = train_toy_flow("eight_gaussians", jax.random.PRNGKey(0), steps=400, hidden=(64, 64), batch=256)
    assert flow.losses.shape == (400,)
    assert flow.losses[-50:].mean() < 0.85 * flow.losses[:50].mean()
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    data = sample_toy("eight_gaussians", keys[0], 2000)
    noise = jax.random.normal(keys[1], (2000, 2))
    samples = euler(flow.velocity, noise, 0.0, 1.0, 16)
    assert samples.shape == (2000, 2)
    d_flow = float(sliced_wasserstein(samples, data, keys[2]))
    d_prior = float(sliced_wasserstein(noise, data, keys[2]))
    assert d_flow < 0.5 * d_prior


def test_off_support_counts_what_lies_off_each_toys_shape():
    import numpy as np

    from rql_lite.teaching.toys import TOY_NAMES, off_support, off_support_fraction

    for name in TOY_NAMES:
        data = sample_toy(name, jax.random.PRNGKey(1), 20_000)
        assert off_support_fraction(name, data) < 0.02, name          # the data itself: about 1% or none
        assert off_support_fraction(name, 3 * data) > 0.5, name       # stretched: mostly off
    # The checkerboard: black squares are those whose row and column have the same parity.
    points = np.array([[-1.5, -1.5], [-0.5, -1.5], [0.5, 0.5], [2.5, 0.0]], np.float32)
    assert off_support("checkerboard", points).tolist() == [False, True, False, True]
    # The moons: the top of the upper arc is on it, a point below both arcs is not.
    on_arc = 1.4 * (np.array([[0.0, 1.0]], np.float32) - np.array([0.5, 0.25], np.float32))
    below = 1.4 * (np.array([[0.0, -1.0]], np.float32) - np.array([0.5, 0.25], np.float32))
    assert not off_support("two_moons", on_arc)[0] and off_support("two_moons", below)[0]
