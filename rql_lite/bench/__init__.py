"""Benchmarks: what training and evaluation cost on this machine, written as records under results/bench/.

Modules: ``throughput`` (updates/s, XLA's FLOPs and HLO operations per update, R runs in one
program, projections of a domain and of the paper's table), ``precision`` (what bfloat16 matmuls
cost and do to learning), ``suite`` (``python -m rql_lite bench``: runs them and writes one
record) and ``evaluation`` (evaluation one episode at a time against all in lockstep).

This layer may import every layer below the command line: the core, ``rql_lite.files``,
``rql_lite.ogbench``, ``rql_lite.runs`` and ``rql_lite.teaching``.
"""
from rql_lite.bench import evaluation, precision, suite, throughput

__all__ = ["evaluation", "precision", "suite", "throughput"]
