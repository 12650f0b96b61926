"""FBRAC, behaviour-regularised actor-critic with a flow policy: backpropagate the critic's gradient
through all K Euler steps of the flow.

    L_pi = BC(v) - (1 / alpha) * mean_heads Q(s, flow(s, z))      (flow(s, z): K steps, differentiated)

The critic regresses on ``r + gamma^n m Q_bar(s', a')`` with ``a'`` drawn from the flow. The
gradient reaches the first step's parameters through the product of K Jacobians, so it can grow or
vanish with K: the instability the RQL paper names as the reason to avoid it. ``alpha`` weighs BC
against the critic as in the reference implementation (the critic term is divided by it).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rql_lite.baselines import common


def init(config, key):
    k_flow, k_q = jax.random.split(key)
    return common.init_flow(config, k_flow), common.init_critic(config, k_q)


def critic_params(value_params):
    return value_params


def draws(config, key, batch_size: int) -> dict:
    return common.actor_critic_draws(config, key, batch_size)


def loss_at(config, params, target_params, batch: dict, d: dict):
    """FBRAC's loss on one batch: ``(total, info)``: the critic, plus flow matching minus
    ``mean Q(s, flow(s, z)) / alpha`` with the gradient taken through every one of the K Euler steps.
    """
    obs = batch["observations"]
    policy, critic = params["policy"], params["value"]
    next_actions = common.flow_actions(config, jax.lax.stop_gradient(policy), batch["next_observations"], d["next_z"])
    target = common.bootstrap_target(config, target_params, batch, next_actions)
    q = common.critic_net(config).apply(critic, obs, common.chunk_actions(config, batch))
    value_loss = common.critic_loss(q, target)
    bc = common.bc_flow_loss(config, policy, batch, d["x0"], d["t"])
    actions = common.flow_actions(config, policy, obs, d["z"])  # the gradient runs back through all K steps
    q_pi = common.critic_net(config).apply(jax.lax.stop_gradient(critic), obs, actions)
    policy_loss = -jnp.mean(q_pi) / config.alpha
    total = value_loss + bc + policy_loss
    return total, {"total_loss": total, "value_loss": value_loss, "policy_loss": policy_loss, "bc_loss": bc,
                   "value_mean": jnp.mean(q), "target_mean": jnp.mean(target)}


def act_with(config, policy_params, value_params, obs, key):
    z = jax.random.normal(key, (obs.shape[0], config.chunk_dim))
    return common.flow_actions(config, policy_params, obs, z)
