"""rql_lite: Reversal Q-Learning (RQL) and its ablation TFQL in a few pure JAX functions.

The core is flat at the top of the package and imports only JAX, Flax, Optax and NumPy:
``flow`` (Euler integration and reversal, flow matching), ``networks``, ``losses``, ``agent``
(config, train state, one pure update, acting), ``train`` (``lax.scan`` loop, many runs in one
program), ``data`` (the on-device chunk sampler), ``configs`` (the paper's hyperparameters and the
task names), ``analysis`` (virtual trajectories of a trained agent) and ``checks`` (argument checks).

Beside it, each layer a subpackage that may import only the layers below it: ``rql_lite.files``
(atomic writes, hashes, provenance; nothing of the package), ``rql_lite.teaching`` (the chapters'
toys, plots, widgets and live figures; the core only), ``rql_lite.ogbench`` (datasets, generation,
evaluation, videos; core and files), ``rql_lite.runs`` (run spec and directory, records,
checkpoints, the experiment loop, reports; core, files, ogbench), ``rql_lite.bench`` (throughput,
precision, evaluation speed) and the command line ``rql_lite.cli`` (``python -m rql_lite``).
Importing ``rql_lite`` imports the core only.
"""
from rql_lite.agent import AgentConfig, TrainState, act, config_dict, init_state, update
from rql_lite.configs import agent_config
from rql_lite.data import ChunkDataset, from_arrays, from_dict, sample_chunks
from rql_lite.flow import euler, euler_path, flow_matching_loss
from rql_lite.train import unstack  # not train.train: the name stays the module's (``from rql_lite import train``)

__version__ = "0.1.0"

__all__ = ["AgentConfig", "TrainState", "act", "config_dict", "init_state", "update", "agent_config", "ChunkDataset",
           "from_arrays", "from_dict", "sample_chunks", "euler", "euler_path", "flow_matching_loss", "unstack"]
