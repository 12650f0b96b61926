"""BC flow: flow matching on the dataset's action chunks, no value at all.

The floor every offline-RL method must clear: it imitates the data's mix of behaviours. Loss
``mean ||v(s, x_t, t) - (a - x0)||^2`` (``common.bc_flow_loss``); acting integrates the flow.
"""
from __future__ import annotations

import jax

from rql_lite.baselines import common


def init(config, key):
    """``(policy_params, value_params)``: the flow, and no value."""
    return common.init_flow(config, key), {}


def critic_params(value_params):
    return {}


def draws(config, key, batch_size: int) -> dict:
    return common.bc_draws(config, key, batch_size)


def loss_at(config, params, target_params, batch: dict, d: dict):
    bc = common.bc_flow_loss(config, params["policy"], batch, d["x0"], d["t"])
    zero = 0.0 * bc
    return bc, {"total_loss": bc, "value_loss": zero, "policy_loss": zero, "bc_loss": bc}


def act_with(config, policy_params, value_params, obs, key):
    z = jax.random.normal(key, (obs.shape[0], config.chunk_dim))
    return common.flow_actions(config, policy_params, obs, z)
