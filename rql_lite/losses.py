"""Losses and value targets of RQL and TFQL, as pure functions of arrays.

Notation (the book's page "RQL on one page"): B batch, N ensemble heads, h chunk
length, K flow steps, f flow time in [0, 1] (0 = noise, 1 = complete action).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    """Elementwise ``|kappa - 1(u < 0)| * u^2`` for ``u = target - prediction``.

    ``expectile=0.5`` gives half the squared error (SARSA-like); larger values
    weight under-estimates more and approach the max of Q-learning.
    """
    weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
    return weight * jnp.square(diff)


def chunk_returns(
    rewards: jax.Array, masks: jax.Array, valid: jax.Array, discount: float
) -> tuple[jax.Array, jax.Array]:
    """Discounted reward of an h-step action chunk and the discount of its bootstrap.

    Args:
      rewards: ``(B, h)`` reward of each step of the chunk.
      masks: ``(B, h)`` 0 where the step ends in a true terminal (no bootstrap past it).
      valid: ``(B, h)`` 0 for chunk entries past the end of the episode (padding).
      discount: gamma.

    Returns:
      A pair ``(returns, bootstrap)``, each ``(B,)``. ``returns`` is ``sum_i gamma^i r_i``
      over steps that are valid and not after a terminal; ``bootstrap`` is ``gamma^n * m``,
      where n is the number of valid steps (h for a full chunk) and m is 0 if a terminal
      was reached. The value target is ``returns + bootstrap * V(s_next)``.
    """
    h = rewards.shape[-1]
    valid = valid.astype(rewards.dtype)
    masks = masks.astype(rewards.dtype)
    # alive_i: no terminal strictly before step i.
    alive = jnp.cumprod(jnp.concatenate([jnp.ones_like(masks[:, :1]), masks[:, :-1]], axis=1), axis=1)
    powers = discount ** jnp.arange(h, dtype=rewards.dtype)
    returns = jnp.sum(powers * rewards * valid * alive, axis=1)
    n_valid = jnp.sum(valid, axis=1)
    reached_terminal = jnp.min(jnp.where(valid > 0, masks, 1.0), axis=1)
    bootstrap = (discount**n_valid) * reached_terminal
    return returns, bootstrap


def aggregate_ensemble(values: jax.Array, pessimism: float) -> jax.Array:
    """Pessimistic ensemble value ``mean - rho * std`` over the head axis: ``(N, B) -> (B,)``.

    ``std`` is the population standard deviation of the N heads (divided by N, not N - 1), as in the
    release (``jnp.std``'s default).
    """
    return jnp.mean(values, axis=0) - pessimism * jnp.std(values, axis=0)


def sample_flow_times(key: jax.Array, batch_size: int, flow_steps: int, mode: str = "mixed") -> jax.Array:
    """Flow times ``f = 1 - d`` at which to place reversed points, ``(B,)``.

    ``mode="mixed"`` (the release): d ~ U(0, 1) for the first half of the batch and
    d uniform on the grid {0, 1/K, ..., 1} for the second half.
    ``mode="grid"`` (the paper): every d on the grid.
    """
    k_cont, k_grid = jax.random.split(key)
    grid = jax.random.randint(k_grid, (batch_size,), 0, flow_steps + 1) / flow_steps
    if mode == "grid":
        d = grid
    elif mode == "mixed":
        cont = jax.random.uniform(k_cont, (batch_size,))
        d = jnp.where(jnp.arange(batch_size) < batch_size // 2, cont, grid)
    else:
        raise ValueError(f"flow-time mode must be 'mixed' or 'grid', got {mode!r}")
    return 1.0 - d


def rql_value_target(returns: jax.Array, bootstrap: jax.Array, next_value: jax.Array) -> jax.Array:
    """RQL's multi-step target, the same for every flow time of the virtual trajectory.

    ``y = sum_i gamma^i r_i + gamma^h m agg V_bar(s_{t+h}, z, 0)``; all ``(B,)``.
    """
    return returns + bootstrap * next_value


def tfql_value_target(
    flow_time: jax.Array,
    returns: jax.Array,
    bootstrap: jax.Array,
    next_env_value: jax.Array,
    next_flow_value: jax.Array,
) -> jax.Array:
    """TFQL's one-step target along the expanded MDP, ``(B,)``.

    At ``f = 1`` (a complete action) the environment target as in RQL; for ``f < 1``
    the target value of the next flow state, ``agg V_bar(s, x^{f+Delta}, f+Delta)`` with
    ``Delta = min(1/K, 1 - f)`` (``flow_step``: a flow time off the grid k/K reaches 1 in a
    shorter last step), with no reward and no discount.
    """
    env_target = rql_value_target(returns, bootstrap, next_env_value)
    return jnp.where(flow_time >= 1.0, env_target, next_flow_value)


def value_loss(values: jax.Array, target: jax.Array, expectile: float) -> jax.Array:
    """Expectile regression of every head to the same target: ``(N, B), (B,) -> scalar``."""
    return jnp.mean(expectile_loss(target[None, :] - values, expectile))


def flow_step(velocity_out: jax.Array, x: jax.Array, t: jax.Array, flow_steps: int) -> tuple[jax.Array, jax.Array]:
    """One expanded-MDP step from ``(x, t)``: ``Delta = min(1/K, 1 - t)``; ``(B, D), (B,)``.

    Returns ``(x + Delta * v, t + Delta)``; ``velocity_out`` is ``v(s, x, t)``.
    """
    delta = jnp.minimum(1.0 / flow_steps, 1.0 - t)
    return x + delta[:, None] * velocity_out, jnp.minimum(t + delta, 1.0)
