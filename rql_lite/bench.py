"""Throughput benchmark: updates/s (sampling included), XLA-counted FLOPs, achieved FLOP/s.

Run it with ``python -m rql_lite bench``. Each configuration trains on a synthetic
dataset already on the device (1000-step episodes, like OGBench's), so the number is
the cost of the jitted sample + update and nothing else.
"""
from __future__ import annotations

import datetime as _dt
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from rql_lite.agent import AgentConfig, init_state
from rql_lite.configs import paper_benchmark_config
from rql_lite.data import ChunkDataset, from_arrays
from rql_lite.provenance import device_description, git_commit, utc_now, write_json_atomic
from rql_lite.train import init_states, run_updates_jit, run_updates_seeds, seed_keys, train_step

BENCH_CONFIGS = {
    "paper": lambda: paper_benchmark_config("full"),  # obs 40, action 5, h=5, K=10, N=10, 4x512, batch 256
    "smoke": lambda: paper_benchmark_config("smoke"),  # the small test size
}


def synthetic_dataset(config: AgentConfig, size: int = 100_000, episode_length: int = 1000, seed: int = 0) -> ChunkDataset:
    rng = np.random.default_rng(seed)
    return from_arrays(
        rng.normal(size=(size, config.obs_dim)).astype(np.float32),
        rng.uniform(-1, 1, size=(size, config.action_dim)).astype(np.float32),
        rng.normal(size=size).astype(np.float32),
        (np.arange(size) % episode_length) == episode_length - 1,
    )


def flops_per_update(config: AgentConfig, dataset: ChunkDataset) -> float:
    """FLOPs of one sample + update as counted by XLA's cost analysis of the compiled step."""
    state = init_state(config, jax.random.PRNGKey(0))
    compiled = jax.jit(train_step).lower(state, dataset, jax.random.PRNGKey(1)).compile()
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost.get("flops", float("nan")))


def matmul_flop_per_s(size: int = 2048, repeats: int = 20, dtype=jnp.float32) -> float:
    """Attainable dense-matmul throughput of the default device, in FLOP/s (float32, ``size`` square).

    It is the ceiling an update made of matmuls could reach here, so ``flops_per_update / matmul_flop_per_s``
    is a floor on the time per update. Timed over ``repeats`` chained products in one jitted call.
    """
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), dtype) / np.sqrt(size)

    @jax.jit
    def chain(x):
        return jax.lax.fori_loop(0, repeats, lambda _, y: y @ a, x)

    jax.block_until_ready(chain(a))  # compile
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(chain(a))
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 * repeats / best


def _time_loop(run, min_seconds: float, max_dispatches: int) -> tuple[float, int]:
    """Call ``run()`` (one dispatch, returns its update count) until ``min_seconds`` pass."""
    start, done, calls = time.perf_counter(), 0, 0
    while calls < max_dispatches and (time.perf_counter() - start < min_seconds or calls == 0):
        done += run()
        calls += 1
    return time.perf_counter() - start, done


def bench_config(config: AgentConfig, updates_per_dispatch: int, num_seeds: int, min_seconds: float) -> dict:
    """Measure one configuration: one seed, then ``num_seeds`` vmapped seeds."""
    dataset = synthetic_dataset(config)
    init_key, run_key = seed_keys(0)
    holder = {"state": init_state(config, init_key)}

    def one_seed():
        holder["state"], metrics = run_updates_jit(holder["state"], dataset, run_key, 0, updates_per_dispatch)
        jax.block_until_ready(metrics)
        return updates_per_dispatch

    t_compile = time.perf_counter()
    one_seed()  # compile + first dispatch
    compile_s = time.perf_counter() - t_compile
    elapsed, updates = _time_loop(one_seed, min_seconds, 10_000)
    record = {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()},
        "updates_per_dispatch": updates_per_dispatch,
        "compile_and_first_dispatch_s": round(compile_s, 3),
        "timed_updates": updates,
        "timed_s": round(elapsed, 3),
        "updates_per_s": updates / elapsed,
        "ms_per_update": 1000.0 * elapsed / updates,
    }
    record["flops_per_update"] = flops_per_update(config, dataset)
    record["achieved_flop_per_s"] = record["flops_per_update"] * record["updates_per_s"]
    if num_seeds > 1:
        states, run_keys = init_states(config, list(range(num_seeds)))
        holder["states"] = states

        def many_seeds():
            holder["states"], metrics = run_updates_seeds(holder["states"], dataset, run_keys, updates_per_dispatch)
            jax.block_until_ready(metrics)
            return updates_per_dispatch * num_seeds

        many_seeds()
        elapsed, updates = _time_loop(many_seeds, min_seconds, 10_000)
        record["vmapped_seeds"] = {
            "num_seeds": num_seeds,
            "total_updates_per_s": updates / elapsed,
            "ratio_to_one_seed": (updates / elapsed) / record["updates_per_s"],
        }
    return record


def run_bench(names=("paper", "smoke"), num_seeds: int = 4, updates_per_dispatch: int | None = None,
              min_seconds: float = 10.0, out_dir: str = "results/bench") -> tuple[dict, str]:
    unknown = [n for n in names if n not in BENCH_CONFIGS]
    if unknown:
        raise ValueError(f"unknown benchmark configuration(s) {unknown}; choose from {sorted(BENCH_CONFIGS)}")
    on_cpu = jax.devices()[0].platform == "cpu"
    payload = {
        "device": device_description(),
        "platform": jax.devices()[0].platform,
        "jax_version": jax.__version__,
        "git_commit": git_commit(),
        "date": utc_now(),
        "matmul_flop_per_s": matmul_flop_per_s(),
    }
    for name in names:
        config = BENCH_CONFIGS[name]()
        n = updates_per_dispatch or (10 if on_cpu and name == "paper" else 200 if on_cpu else 1000)
        record = bench_config(config, n, num_seeds, min_seconds)
        # The floor implied by the FLOP count at the device's matmul throughput, and how close we get.
        record["floor_ms_per_update"] = 1000.0 * record["flops_per_update"] / payload["matmul_flop_per_s"]
        record["fraction_of_matmul_peak"] = record["achieved_flop_per_s"] / payload["matmul_flop_per_s"]
        payload[name] = record
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(out_dir, f"bench-{payload['platform']}-{stamp}.json")
    write_json_atomic(path, payload)
    return payload, path


def format_report(payload: dict) -> str:
    lines = [f"device: {payload['device']}  (jax {payload['jax_version']}); float32 matmul "
             f"{payload['matmul_flop_per_s'] / 1e9:.0f} GFLOP/s"]
    for name in BENCH_CONFIGS:
        if name not in payload:
            continue
        r = payload[name]
        line = (f"{name:>6}: {r['updates_per_s']:9.2f} updates/s ({r['ms_per_update']:.2f} ms/update), "
                f"{r['flops_per_update'] / 1e9:.2f} GFLOP/update, {r['achieved_flop_per_s'] / 1e9:.1f} GFLOP/s achieved "
                f"({100 * r['fraction_of_matmul_peak']:.0f}% of matmul; floor {r['floor_ms_per_update']:.2f} ms/update)")
        if "vmapped_seeds" in r:
            v = r["vmapped_seeds"]
            line += (f"; {v['num_seeds']} vmapped seeds: {v['total_updates_per_s']:.2f} updates/s in total "
                     f"({v['ratio_to_one_seed']:.2f}x one seed)")
        lines.append(line)
    return "\n".join(lines)
