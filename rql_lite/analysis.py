"""Reading a trained agent: virtual trajectories, values and targets along them.

The chapters use these to *look* at what RQL learns, on toys and on OGBench alike.
Every function calls the library's own pieces (``euler``, the networks,
``agent.value_targets_at``); none of the update math is written again here.

Shapes: ``B`` batch, ``K`` flow steps (``config.flow_steps``), ``D = h * d`` the
chunk size the policy emits (``config.chunk_dim``). Index ``k`` of a ``(K+1, ...)``
array is flow time ``f = k / K``: ``k = 0`` is noise, ``k = K`` the action.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from rql_lite.agent import AgentConfig, policy_net, value_net, value_targets_at
from rql_lite.flow import euler, euler_path


def _velocity(config: AgentConfig, policy_params, obs):
    policy = policy_net(config)
    return lambda x, t: policy.apply(policy_params, obs, x, t)


def _grid(config: AgentConfig) -> jax.Array:
    return jnp.arange(config.flow_steps + 1) / config.flow_steps


@partial(jax.jit, static_argnums=0)
def _virtual_trajectory(config, policy_params, obs, actions):
    velocity = _velocity(config, policy_params, obs)
    # Grid point f = k/K is reached from the action by K Euler steps of size (1 - f)/K,
    # exactly as the agent's reversal (agent.reverse_to) does it.
    return jax.vmap(lambda f: euler(velocity, actions, 1.0, f, config.flow_steps))(_grid(config))


def virtual_trajectory(config: AgentConfig, policy_params, obs, actions) -> np.ndarray:
    """Reverse dataset actions to every grid flow time with the agent's reversal.

    ``obs (B, obs_dim)``, ``actions (B, D)`` -> ``(K+1, B, D)``; index ``K`` is the action itself.
    """
    return np.asarray(_virtual_trajectory(config, policy_params, jnp.asarray(obs), jnp.asarray(actions)))


@partial(jax.jit, static_argnums=0)
def _values_on_grid(config, policy_params, value_params, obs, actions):
    xs = _virtual_trajectory(config, policy_params, obs, actions)
    value = value_net(config)
    b = obs.shape[0]
    return jax.vmap(lambda x, f: jnp.mean(value.apply(value_params, obs, x, jnp.full((b,), f)), axis=0))(xs, _grid(config))


def values_on_grid(config: AgentConfig, policy_params, value_params, obs, actions) -> np.ndarray:
    """Mean-over-heads ``V(s, x^f, f)`` at every grid point of each action's virtual trajectory.

    ``obs (B, obs_dim)``, ``actions (B, D)`` -> ``(K+1, B)``.
    """
    return np.asarray(_values_on_grid(config, policy_params, value_params, jnp.asarray(obs), jnp.asarray(actions)))


def _both_targets(config, policy_params, target_params, batch, flow_time, z):
    rql = value_targets_at(config, policy_params, target_params, batch, flow_time, z, agent="rql")["target"]
    tfql = value_targets_at(config, policy_params, target_params, batch, flow_time, z, agent="tfql")["target"]
    return rql, tfql


_both_targets_jit = jax.jit(_both_targets, static_argnums=0)


def targets_at(config: AgentConfig, policy_params, target_params, batch: dict, flow_time, z):
    """RQL's and TFQL's value targets for each batch chunk reversed to ``flow_time (B,)``.

    Both come from ``agent.value_targets_at``, the function the update itself uses, with the
    next-step noise ``z (B, D)`` given instead of drawn. ``batch`` as from
    ``rql_lite.data.sample_chunks``. Returns ``(rql, tfql)``, each ``(B,)`` numpy.
    """
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    rql, tfql = _both_targets_jit(config, policy_params, target_params, batch,
                                  jnp.asarray(flow_time, jnp.float32), jnp.asarray(z))
    return np.asarray(rql), np.asarray(tfql)


@partial(jax.jit, static_argnums=0)
def _targets_on_grid(config, policy_params, target_params, batch, z):
    b = batch["observations"].shape[0]
    return jax.vmap(lambda f: _both_targets(config, policy_params, target_params, batch, jnp.full((b,), f), z))(
        _grid(config))


def targets_on_grid(config: AgentConfig, policy_params, target_params, batch: dict, z):
    """``targets_at`` at every grid point ``f = k/K`` of each chunk's virtual trajectory, with one
    shared next-step noise ``z (B, D)``. Returns ``(rql, tfql)``, each ``(K+1, B)`` numpy."""
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    rql, tfql = _targets_on_grid(config, policy_params, target_params, batch, jnp.asarray(z))
    return np.asarray(rql), np.asarray(tfql)


@partial(jax.jit, static_argnums=(0, 5))
def _flow_forward(config, policy_params, obs, x, f, num_steps):
    return euler(_velocity(config, policy_params, obs), x, f, 1.0, num_steps)


def flow_forward(config: AgentConfig, policy_params, obs, x, f, num_steps: int | None = None) -> np.ndarray:
    """Finish partial actions: integrate the policy from ``(x, f)`` to ``f = 1`` with ``euler``.

    ``obs (B, obs_dim)``, ``x (B, D)``, ``f`` scalar or ``(B,)`` -> unclipped actions ``(B, D)``.
    ``num_steps`` defaults to ``round(K (1 - f))`` for a scalar ``f`` (the steps left on the grid).
    """
    if num_steps is None:
        num_steps = max(1, int(round(config.flow_steps * (1.0 - float(f)))))
    return np.asarray(_flow_forward(config, policy_params, jnp.asarray(obs), jnp.asarray(x),
                                    jnp.asarray(f, jnp.float32), num_steps))


@partial(jax.jit, static_argnums=0)
def _flow_path(config, policy_params, obs, z):
    return euler_path(_velocity(config, policy_params, obs), z, 0.0, 1.0, config.flow_steps)


def flow_path(config: AgentConfig, policy_params, obs, z) -> np.ndarray:
    """The policy's forward flow from noise ``z (B, D)`` at ``obs (B, obs_dim)``, every Euler point
    kept: ``(K+1, B, D)``; index ``k`` is the partial action at ``f = k/K``."""
    return np.asarray(_flow_path(config, policy_params, jnp.asarray(obs), jnp.asarray(z)))


@partial(jax.jit, static_argnums=0)
def _values_at(config, value_params, obs, x, f):
    return jnp.mean(value_net(config).apply(value_params, obs, x, f), axis=0)


def values_at(config: AgentConfig, value_params, obs, x, f) -> np.ndarray:
    """Mean-over-heads ``V(s, x, f)``: ``obs (B, obs_dim)``, ``x (B, D)``, ``f`` scalar or ``(B,)``
    -> ``(B,)`` numpy."""
    x = jnp.asarray(x)
    f = jnp.broadcast_to(jnp.asarray(f, jnp.float32), (x.shape[0],))
    return np.asarray(_values_at(config, value_params, jnp.asarray(obs), x, f))
