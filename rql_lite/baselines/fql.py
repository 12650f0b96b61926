"""FQL, flow Q-learning (Park, Li and Levine, 2025): distil the flow into a one-step policy and train
that one on the value.

Three networks learn together. The flow ``v(s, x, t)`` only imitates the data (flow matching). A
one-step policy ``mu(s, z)`` maps noise straight to an action chunk; it is pulled towards the
flow's K-step action from the same noise (distillation, weight ``distill_weight``) and up the critic:

    L_pi = BC(v) + distill_weight * ||mu(s, z) - flow(s, z)||^2 - mean_heads Q(s, clip(mu(s, z)))

The critic regresses on ``r + gamma^n m Q_bar(s', mu(s', z'))``. Acting calls ``mu`` once. So the
value's gradient never passes through the K flow steps (FBRAC's problem), but the one-step policy
can keep only what one network call can express of the flow's modes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rql_lite.baselines import common


def init(config, key):
    k_flow, k_one, k_q = jax.random.split(key, 3)
    policy = {"flow": common.init_flow(config, k_flow),
              "onestep": common.onestep_net(config).init(k_one, jnp.zeros((1, config.obs_dim)),
                                                         jnp.zeros((1, config.chunk_dim)))}
    return policy, common.init_critic(config, k_q)


def critic_params(value_params):
    return value_params


def draws(config, key, batch_size: int) -> dict:
    return common.actor_critic_draws(config, key, batch_size)


def onestep_actions(config, onestep_params, obs, z):
    """``clip(mu(s, z), -1, 1)``, ``(B, D)``."""
    return jnp.clip(common.onestep_net(config).apply(onestep_params, obs, z), -1.0, 1.0)


def loss_at(config, params, target_params, batch: dict, d: dict):
    """FQL's loss on one batch: ``(total, info)``.

    ``params = {"policy": {"flow", "onestep"}, "value": critic}``; ``batch`` as ``agent.batch_shapes``
    gives it (``B`` rows); ``d`` holds this step's noise (``draws``: ``x0, t, z, next_z``). The critic
    bootstraps from the one-step policy's next chunk; the flow imitates the data; the one-step policy
    is pulled towards the frozen flow's action (``distill_weight``) and up the frozen critic.
    """
    obs = batch["observations"]
    policy, critic = params["policy"], params["value"]
    frozen_policy = jax.lax.stop_gradient(policy)
    # Critic: the one-step policy's next chunk, scored by the target critic.
    next_actions = onestep_actions(config, frozen_policy["onestep"], batch["next_observations"], d["next_z"])
    target = common.bootstrap_target(config, target_params, batch, next_actions)
    q = common.critic_net(config).apply(critic, obs, common.chunk_actions(config, batch))
    value_loss = common.critic_loss(q, target)
    # Actor: imitate (flow), distil (one step towards the frozen flow's action), improve (frozen critic).
    bc = common.bc_flow_loss(config, policy["flow"], batch, d["x0"], d["t"])
    teacher = common.flow_actions(config, frozen_policy["flow"], obs, d["z"])
    student = common.onestep_net(config).apply(policy["onestep"], obs, d["z"])
    distill = jnp.mean(jnp.square(student - teacher))
    q_pi = common.critic_net(config).apply(jax.lax.stop_gradient(critic), obs, jnp.clip(student, -1.0, 1.0))
    policy_loss = -jnp.mean(q_pi)
    total = value_loss + bc + config.distill_weight * distill + policy_loss
    return total, {"total_loss": total, "value_loss": value_loss, "policy_loss": policy_loss, "bc_loss": bc,
                   "distill_loss": distill, "value_mean": jnp.mean(q), "target_mean": jnp.mean(target)}


def act_with(config, policy_params, value_params, obs, key):
    """The one-step policy's chunk for each observation, ``(B, D)``: one network call, no flow steps."""
    z = jax.random.normal(key, (obs.shape[0], config.chunk_dim))
    return onestep_actions(config, policy_params["onestep"], obs, z)
