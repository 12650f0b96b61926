"""The bench command: the chosen measurements, written as one record.

``run_bench`` measures each configuration (``rql_lite.bench.throughput``: one run, vmapped seeds,
the runs sweep and its projections) and, with ``precision=True``, the matmul-precision study
(``rql_lite.bench.precision``), and writes ``bench-<platform>-<stamp>.json`` with the device, the
versions, the commit and the machine's load. ``format_report`` is the summary the command prints.
The Speed page reads these records (``rql_lite.runs.report.find_bench_records``).
"""
from __future__ import annotations

import datetime as _dt
import os
import time

import jax
import numpy as np

from rql_lite.bench.precision import precision_study
from rql_lite.bench.throughput import (BENCH_CONFIGS, bench_config, default_runs, matmul_flop_per_s, projections,
                                       sweep_dispatch_default, sweep_runs)
from rql_lite.files import git_commit, utc_now, write_json_atomic
from rql_lite.train import device_description


def run_bench(names=("paper", "smoke"), num_seeds: int = 4, updates_per_dispatch: int | None = None,
              min_seconds: float = 10.0, out_dir: str = "results/bench", runs=None, sweep_seconds: float = 10.0,
              sweep_updates_per_dispatch: int | None = None, rounds: int = 3, precision: bool = False,
              log=None, max_seconds: float | None = None) -> tuple[dict, str]:
    """Measure ``names`` and write ``bench-<platform>-<stamp>.json`` under ``out_dir``.

    ``runs``: the ``R`` values of the runs sweep (``sweep_runs``), most wanted first; ``None``:
    ``default_runs`` per configuration; ``()``: no sweep. Both ways of putting R runs in one program
    are swept, the device's default batching first. ``precision``: add the ``precision_study`` section.
    ``max_seconds``: a time budget for all of it, compilation included (a short GPU lease): each part
    gets a share of what is left, in the order above, and what does not fit is skipped and listed
    under ``"skipped"`` (the one-run measurement always runs).
    """
    unknown = [n for n in names if n not in BENCH_CONFIGS]
    if unknown:
        raise ValueError(f"unknown benchmark configuration(s) {unknown}; choose from {sorted(BENCH_CONFIGS)}")
    say = log or (lambda *_: None)
    started = time.perf_counter()
    deadline = None if max_seconds is None else started + max_seconds

    def share(fraction: float) -> float | None:  # a deadline: this fraction of the budget that is left
        return None if deadline is None else time.perf_counter() + fraction * max(0.0, deadline - time.perf_counter())

    platform = jax.devices()[0].platform
    on_cpu = platform == "cpu"
    payload = {
        "device": device_description(),
        "platform": platform,
        "jax_version": jax.__version__,
        "git_commit": git_commit(),
        "date": utc_now(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpu_count": os.cpu_count(),
        "matmul_flop_per_s": matmul_flop_per_s(),
        "matmul_note": "one 2048 x 2048 float32 product at XLA's default precision (TF32 on NVIDIA Ampere and "
                       "later GPUs, float32 on CPU), chained 20 times in one program; best of 3",
        "max_seconds": max_seconds, "skipped": [],
    }
    for i, name in enumerate(names):
        config = BENCH_CONFIGS[name]()
        n = updates_per_dispatch or (10 if on_cpu and name == "paper" else 200 if on_cpu else 1000)
        say(f"{name}: one run, {num_seeds} vmapped seeds")
        record = bench_config(config, n, num_seeds, min_seconds)
        # The floor implied by the FLOP count at the device's matmul throughput, and how close we get.
        record["floor_ms_per_update"] = 1000.0 * record["flops_per_update"] / payload["matmul_flop_per_s"]
        record["fraction_of_matmul_peak"] = record["achieved_flop_per_s"] / payload["matmul_flop_per_s"]
        sweep_values = default_runs(name, platform) if runs is None else tuple(runs)
        remaining_parts = (len(names) - i) * 2 + (1 if precision else 0)
        if sweep_values and deadline is not None and time.perf_counter() >= deadline:
            payload["skipped"].append(f"{name}: runs sweep (both batchings)")
        elif sweep_values:
            say(f"{name}: runs sweep R = {', '.join(map(str, sweep_values))}")
            per_dispatch = sweep_updates_per_dispatch or sweep_dispatch_default(name, platform)
            sweep = sweep_runs(config, sweep_values, per_dispatch, sweep_seconds, rounds, log=say,
                               deadline=share(1.5 / remaining_parts))
            # Both ways of putting R runs in one program: the device's default ("map" on a CPU, "vmap"
            # elsewhere) and the other one, so that the record shows why the default is the default.
            other_batching = "vmap" if sweep["batching"] == "map" else "map"
            other = None
            if deadline is not None and time.perf_counter() >= deadline:
                payload["skipped"].append(f"{name}: runs sweep ({other_batching})")
            else:
                other = sweep_runs(config, sweep_values, per_dispatch, sweep_seconds, rounds, log=say,
                                   batching=other_batching, deadline=share(1.0 / (remaining_parts - 1)))
            for row in sweep["by_runs"] + [sweep["one_run_program"]] + (other["by_runs"] if other else []):
                row["fraction_of_matmul_peak"] = row["achieved_flop_per_s"] / payload["matmul_flop_per_s"]
                row["floor_ms_per_update"] = 1000.0 * row["flops_per_update"] / payload["matmul_flop_per_s"]
            record["runs_sweep"] = sweep
            if other:
                record[f"runs_sweep_{other_batching}"] = other
            record["projections"] = projections(sweep)
        payload[name] = record
    if precision and deadline is not None and time.perf_counter() >= deadline:
        payload["skipped"].append("precision study")
    elif precision:
        payload["precision"] = precision_study(cost_configs=tuple(names), min_seconds=sweep_seconds, rounds=rounds,
                                               log=say, deadline=deadline)
    payload["seconds"] = round(time.perf_counter() - started, 1)
    payload["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
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
        sweep = r.get("runs_sweep", {})
        if "one_run_program" in sweep:
            one = sweep["one_run_program"]
            kinds = ", ".join(f"{v:.0f} {k}" for k, v in one["kernels_by_kind_per_update"].items() if v)
            lines.append(f"        one run's own program: {one['aggregate_updates_per_s']:.2f} updates/s, "
                         f"{one['kernels_per_update']:.0f} HLO ops per update ({kinds}), "
                         f"{one['bytes_accessed_per_update'] / 1e9:.2f} GB accessed per update")
        rows = [(sweep.get("batching", "vmap"), row) for row in sweep.get("by_runs", [])]
        for other in ("vmap", "map"):
            rows += [(other, row) for row in r.get(f"runs_sweep_{other}", {}).get("by_runs", [])]
        for batching, row in rows:
            ratio = f", {row['ratio_to_one_run']:.2f}x R=1" if "ratio_to_one_run" in row else ""
            lines.append(f"        R={row['runs']:>2} ({batching}): {row['aggregate_updates_per_s']:9.2f} updates/s in total "
                         f"({row['per_run_updates_per_s']:.2f} per run; {row['ratio_to_one_run_program']:.2f}x one run's "
                         f"own program{ratio}), {row['achieved_flop_per_s'] / 1e9:.1f} GFLOP/s "
                         f"({100 * row['fraction_of_matmul_peak']:.0f}% of matmul), {row['kernels_per_update']:.0f} HLO ops "
                         f"and {row['bytes_accessed_per_update'] / 1e9:.2f} GB accessed per update (XLA's counts)")
        if "projections" in r:
            p = r["projections"]
            lines.append(f"        projected (training only, {p['best_runs_per_program']} per program, {p['best_program']}): one domain "
                         f"{p['domain_hours']:.1f} h, the whole table ({p['table_runs']} runs x 1M updates) "
                         f"{p['table_hours']:.0f} h = {p['table_days']:.1f} days")
    if payload.get("skipped"):
        lines.append(f"skipped for the time budget ({payload['max_seconds']:.0f} s): {'; '.join(payload['skipped'])}")
    if "precision" in payload:
        for name, costs in payload["precision"]["cost"].items():
            lines.append(f"precision cost, {name}: " + ", ".join(
                f"{k} {v['updates_per_s']:.2f} updates/s" for k, v in costs.items() if isinstance(v, dict)))
        for k, v in payload["precision"].get("learning", {}).get("results", {}).items():
            lines.append(f"precision learning, {k}: return {np.mean(v['mean_return']):.3f}, best bump "
                         f"{np.mean(v['on_best_bump']):.2f}, value error {np.mean(v['value_error_step1']):.4f}, "
                         f"value loss {np.mean(v['value_loss']):.4f} (seeds {v['mean_return']})")
    return "\n".join(lines)
