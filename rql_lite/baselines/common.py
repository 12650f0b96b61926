"""What the flow-RL baselines share: their networks, a flow sampler, the critic's bootstrap target,
and the behaviour-cloning flow-matching loss.

The four baselines of the RQL paper's comparison (FQL, IFQL, FAWAC, FBRAC) score complete action
chunks with an ordinary critic ``Q(s, a)``: an ensemble of ``num_values`` heads, its target copy
moved by Polyak averaging (``tau``), read pessimistically as ``mean - rho * std`` over the heads,
exactly as RQL reads its value over partial actions. The rewards of a chunk and the discount of its
bootstrap come from ``losses.chunk_returns``, the same code RQL uses, so the methods differ only in
what the papers say they differ in. Shapes: ``B`` batch, ``N`` heads, ``D = h * action_dim``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rql_lite import losses
from rql_lite.flow import euler, interpolate
from rql_lite.networks import CriticEnsemble, OneStepPolicy, StateValue, VelocityField


def flow_net(config) -> VelocityField:
    return VelocityField(action_dim=config.chunk_dim, hidden_dims=config.policy_hidden,
                         matmul_precision=config.matmul_precision)


def critic_net(config) -> CriticEnsemble:
    return CriticEnsemble(num_heads=config.num_values, hidden_dims=config.value_hidden,
                          layer_norm=config.value_layer_norm, matmul_precision=config.matmul_precision)


def state_value_net(config) -> StateValue:
    return StateValue(hidden_dims=config.value_hidden, layer_norm=config.value_layer_norm,
                      matmul_precision=config.matmul_precision)


def onestep_net(config) -> OneStepPolicy:
    return OneStepPolicy(action_dim=config.chunk_dim, hidden_dims=config.policy_hidden,
                         matmul_precision=config.matmul_precision)


def init_flow(config, key):
    return flow_net(config).init(key, jnp.zeros((1, config.obs_dim)), jnp.zeros((1, config.chunk_dim)),
                                 jnp.zeros((1, 1)))


def init_critic(config, key):
    return critic_net(config).init(key, jnp.zeros((1, config.obs_dim)), jnp.zeros((1, config.chunk_dim)))


def init_state_value(config, key):
    return state_value_net(config).init(key, jnp.zeros((1, config.obs_dim)))


def flow_actions(config, flow_params, obs: jax.Array, z: jax.Array) -> jax.Array:
    """K Euler steps of the flow from noise ``z (B, D)`` at t = 0 to t = 1, clipped to [-1, 1]: ``(B, D)``.

    Differentiable in ``flow_params`` through every step (FBRAC backpropagates through it)."""
    velocity = lambda x, t: flow_net(config).apply(flow_params, obs, x, t)  # noqa: E731
    return jnp.clip(euler(velocity, z, 0.0, 1.0, config.flow_steps), -1.0, 1.0)


def chunk_actions(config, batch: dict) -> jax.Array:
    """The dataset's action chunks flattened to ``(B, D)``."""
    return batch["actions"].reshape(batch["actions"].shape[0], config.chunk_dim)


def chunk_mask(config, batch: dict) -> jax.Array:
    """``(B, D)``: 1 for chunk entries inside the episode, 0 past its end (as RQL's BC loss)."""
    return jnp.repeat(batch["valid"], config.action_dim, axis=1)


def bootstrap_target(config, target_critic_params, batch: dict, next_actions: jax.Array) -> jax.Array:
    """``y = sum_i gamma^i r_i + gamma^n m * (mean - rho std)_heads Q_bar(s', a')``, ``(B,)``, no gradient.

    ``next_actions (B, D)``: the chunk the method's policy takes at ``s' = next_observations``."""
    returns, bootstrap = losses.chunk_returns(batch["rewards"], batch["masks"], batch["valid"], config.discount)
    next_q = critic_net(config).apply(target_critic_params, batch["next_observations"], next_actions)
    return jax.lax.stop_gradient(returns + bootstrap * losses.aggregate_ensemble(next_q, config.pessimism))


def critic_loss(q: jax.Array, target: jax.Array) -> jax.Array:
    """Squared error of every head to one target: ``(N, B), (B,) -> scalar``."""
    return jnp.mean(jnp.square(q - target[None, :]))


def bc_flow_loss(config, flow_params, batch: dict, x0: jax.Array, t: jax.Array) -> jax.Array:
    """Flow matching on the dataset's chunks: ``mean ||v(s, x_t, t) - (a - x0)||^2`` over kept entries.

    ``x0 (B, D)`` noise, ``t (B,)`` times; ``x_t = (1 - t) x0 + t a``."""
    actions = chunk_actions(config, batch)
    x_t = interpolate(x0, actions, t[:, None])
    v_t = flow_net(config).apply(flow_params, batch["observations"], x_t, t)
    mask = chunk_mask(config, batch)
    return jnp.sum(jnp.square(v_t - (actions - x0)) * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def bc_draws(config, key: jax.Array, batch_size: int) -> dict:
    """The noise ``x0 (B, D)`` and times ``t (B,)`` of the flow-matching loss."""
    k_x0, k_t = jax.random.split(key)
    return {"x0": jax.random.normal(k_x0, (batch_size, config.chunk_dim)),
            "t": jax.random.uniform(k_t, (batch_size,))}


def actor_critic_draws(config, key: jax.Array, batch_size: int) -> dict:
    """``bc_draws`` plus the noise of the next chunk ``next_z (B, D)`` and of the policy's own chunk
    ``z (B, D)``: what FQL and FBRAC draw each step."""
    k_bc, k_next, k_z = jax.random.split(key, 3)
    return {**bc_draws(config, k_bc, batch_size),
            "next_z": jax.random.normal(k_next, (batch_size, config.chunk_dim)),
            "z": jax.random.normal(k_z, (batch_size, config.chunk_dim))}


def init_flow_critic_state_value(config, key: jax.Array):
    """``(flow, {"q": critic, "v": state value})``: the parameters of IFQL and FAWAC."""
    k_flow, k_q, k_v = jax.random.split(key, 3)
    return init_flow(config, k_flow), {"q": init_critic(config, k_q), "v": init_state_value(config, k_v)}
