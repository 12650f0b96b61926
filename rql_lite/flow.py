"""Flow integration and the flow-matching loss.

One Euler integrator serves both directions: sampling runs flow time forward
(``t0=0 -> t1=1``), reversal runs it backward (``t0=1 -> t1<1``) with a negative
step. In both cases the velocity is evaluated at the *current* time of each step,
which for reversal is the later time, as RQL's reversal rule requires.

Shapes: ``x`` is ``(batch, dim)``; ``velocity(x, t)`` gets ``t`` of shape
``(batch, 1)`` and returns an array shaped like ``x``.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from rql_lite import checks

Velocity = Callable[[jax.Array, jax.Array], jax.Array]


def _check_steps(num_steps) -> int:
    """The step count as a Python ``int`` (a static loop length)."""
    return checks.check_int(num_steps, "num_steps", 1, hint="the number of Euler steps K")


def _times(x: jax.Array, t) -> jax.Array:
    """Broadcast a scalar or ``(batch,)`` time to ``(batch, 1)``."""
    t = jnp.asarray(t, dtype=x.dtype)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim not in (0, 1) or (t.ndim == 1 and t.shape[0] != x.shape[0]):
        raise ValueError(
            f"flow times must be scalars or arrays of shape (batch,) = ({x.shape[0]},), got shape {t.shape}"
        )
    return jnp.broadcast_to(t, (x.shape[0],))[:, None]


def _start_and_step(x: jax.Array, t0, t1, num_steps) -> tuple[jax.Array, jax.Array]:
    """Validated ``(t0, dt)``, each ``(B, 1)``, for ``num_steps`` equal steps from ``t0`` to ``t1``."""
    num_steps = _check_steps(num_steps)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (batch, dim), got {x.shape}")
    t0 = _times(x, t0)
    return t0, (_times(x, t1) - t0) / num_steps


def euler_path(velocity: Velocity, x: jax.Array, t0, t1, num_steps: int) -> jax.Array:
    """Integrate ``dx/dt = velocity(x, t)`` from ``t0`` to ``t1`` and keep every point.

    Args:
      velocity: pure callable ``(x (B, D), t (B, 1)) -> (B, D)``.
      x: state at ``t0``, shape ``(B, D)``.
      t0: start time, a scalar or a ``(B,)`` array.
      t1: end time, likewise; ``t1 < t0`` integrates backward (reversal).
      num_steps: number of equal Euler steps (a Python int, at least 1).

    Returns:
      ``(num_steps + 1, B, D)``: the state at ``t0``, after each step, ending at ``t1``.
    """
    t0, dt = _start_and_step(x, t0, t1, num_steps)

    def step(x, i):
        x_next = x + dt * velocity(x, t0 + i * dt)
        return x_next, x_next

    _, path = jax.lax.scan(step, x, jnp.arange(num_steps, dtype=x.dtype))
    return jnp.concatenate([x[None], path], axis=0)


def euler(velocity: Velocity, x: jax.Array, t0, t1, num_steps: int) -> jax.Array:
    """Integrate ``dx/dt = velocity(x, t)`` from ``t0`` to ``t1`` with Euler; return x at ``t1``.

    ``t1 > t0`` samples (noise at 0 to data at 1); ``t1 < t0`` reverses the flow.
    ``x``: ``(B, D)``; ``t0``, ``t1``: scalars or ``(B,)``. Returns ``(B, D)``.
    """
    t0, dt = _start_and_step(x, t0, t1, num_steps)

    def step(x, i):
        return x + dt * velocity(x, t0 + i * dt), None

    x, _ = jax.lax.scan(step, x, jnp.arange(num_steps, dtype=x.dtype))
    return x


def reverse_on_grid(velocity: Velocity, x: jax.Array, flow_time: jax.Array, num_steps: int) -> jax.Array:
    """Reverse from ``x`` at flow time 1 to grid times ``f = k/K`` along the K-step path (the paper's rule).

    Each sample takes ``K - k`` backward Euler steps of the same size ``1/K``, so the point it
    reaches is exactly the ``k``-th point of the K-step reverse path ``euler_path(velocity, x, 1, 0, K)``
    (read from noise to data). Contrast ``euler(velocity, x, 1, f, K)``, the release's rule for any
    ``f``: K steps of size ``(1 - f)/K``, which lands elsewhere for ``f < 1``.

    ``x``: ``(B, D)`` at f = 1; ``flow_time``: ``(B,)``, meant to lie on the grid {0, 1/K, ..., 1}. A time off
    the grid is rounded to the nearest grid point (``k = round(f K)``, halves to even as ``jnp.round`` does),
    and a time outside [0, 1] takes 0 or K backward steps (the loop runs at most K steps, at least none).
    Returns ``x^f``, ``(B, D)``.
    """
    t0, dt = _start_and_step(x, 1.0, 0.0, num_steps)
    steps_needed = num_steps - jnp.round(_times(x, flow_time) * num_steps)  # (B, 1)

    def step(x, i):
        x_next = x + dt * velocity(x, t0 + i * dt)
        return jnp.where(i < steps_needed, x_next, x), None

    x, _ = jax.lax.scan(step, x, jnp.arange(num_steps, dtype=x.dtype))
    return x


def reverse_to_flow_times(velocity: Velocity, x: jax.Array, flow_time: jax.Array, num_steps: int,
                          mode: str = "mixed") -> jax.Array:
    """Reverse from ``x`` at flow time 1 to ``flow_time`` ``(B,)`` with RQL's rule ``mode``.

    ``"mixed"`` (the release): ``K`` steps of size ``(1 - f)/K`` for any f (``euler`` backwards).
    ``"grid"`` (the paper): ``K - k`` steps of size ``1/K`` to ``f = k/K`` (``reverse_on_grid``).
    ``x``: ``(B, D)``. Returns ``x^f``, ``(B, D)``.
    """
    if mode == "grid":
        return reverse_on_grid(velocity, x, flow_time, num_steps)
    if mode == "mixed":
        return euler(velocity, x, 1.0, flow_time, num_steps)
    raise ValueError(f"flow-time mode must be 'mixed' or 'grid', got {mode!r}")


def interpolate(x0: jax.Array, x1: jax.Array, t: jax.Array) -> jax.Array:
    """Straight-line probability path ``x_t = (1 - t) x0 + t x1``; ``t`` is ``(B, 1)``."""
    return (1.0 - t) * x0 + t * x1


def flow_matching_loss(
    velocity: Velocity,
    x0: jax.Array,
    x1: jax.Array,
    t: jax.Array,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Conditional flow-matching loss ``E || v(x_t, t) - (x1 - x0) ||^2``.

    Args:
      velocity: ``(x (B, D), t (B, 1)) -> (B, D)``.
      x0: noise, ``(B, D)``. x1: data (dataset actions), ``(B, D)``.
      t: flow times in [0, 1], ``(B,)`` or ``(B, 1)``.
      mask: optional weights broadcastable to ``(B, D)`` (1 keeps an entry, 0 drops it),
        e.g. chunk entries past an episode end. The loss is the mean over kept entries.

    Returns: a scalar.
    """
    t = _times(x0, t)
    return velocity_regression_loss(velocity(interpolate(x0, x1, t), t), x0, x1, mask)


def velocity_regression_loss(predicted: jax.Array, x0: jax.Array, x1: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean squared gap between a predicted velocity and the straight-path target ``x1 - x0``.

    ``predicted``, ``x0``, ``x1``: ``(B, D)``; ``mask`` broadcastable to ``(B, D)``. The mean is
    over kept entries. Split out of ``flow_matching_loss`` for callers that reuse ``predicted``.
    """
    err = jnp.square(predicted - (x1 - x0))
    if mask is None:
        return jnp.mean(err)
    mask = jnp.broadcast_to(mask, err.shape).astype(err.dtype)
    return jnp.sum(err * mask) / jnp.maximum(jnp.sum(mask), 1.0)
