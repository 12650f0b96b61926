"""The OGBench side: datasets, their generation with OGBench's oracles, evaluation, videos, fidelity counts.

Modules: ``datasets`` (``load_ogbench``: the official download, generated files or a path, checked),
``generate`` (the manipulation play datasets regenerated with OGBench's scripted oracles),
``evaluate`` (rollouts of trained agents: ``evaluate_many`` and its one-slot case ``evaluate``),
``env_workers`` (the envs, in JAX-free worker processes), ``videos`` (``write_video``,
``show_video``) and ``fidelity`` (how often the rules where ``rql_lite`` and the authors' release
differ apply on a dataset).

This layer imports the core and ``rql_lite.files``. OGBench, gymnasium and MuJoCo are imported
only when an env or a dataset is made, so importing it costs no more than the core.
"""
from rql_lite.ogbench import datasets, env_workers, evaluate, fidelity, generate, videos

__all__ = ["datasets", "env_workers", "evaluate", "fidelity", "generate", "videos"]
