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

from rql_lite import losses
from rql_lite.agent import AgentConfig, policy_net, value_net, value_targets_at
from rql_lite.flow import euler, euler_path, interpolate, reverse_to_flow_times


def _velocity(config: AgentConfig, policy_params, obs):
    policy = policy_net(config)
    return lambda x, t: policy.apply(policy_params, obs, x, t)


def _grid(config: AgentConfig) -> jax.Array:
    return jnp.arange(config.flow_steps + 1) / config.flow_steps


@partial(jax.jit, static_argnums=0)
def _virtual_trajectory(config, policy_params, obs, actions):
    velocity = _velocity(config, policy_params, obs)
    # Grid point f = k/K is reached from the action exactly as the agent's reversal (agent.reverse_to)
    # reaches it, with the config's rule ("mixed": K steps of (1 - f)/K; "grid": K - k steps of 1/K).
    return jax.vmap(lambda f: reverse_to_flow_times(velocity, actions, f, config.flow_steps,
                                                    config.flow_time_mode))(_grid(config))


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


@partial(jax.jit, static_argnums=0)
def _policy_loss_points(config, policy_params, obs, actions, z, t):
    x_t = interpolate(z, actions, t[:, None])
    return losses.flow_step(policy_net(config).apply(policy_params, obs, x_t, t), x_t, t, config.flow_steps)


def policy_loss_points(config: AgentConfig, policy_params, obs, actions, z, t) -> tuple[np.ndarray, np.ndarray]:
    """Where the release-form policy loss reads the value (``policy_loss="release"``): one flow step
    ``(x_t + Delta v(s, x_t, t), t + Delta)`` from the flow-matching interpolant ``x_t = (1 - t) z + t a``
    of a dataset chunk ``a (B, D)`` and noise ``z (B, D)``, at flow times ``t (B,)``, which are continuous,
    so the value is read between the grid points. Returns ``(x (B, D), f (B,))`` as numpy."""
    x, f = _policy_loss_points(config, policy_params, jnp.asarray(obs), jnp.asarray(actions), jnp.asarray(z),
                               jnp.asarray(t, jnp.float32))
    return np.asarray(x), np.asarray(f)


# --------------------------------------------------------------------------- the round trip's cost


def _finish_on_grid(velocity, x, flow_time, num_steps: int):
    """From ``x`` at grid times ``f = k/K`` ``(B,)``, the ``K - k`` forward Euler steps of size ``1/K``
    that the policy itself takes from there (flow time k/K, ..., (K-1)/K). Returns ``x^1``, ``(B, D)``."""
    start = jnp.round(jnp.asarray(flow_time, x.dtype) * num_steps)[:, None]   # k, (B, 1)

    def step(x, i):
        t = jnp.full((x.shape[0], 1), i / num_steps, x.dtype)
        x_next = x + velocity(x, t) / num_steps
        return jnp.where(i >= start, x_next, x), None

    x, _ = jax.lax.scan(step, x, jnp.arange(num_steps, dtype=x.dtype))
    return x


def round_trip(velocity, actions, flow_steps: int, mode: str = "mixed"):
    """Reverse actions to every grid flow time, then let the flow finish them, as it would act.

    ``velocity(x, t)`` takes ``x ((K+1) * B, D)``: the actions are tiled over the ``K + 1`` grid
    times ``f = k/K`` (time-major), so a state-conditioned velocity must be built on observations
    tiled the same way (``np.tile(obs, (K + 1, 1))``). ``actions (B, D)`` sit at ``f = 1``.
    The reversal is the agent's: ``mode="mixed"`` (the release) takes K steps of size ``(1-f)/K``,
    ``"grid"`` (the paper) ``K - k`` steps of ``1/K``. The way back is always the policy's own
    sampling: ``K - k`` forward steps of ``1/K`` from ``(x^f, f)``.

    Returns ``(x_f, produced)``, each ``(K+1, B, D)``; ``produced[k]`` is the chunk the flow really
    makes from ``x^{k/K}`` (unclipped), ``produced[K]`` the action itself.
    """
    actions = jnp.asarray(actions)
    k1, (b, d) = flow_steps + 1, actions.shape
    f = jnp.repeat(jnp.arange(k1) / flow_steps, b).astype(actions.dtype)      # ((K+1) B,)
    a = jnp.tile(actions, (k1, 1))
    x_f = reverse_to_flow_times(velocity, a, f, flow_steps, mode)
    produced = _finish_on_grid(velocity, x_f, f, flow_steps)
    return x_f.reshape(k1, b, d), produced.reshape(k1, b, d)


def round_trip_cost(velocity, actions, value_of, flow_steps: int, mode: str = "mixed",
                    clip: float | None = 1.0) -> dict:
    """What reversal's round-trip miss does to RQL's target.

    RQL gives every reversed point ``(s, x^f, f)`` the target of the dataset action ``a`` it was
    reversed from. If the flow, started at ``x^f``, really produces ``a_hat != a``, the point is
    credited with ``Q(s, a)`` while acting from it earns ``Q(s, a_hat)``. ``value_of(actions (B, D))
    -> (B,)`` stands in for ``Q(s, .)``: a known reward on a toy, the learned ``V(s, ., 1)`` on a
    trained agent. Produced chunks are clipped to ``[-clip, clip]`` first, as the environment would
    (``None``: no clipping).

    Returns numpy arrays: ``flow_time (K+1,)``; ``miss (K+1, B)``, the distance ``|a_hat - a|``;
    ``assigned (B,)``, ``value_of(a)``; ``produced (K+1, B)``, ``value_of(a_hat)``; and ``bias (K+1, B)``,
    ``assigned - produced`` (positive: the target credits the point with more than it earns).
    """
    actions = jnp.asarray(actions)
    _, a_hat = round_trip(velocity, actions, flow_steps, mode)
    if clip is not None:
        a_hat = jnp.clip(a_hat, -clip, clip)
    b = actions.shape[0]
    assigned = np.asarray(value_of(actions))
    produced = np.asarray(value_of(a_hat.reshape((flow_steps + 1) * b, -1))).reshape(flow_steps + 1, b)
    return dict(flow_time=np.arange(flow_steps + 1) / flow_steps,
                miss=np.asarray(jnp.linalg.norm(a_hat - actions[None], axis=-1)),
                assigned=assigned, produced=produced, bias=assigned[None] - produced)


def agent_round_trip_cost(config: AgentConfig, policy_params, value_params, obs, actions) -> dict:
    """``round_trip_cost`` for a trained agent, with the agent's own reversal (``config.flow_time_mode``)
    and, for ``Q(s, .)``, its learned value of finished chunks, ``V(s, ., 1)`` (mean of heads).

    ``obs (B, obs_dim)``, ``actions (B, D)`` dataset chunks; ``policy_params``: the parameters whose
    reversal builds the training targets (the online policy). Returns ``round_trip_cost``'s dict.
    """
    obs = jnp.asarray(obs)
    k1 = config.flow_steps + 1
    velocity = _velocity(config, policy_params, jnp.tile(obs, (k1, 1)))

    def value_of(a):
        return values_at(config, value_params, jnp.tile(obs, (a.shape[0] // obs.shape[0], 1)), a, 1.0)

    return round_trip_cost(velocity, actions, value_of, config.flow_steps, config.flow_time_mode)
