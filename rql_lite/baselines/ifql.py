"""IFQL, implicit flow Q-learning (the flow version of IDQL): learn values without a policy in the
loop, then act by rejection sampling.

Values come from IQL's in-sample recipe: a state value ``V(s)`` is the ``expectile`` (kappa) of the
target critic over the data's chunks, ``E[|kappa - 1(u < 0)| u^2]`` with ``u = Q_bar(s, a) - V(s)``,
and the critic regresses on ``r + gamma^n m V(s')``. The flow only imitates the data. Acting draws
``num_samples`` (N) chunks from the flow and keeps the one whose worst critic head scores highest.
The critic is queried only on finished chunks (zeroth-order: no gradient reaches the policy), and
every action costs N full flow integrations.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rql_lite import losses
from rql_lite.baselines import common


def init(config, key):
    return common.init_flow_critic_state_value(config, key)


def critic_params(value_params):
    return value_params["q"]


def draws(config, key, batch_size: int) -> dict:
    return common.bc_draws(config, key, batch_size)


def loss_at(config, params, target_params, batch: dict, d: dict):
    """IFQL's loss on one batch: ``(total, info)``.

    ``params = {"policy": flow, "value": {"q", "v"}}``. ``V(s)`` is the ``expectile`` of the target
    critic at the data's chunk (an implicit, in-sample maximum), ``Q`` regresses on the chunk's return
    plus ``V`` of the next state, and the flow is trained by behaviour cloning alone: the value acts only
    through ``act_with``'s choice among ``num_samples`` flow samples.
    """
    obs, actions = batch["observations"], common.chunk_actions(config, batch)
    value = params["value"]
    # V(s): the expectile of the target critic's pessimistic value of the data's chunk.
    q_bar = losses.aggregate_ensemble(common.critic_net(config).apply(target_params, obs, actions), config.pessimism)
    v = common.state_value_net(config).apply(value["v"], obs)
    state_value_loss = jnp.mean(losses.expectile_loss(jax.lax.stop_gradient(q_bar) - v, config.expectile))
    # Q(s, a): one step of the environment, then V of the next state (no gradient through V there).
    returns, bootstrap = losses.chunk_returns(batch["rewards"], batch["masks"], batch["valid"], config.discount)
    next_v = jax.lax.stop_gradient(common.state_value_net(config).apply(value["v"], batch["next_observations"]))
    target = returns + bootstrap * next_v
    q = common.critic_net(config).apply(value["q"], obs, actions)
    critic = common.critic_loss(q, target)
    bc = common.bc_flow_loss(config, params["policy"], batch, d["x0"], d["t"])
    total = state_value_loss + critic + bc
    zero = 0.0 * bc
    return total, {"total_loss": total, "value_loss": critic, "state_value_loss": state_value_loss,
                   "policy_loss": zero, "bc_loss": bc, "value_mean": jnp.mean(q), "target_mean": jnp.mean(target)}


def act_with(config, policy_params, value_params, obs, key):
    """Best of ``num_samples`` flow samples per observation by the critic's lowest head: ``(B, D)``."""
    b, n = obs.shape[0], config.num_samples
    z = jax.random.normal(key, (n, b, config.chunk_dim))
    candidates = jax.vmap(lambda zi: common.flow_actions(config, policy_params, obs, zi))(z)  # (n, B, D)
    scores = jax.vmap(lambda a: jnp.min(common.critic_net(config).apply(value_params["q"], obs, a), axis=0))(
        candidates)  # (n, B)
    best = jnp.argmax(scores, axis=0)  # (B,)
    return jnp.take_along_axis(candidates, best[None, :, None], axis=0)[0]
