"""2-D toy distributions, a tiny unconditional flow trainer, and a distance between clouds.

Used by the first chapters, where a "flow policy" has no observation: it maps 2-D
Gaussian noise to a 2-D distribution. Everything here is a pure JAX function of a
PRNG key, so results are reproducible bit for bit on one machine.

- :func:`sample_toy` ``(name, key, n) -> (n, 2)``: eight Gaussians, two moons, checkerboard
  (all scaled to lie roughly in ``[-2.5, 2.5]^2``, the range of the standard normal prior).
- :func:`train_toy_flow`: flow matching with :func:`rql_lite.flow.flow_matching_loss`, the whole
  training loop one jitted ``lax.scan``.
- :func:`sliced_wasserstein`: the distance used to measure sample quality.
- :func:`off_support_fraction`: the share of samples outside a toy's support, which sees what the
  distance averages away (the checkerboard's blurred squares).
- :func:`gaussian_flow`: an analytic velocity field with a known solution (for error curves).
- ``euler_jit``, ``euler_path_jit``: :func:`rql_lite.flow.euler` and :func:`rql_lite.flow.euler_path`
  jitted for a fixed velocity function and step count (the figures integrate many clouds).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rql_lite.flow import euler, euler_path, flow_matching_loss
from rql_lite.networks import VelocityField

# Jitted integrators: the velocity callable and the step count are static (hashable).
euler_jit = jax.jit(euler, static_argnums=(0, 4))
euler_path_jit = jax.jit(euler_path, static_argnums=(0, 4))

TOY_NAMES = ("eight_gaussians", "two_moons", "checkerboard")


def _eight_gaussians(key: jax.Array, n: int) -> jax.Array:
    """Eight modes on a circle of radius 2, each an isotropic Gaussian with std 0.15."""
    k1, k2 = jax.random.split(key)
    mode = jax.random.randint(k1, (n,), 0, 8)
    angle = mode.astype(jnp.float32) * (jnp.pi / 4)
    centers = 2.0 * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
    return centers + 0.15 * jax.random.normal(k2, (n, 2))


def _two_moons(key: jax.Array, n: int) -> jax.Array:
    """Two interleaved half circles (radius 1), centred, scaled by 1.4, noise std 0.07."""
    k1, k2, k3 = jax.random.split(key, 3)
    theta = jax.random.uniform(k1, (n,), minval=0.0, maxval=jnp.pi)
    upper = jax.random.bernoulli(k2, 0.5, (n,))[:, None]
    a = jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)
    b = jnp.stack([1.0 - jnp.cos(theta), 0.5 - jnp.sin(theta)], axis=-1)
    x = jnp.where(upper, a, b) - jnp.array([0.5, 0.25])
    return 1.4 * x + 0.07 * jax.random.normal(k3, (n, 2))


def _checkerboard(key: jax.Array, n: int) -> jax.Array:
    """Uniform on the 8 "black" cells of a 4 x 4 board covering ``[-2, 2]^2``."""
    k1, k2, k3 = jax.random.split(key, 3)
    x = jax.random.uniform(k1, (n,), minval=-2.0, maxval=2.0)
    col = jnp.floor(x + 2.0).astype(jnp.int32)  # 0..3
    row = 2 * jax.random.randint(k2, (n,), 0, 2) + (col % 2)  # rows with the parity of col
    y = row.astype(jnp.float32) - 2.0 + jax.random.uniform(k3, (n,))
    return jnp.stack([x, y], axis=-1)


_SAMPLERS = {"eight_gaussians": _eight_gaussians, "two_moons": _two_moons, "checkerboard": _checkerboard}


def sample_toy(name: str, key: jax.Array, n: int) -> jax.Array:
    """Draw ``n`` points from the toy distribution ``name`` (one of ``TOY_NAMES``).

    Args:
      name: ``"eight_gaussians"``, ``"two_moons"`` or ``"checkerboard"``.
      key: a JAX PRNG key; the same key gives the same points.
      n: number of samples (a Python int; static under ``jit``).

    Returns:
      ``(n, 2)`` float32 array.
    """
    if name not in _SAMPLERS:
        raise ValueError(f"unknown toy {name!r}; choose one of {TOY_NAMES}")
    return _SAMPLERS[name](key, int(n)).astype(jnp.float32)


class ToyFlow(NamedTuple):
    """Result of :func:`train_toy_flow`.

    ``params``: Flax parameters of a ``VelocityField(2, hidden)``; ``velocity``: a jitted pure
    callable ``(x (B, 2), t (B, 1) or (B,)) -> (B, 2)`` closing over them (hashable, so it can be
    a static argument of ``jax.jit``); ``losses``: ``(steps,)`` training losses.
    """

    params: dict
    velocity: Callable[[jax.Array, jax.Array], jax.Array]
    losses: np.ndarray


def make_velocity(params, hidden: Sequence[int] = (128, 128, 128)) -> Callable:
    """A jitted ``(x, t) -> v`` for an unconditional ``VelocityField(2, hidden)`` with ``params``."""
    model = VelocityField(2, tuple(hidden))
    return jax.jit(lambda x, t: model.apply(params, None, x, t))


def train_toy_flow(name: str, key: jax.Array, steps: int, hidden: Sequence[int] = (128, 128, 128),
                   batch: int = 512, lr: float = 2e-3) -> ToyFlow:
    """Fit an unconditional flow from ``N(0, I)`` to the toy ``name`` by flow matching.

    Each step draws a fresh batch (``batch`` data points, as many noise points, flow times
    ``t ~ U[0, 1]``) and takes one Adam step (cosine-decayed learning rate from ``lr``) on
    :func:`rql_lite.flow.flow_matching_loss`. All ``steps`` run inside one jitted
    ``lax.scan``: one compilation, one dispatch.

    Returns a ``ToyFlow`` ``(params, velocity, losses)``.
    """
    hidden = tuple(int(h) for h in hidden)
    model = VelocityField(2, hidden)
    k_init, k_train = jax.random.split(key)
    params = model.init(k_init, None, jnp.zeros((1, 2)), jnp.zeros((1, 1)))
    tx = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.05))
    opt_state = tx.init(params)

    def loss_fn(p, x0, x1, t):
        return flow_matching_loss(lambda x, tt: model.apply(p, None, x, tt), x0, x1, t)

    def step(carry, k):
        p, s = carry
        k_data, k_noise, k_t = jax.random.split(k, 3)
        x1 = sample_toy(name, k_data, batch)
        x0 = jax.random.normal(k_noise, (batch, 2))
        t = jax.random.uniform(k_t, (batch,))
        loss, grads = jax.value_and_grad(loss_fn)(p, x0, x1, t)
        updates, s = tx.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), loss

    @jax.jit
    def run(p, s, k):
        (p, s), losses = jax.lax.scan(step, (p, s), jax.random.split(k, steps))
        return p, losses

    params, losses = run(params, opt_state, k_train)
    return ToyFlow(params, make_velocity(params, hidden), np.asarray(losses))


def sliced_wasserstein(x: jax.Array, y: jax.Array, key: jax.Array, num_projections: int = 256) -> jax.Array:
    """Sliced 2-Wasserstein distance between two equal-size clouds ``x``, ``y`` of shape ``(n, d)``.

    Projects both clouds on ``num_projections`` random unit directions; in one dimension the
    optimal transport pairs sorted values, so ``W2^2`` along a direction is the mean squared
    difference of the sorted projections. Returns ``sqrt(mean over directions of W2^2)``, in
    the units of the data. With finite samples it has a floor above zero even for two samples of
    the same distribution (measure it with two independent data draws).
    """
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
    dirs = jax.random.normal(key, (num_projections, x.shape[1]))
    dirs = dirs / jnp.linalg.norm(dirs, axis=1, keepdims=True)
    px = jnp.sort(x @ dirs.T, axis=0)
    py = jnp.sort(y @ dirs.T, axis=0)
    return jnp.sqrt(jnp.mean(jnp.square(px - py)))


# How far from a toy's ideal shape a sample may lie and still count as on its support: three standard
# deviations of the toy's noise (eight Gaussians: std 0.15; two moons: 0.07); the checkerboard has none.
SUPPORT_MARGIN = {"eight_gaussians": 3 * 0.15, "two_moons": 3 * 0.07, "checkerboard": 0.0}


def _distance_to_arc(q, centre, upper: bool):
    """Distance from points ``q (n, 2)`` to the half circle of radius 1 around ``centre``, above
    (``upper``) or below its centre, end points included."""
    d = q - jnp.asarray(centre)
    on_side = d[:, 1] >= 0 if upper else d[:, 1] <= 0
    to_circle = jnp.abs(jnp.linalg.norm(d, axis=1) - 1.0)
    ends = jnp.asarray(centre) + jnp.array([[1.0, 0.0], [-1.0, 0.0]])
    to_ends = jnp.min(jnp.linalg.norm(q[:, None] - ends[None], axis=2), axis=1)
    return jnp.where(on_side, to_circle, to_ends)


def off_support(name: str, x) -> jax.Array:
    """Whether each point of ``x (n, 2)`` lies off the support of toy ``name``: farther than
    ``SUPPORT_MARGIN[name]`` from the toy's ideal shape (the eight mode centres; the two arcs), or, for
    the checkerboard, outside its eight black squares. Returns a boolean ``(n,)`` array."""
    x = jnp.asarray(x, jnp.float32)
    if name == "eight_gaussians":
        angle = jnp.arange(8) * (jnp.pi / 4)
        centres = 2.0 * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
        dist = jnp.min(jnp.linalg.norm(x[:, None] - centres[None], axis=2), axis=1)
    elif name == "two_moons":
        q = x / 1.4 + jnp.array([0.5, 0.25])  # back to the unit half circles
        dist = 1.4 * jnp.minimum(_distance_to_arc(q, (0.0, 0.0), True), _distance_to_arc(q, (1.0, 0.5), False))
    elif name == "checkerboard":
        col, row = jnp.floor(x[:, 0] + 2.0), jnp.floor(x[:, 1] + 2.0)
        inside = (jnp.abs(x) < 2.0).all(axis=1)
        return ~(inside & (jnp.mod(row, 2) == jnp.mod(col, 2)))
    else:
        raise ValueError(f"unknown toy {name!r}; choose from {TOY_NAMES}")
    return dist > SUPPORT_MARGIN[name]


def off_support_fraction(name: str, x) -> float:
    """The share of the points of ``x (n, 2)`` off the support of toy ``name`` (``off_support``)."""
    return float(jnp.mean(off_support(name, x)))


def gaussian_flow(mean: Sequence[float] = (1.0, -0.5), std: float = 0.5):
    """The exact flow-matching velocity from ``N(0, I)`` to ``N(mean, std^2 I)`` and its solution.

    With the straight-line path ``x_t = (1 - t) x0 + t x1`` and independent noise and data,
    ``x_t ~ N(t * mean, s_t^2 I)`` with ``s_t = sqrt((1 - t)^2 + t^2 std^2)``, and the marginal
    velocity is ``v(x, t) = mean + (s_t' / s_t) (x - t * mean)``. Its ODE solution from ``x0`` is
    ``x(t) = t * mean + s_t * x0``, known in closed form, so Euler errors can be measured exactly.

    Returns ``(velocity, solution)``: ``velocity(x (B, 2), t (B, 1)) -> (B, 2)`` and
    ``solution(x0 (B, 2), t) -> (B, 2)`` (``t`` a scalar).
    """
    mu = jnp.asarray(mean, dtype=jnp.float32)
    var = float(std) ** 2

    def s(t):
        return jnp.sqrt((1.0 - t) ** 2 + t**2 * var)

    def velocity(x, t):
        t = jnp.reshape(t, (-1, 1))
        ds = (-(1.0 - t) + t * var) / s(t)
        return mu + ds / s(t) * (x - t * mu)

    def solution(x0, t):
        return t * mu + s(t) * x0

    return velocity, solution
