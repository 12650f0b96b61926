"""Runs: what a training run is, where it lives, what it records, and the tables built from records.

Modules: ``spec`` (``RunSpec``: a run's settings, checked before anything is read or written),
``rundir`` (the run directory: its files, its lock, reading a run back), ``records`` (one result
file per (task, seed): schema, writer and reader), ``checkpoint`` (states and agent files, written
atomically, checked when read), ``experiment`` (``run``: the training loop of one run, in
time-limited segments if asked) and ``report`` (results tables from records, beside the published
baselines). Orchestration, imported by name: ``node`` (a short GPU allocation in one command),
``kit`` (the offline wheels for such a node), ``sweep`` (SLURM job arrays whose elements train in
segments and requeue themselves until finished; ``status`` and ``collect``) and ``slurm`` (the
few SLURM commands it calls).

This layer imports the core, ``rql_lite.files`` and ``rql_lite.ogbench``.
"""
from rql_lite.runs import checkpoint, experiment, records, report, rundir, spec

__all__ = ["checkpoint", "experiment", "records", "report", "rundir", "spec"]
