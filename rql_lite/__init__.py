"""rql_lite: Reversal Q-Learning (RQL) and its ablation TFQL in a few pure JAX functions.

Modules: ``flow`` (Euler integration, flow matching), ``networks``, ``losses``,
``agent`` (state, update, act), ``data`` (on-device chunk sampler), ``train``
(scan/vmap loop), ``configs`` (the paper's hyperparameters).
"""
from rql_lite.agent import AgentConfig, TrainState, act, init_state, update
from rql_lite.flow import euler, euler_path, flow_matching_loss

__version__ = "0.1.0"

__all__ = ["AgentConfig", "TrainState", "act", "init_state", "update", "euler", "euler_path", "flow_matching_loss"]
