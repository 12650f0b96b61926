"""FAWAC, advantage-weighted flow matching (AWAC's rule on a flow policy): imitate the data's
chunks, each weighted by how much better than average the critic finds it.

    L_pi = mean_b w_b * ||v(s, x_t, t) - (a - x0)||^2,   w_b = min(exp(inv_temperature * A_b), 100)
    A_b = mean_heads Q(s, a_b) - V(s)

The critic regresses on ``r + gamma^n m Q_bar(s', a')`` with ``a'`` drawn from the flow; ``V(s)``
regresses on the target critic's heads at the data's chunk. The weights only reweight the data: the
policy can move probability between the modes the data holds, never towards a better chunk the data
lacks, and the critic's slope (first-order information) is never used.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rql_lite.baselines import common
from rql_lite.flow import interpolate

MAX_WEIGHT = 100.0  # the weight's cap, as in IQL's and the reference implementations' advantage weighting


def init(config, key):
    return common.init_flow_critic_state_value(config, key)


def critic_params(value_params):
    return value_params["q"]


def draws(config, key, batch_size: int) -> dict:
    k_bc, k_next = jax.random.split(key)
    return {**common.bc_draws(config, k_bc, batch_size),
            "next_z": jax.random.normal(k_next, (batch_size, config.chunk_dim))}


def weights(config, value_params, obs, actions) -> jax.Array:
    """``min(exp(inv_temperature * (mean_heads Q(s, a) - V(s))), 100)``, ``(B,)``, no gradient."""
    q = jnp.mean(common.critic_net(config).apply(value_params["q"], obs, actions), axis=0)
    v = common.state_value_net(config).apply(value_params["v"], obs)
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(config.inv_temperature * (q - v)), MAX_WEIGHT))


def loss_at(config, params, target_params, batch: dict, d: dict):
    """FAWAC's loss on one batch: ``(total, info)``: the critic, ``V(s)`` and flow matching with each row
    weighted by ``weights`` (``(B,)``, capped at ``MAX_WEIGHT``).
    """
    obs, actions = batch["observations"], common.chunk_actions(config, batch)
    policy, value = params["policy"], params["value"]
    next_actions = common.flow_actions(config, jax.lax.stop_gradient(policy), batch["next_observations"], d["next_z"])
    target = common.bootstrap_target(config, target_params, batch, next_actions)
    q = common.critic_net(config).apply(value["q"], obs, actions)
    critic = common.critic_loss(q, target)
    # V(s) towards every target head's value of the data's chunk.
    q_bar = jax.lax.stop_gradient(common.critic_net(config).apply(target_params, obs, actions))
    v = common.state_value_net(config).apply(value["v"], obs)
    state_value_loss = jnp.mean(jnp.square(q_bar - v[None, :]))
    # Weighted flow matching.
    w = weights(config, jax.lax.stop_gradient(value), obs, actions)
    x_t = interpolate(d["x0"], actions, d["t"][:, None])
    v_t = common.flow_net(config).apply(policy, obs, x_t, d["t"])
    mask = common.chunk_mask(config, batch)
    err = jnp.square(v_t - (actions - d["x0"])) * mask
    weighted_bc = jnp.sum(w[:, None] * err) / jnp.maximum(jnp.sum(mask), 1.0)
    bc = jnp.sum(err) / jnp.maximum(jnp.sum(mask), 1.0)
    total = critic + state_value_loss + weighted_bc
    return total, {"total_loss": total, "value_loss": critic, "state_value_loss": state_value_loss,
                   "policy_loss": weighted_bc, "bc_loss": jax.lax.stop_gradient(bc), "weight_mean": jnp.mean(w),
                   "value_mean": jnp.mean(q), "target_mean": jnp.mean(target)}


def act_with(config, policy_params, value_params, obs, key):
    z = jax.random.normal(key, (obs.shape[0], config.chunk_dim))
    return common.flow_actions(config, policy_params, obs, z)
