"""Throughput: updates/s (sampling included), XLA-counted FLOPs and HLO operations, runs in one program.

Each configuration trains on a synthetic dataset already on the device (1000-step episodes,
like OGBench's), so the number is the cost of the jitted sample + update and nothing else.

What it measures, per configuration (``paper``: the paper's sizes; ``smoke``: the tests'):

* one run, and ``--seeds`` vmapped seeds of one task (``bench_config``; the older record's columns);
* the *runs sweep* (``sweep_runs``): aggregate updates/s of ``R`` runs in one program
  (``train.runs_program``: runs laid out as tasks x seeds over a 5-task dataset, as a
  domain's tasks are trained together) for each ``R`` of ``--runs``, with the achieved FLOP/s,
  the ratio to one run, the HLO operations (kernels) one update executes, and from the measured
  rates the projected wall time of one domain and of the paper's whole table (``projections``).

``python -m rql_lite bench`` runs them (``rql_lite.bench.suite``) and writes the record.
"""
from __future__ import annotations

import math
import re
import time
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np

from rql_lite import checks
from rql_lite.agent import AgentConfig, config_dict, init_state
from rql_lite.configs import paper_benchmark_config
from rql_lite.data import ChunkDataset, from_arrays
from rql_lite.train import (default_batching, init_states, run_layout, run_updates_jit, run_updates_seeds, runs_program,
                            seed_keys, train_step)

BENCH_CONFIGS = {
    "paper": lambda: paper_benchmark_config("full"),  # obs 40, action 5, h=5, K=10, N=10, 4x512, batch 256
    "smoke": lambda: paper_benchmark_config("smoke"),  # the small test size
}


def synthetic_dataset(config: AgentConfig, size: int = 100_000, episode_length: int = 1000, seed: int = 0,
                      num_tasks: int = 1) -> ChunkDataset:
    """Random transitions on the device; ``num_tasks > 1`` gives one reward/mask column per task."""
    rng = np.random.default_rng(seed)
    return from_arrays(
        rng.normal(size=(size, config.obs_dim)).astype(np.float32),
        rng.uniform(-1, 1, size=(size, config.action_dim)).astype(np.float32),
        rng.normal(size=size if num_tasks == 1 else (size, num_tasks)).astype(np.float32),
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
        "config": config_dict(config),
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
            holder["states"], metrics = run_updates_seeds(holder["states"], dataset, run_keys, updates_per_dispatch,
                                                          batching="vmap")  # the older record's column: vmapped
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


# --------------------------------------------------------------------------- kernels per update

# HLO instructions that launch nothing: they name, pack or reinterpret buffers.
_NOT_KERNELS = frozenset({"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "after-all",
                          "opt-barrier", "partition-id", "replica-id"})


def _hlo_computations(text: str) -> tuple[dict[str, list[str]], str | None]:
    """``{name: instruction lines}`` of an HLO module's text, and the entry computation's name."""
    comps, entry, current = {}, None, None
    for line in text.splitlines():
        head = re.match(r"^(ENTRY )?(%[\w.\-]+) .*\{\s*$", line)
        if head and current is None:
            current = head.group(2)
            comps[current] = []
            if head.group(1):
                entry = current
        elif line.strip() == "}":
            current = None
        elif current is not None:
            comps[current].append(line)
    return comps, entry


def _opcode(line: str) -> str | None:
    head = re.match(r"\s*(?:ROOT\s+)?%[\w.\-]+ = ", line)
    if not head:
        return None
    rest = line[head.end():]
    if rest.startswith("("):  # a tuple type: skip its balanced parentheses
        depth = 0
        for i, ch in enumerate(rest):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                rest = rest[i + 1:]
                break
    else:
        rest = rest.split(" ", 1)[1] if " " in rest else ""
    op = re.match(r"\s*([a-z][a-z0-9\-]*)\(", rest)
    return op.group(1) if op else None


def kernel_counts(hlo_text: str) -> dict[str, int]:
    """HLO operations one execution of a compiled module runs, by opcode: each fusion, dot, copy,
    transpose, custom call or other non-trivial instruction counts 1 (on a GPU each is about one
    kernel launch; on a CPU one thunk), a ``while`` counts its body and condition times its known
    trip count, a call or conditional its callee (the largest branch). Instructions inside fusions
    are not counted."""
    comps, entry = _hlo_computations(hlo_text)
    memo: dict[str, Counter] = {}

    def count(name: str) -> Counter:
        if name in memo:
            return memo[name]
        memo[name] = Counter()  # guards against cycles
        total = Counter()
        for line in comps.get(name, []):
            op = _opcode(line)
            if op is None or op in _NOT_KERNELS:
                continue
            if op == "while":
                trips = re.search(r'"known_trip_count":\{"n":"(\d+)"', line)
                n = int(trips.group(1)) if trips else 1
                for part in (re.search(r"body=(%[\w.\-]+)", line), re.search(r"condition=(%[\w.\-]+)", line)):
                    if part:
                        for key, value in count(part.group(1)).items():
                            total[key] += n * value
            elif op == "call":
                callee = re.search(r"to_apply=(%[\w.\-]+)", line)
                total.update(count(callee.group(1)) if callee else Counter({op: 1}))
            elif op == "conditional":
                branches = re.search(r"branch_computations=\{([^}]*)\}", line)
                names = re.findall(r"%[\w.\-]+", branches.group(1)) if branches else []
                total.update(max((count(b) for b in names), key=lambda c: sum(c.values()), default=Counter({op: 1})))
            else:
                total[op] += 1
        memo[name] = total
        return total

    return dict(count(entry)) if entry else {}


def count_kernels(hlo_text: str) -> int:
    """The total of ``kernel_counts``: HLO operations (about one kernel each) one execution runs."""
    return sum(kernel_counts(hlo_text).values())


def _per_update(counts: dict[str, int], updates: int) -> dict[str, float]:
    """Fusions, dots, copies, transposes and the rest, per update."""
    kinds = ("fusion", "dot", "copy", "transpose", "custom-call")
    out = {k: counts.get(k, 0) / updates for k in kinds}
    out["other"] = sum(v for k, v in counts.items() if k not in kinds) / updates
    return out


# --------------------------------------------------------------------------- runs in one program

def time_interleaved(dispatches: dict, min_seconds: float, rounds: int, cpu_rates: dict | None = None) -> dict:
    """``{key: [updates/s of each round]}``: ``rounds`` rounds, each calling every ``dispatches[key]()``
    (one dispatch, returns its update count, waits for it) for ``min_seconds / rounds`` (at least
    once), in turn, so that a shared machine's changing load falls on every key alike.

    ``cpu_rates``: if given, filled with ``{key: [updates per CPU-second of this process]}`` (all its
    threads; ``time.process_time``): work per update, which other processes' load barely moves."""
    rates = {key: [] for key in dispatches}
    for _ in range(max(1, rounds)):
        for key, once in dispatches.items():
            start, cpu_start, done = time.perf_counter(), time.process_time(), 0
            while done == 0 or time.perf_counter() - start < min_seconds / max(1, rounds):
                done += once()
            rates[key].append(done / (time.perf_counter() - start))
            if cpu_rates is not None:
                cpu_rates.setdefault(key, []).append(done / max(time.process_time() - cpu_start, 1e-9))
    return rates


DEFAULT_RUNS = (1, 2, 4, 8, 16, 20)  # the sweep on a GPU; 20 = one domain's 5 tasks x 4 seeds
CPU_PAPER_RUNS = (1, 2, 4)  # the paper's sizes are slow on a CPU: a short sweep there
DOMAIN_RUNS = 20  # 5 tasks x 4 seeds
TABLE_RUNS = 400  # 50 tasks (10 domains x 5) x 2 methods (RQL, TFQL) x 4 seeds
PAPER_UPDATES = 1_000_000  # per run


def default_runs(name: str, platform: str) -> tuple[int, ...]:
    """The sweep's default ``R`` values: all of ``DEFAULT_RUNS`` except the paper's sizes on a CPU."""
    return CPU_PAPER_RUNS if platform == "cpu" and name == "paper" else DEFAULT_RUNS


def sweep_layout(num_runs: int, max_tasks: int = 5) -> tuple[list[int], list[int]]:
    """``(task_index, seed)`` of ``num_runs`` runs, tasks x seeds as a domain is trained: the most tasks
    (at most ``max_tasks``) that divide ``num_runs``, each with ``num_runs / tasks`` seeds (20 runs:
    5 tasks x 4 seeds; 8: 4 x 2). The work does not depend on the layout, only on ``num_runs``."""
    tasks = max(t for t in range(1, max_tasks + 1) if num_runs % t == 0)
    return run_layout(tasks, list(range(num_runs // tasks)))


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    return (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}


def sweep_runs(config: AgentConfig, runs=DEFAULT_RUNS, updates_per_dispatch: int = 8, min_seconds: float = 10.0,
               rounds: int = 3, num_tasks: int = 5, dataset: ChunkDataset | None = None, log=None,
               batching: str | None = None, deadline: float | None = None) -> dict:
    """Aggregate updates/s of ``R`` runs in one program (``train.runs_program(batching)``: ``"vmap"``,
    ``"map"``, or this device's default) for each ``R`` in ``runs``.

    Every program is compiled first; then ``rounds`` interleaved rounds time each ``R`` for
    ``min_seconds / rounds`` (at least one dispatch of ``updates_per_dispatch`` updates per run)
    and the median round is kept, since a shared machine's other load comes and goes (every round
    is recorded, and the updates per CPU-second of this process, which that load barely moves).
    Per ``R``: aggregate and per-run updates/s, the ratio to one run (``R = 1`` of the same vmapped
    program), the FLOPs and bytes accessed per run-update (one run's own program's counts: each run of the
    batch does one run's work; for a vmapped program XLA's own count is kept as ``xla_flops_per_update_as_counted``),
    the achieved FLOP/s, and the HLO operations one update executes (``kernel_counts`` of the program over
    ``updates_per_dispatch``: per-dispatch work amortised). ``one_run_program``: the same, timed in
    the same rounds, for one run's own program (``train.run_updates_jit``), with each
    ``R``'s ratio to it in ``ratio_to_one_run_program``. All programs live on the device at once.

    ``deadline`` (a ``time.perf_counter()`` value): compile the ``R`` values in the order given (the
    first always) and stop compiling more once half the time left is gone, leaving the rest for the
    timing rounds (each still at least one dispatch per program); the ``R`` values left out are listed in
    ``skipped_runs``. Without it every ``R`` is measured.
    """
    if not runs:
        raise ValueError("runs is empty; give the numbers of runs per program to time, e.g. (1, 2, 4)")
    order = list(dict.fromkeys(checks.check_int(r, "runs", 1) for r in runs))
    say = log or (lambda *_: None)
    dataset = dataset if dataset is not None else synthetic_dataset(config, num_tasks=num_tasks)
    batching = default_batching() if batching is None else batching
    runs_program_compiled = runs_program(batching)
    programs = {}

    def prepare(key, states, args, count):
        tick = time.perf_counter()
        compiled = (runs_program_compiled if key != "one" else run_updates_jit).lower(
            states, dataset, *args, updates_per_dispatch).compile()
        compile_s = time.perf_counter() - tick
        tick = time.perf_counter()
        states, metrics = compiled(states, dataset, *args)
        jax.block_until_ready(metrics)
        kinds = kernel_counts(compiled.as_text())
        programs[key] = {"compiled": compiled, "states": states, "args": args, "count": count, "record": {
            "compile_s": round(compile_s, 3), "first_dispatch_s": round(time.perf_counter() - tick, 3),
            "flops_per_update": _cost(compiled).get("flops", float("nan")) / (1 if key == "one" else key),
            "bytes_accessed_per_update": _cost(compiled).get("bytes accessed", float("nan")) / (1 if key == "one" else key),
            "kernels_per_update": sum(kinds.values()) / updates_per_dispatch,
            "kernels_by_kind_per_update": _per_update(kinds, updates_per_dispatch)}}
        say(f"  {'one run, own program' if key == 'one' else f'R={key} ({batching})'}: compiled in {compile_s:.1f} s")

    init_key, run_key = seed_keys(0)
    start = time.perf_counter()
    prepare("one", init_state(config, init_key), (run_key, jnp.asarray(0, jnp.int32)), updates_per_dispatch)
    skipped = []
    for r in order:
        if deadline is not None and len(programs) > 1 and time.perf_counter() > start + (deadline - start) / 2:
            skipped.append(r)  # the first R given is always measured
            continue
        tasks, seeds = sweep_layout(r, num_tasks)
        states, run_keys = init_states(config, seeds)
        prepare(r, states, (run_keys, jnp.asarray(tasks, jnp.int32)), updates_per_dispatch * r)
        programs[r]["record"].update({"runs": r, "tasks": len(set(tasks)), "seeds_per_task": r // len(set(tasks))})
        one = programs["one"]["record"]
        if batching == "map":
            # The mapped program runs one run's own computation R times in a loop, and XLA's cost
            # analysis counts a loop's body once: per update, the counts are the one-run program's.
            programs[r]["record"].update({k: one[k] for k in ("flops_per_update", "bytes_accessed_per_update",
                                                              "kernels_per_update", "kernels_by_kind_per_update")})
            programs[r]["record"]["counts_from"] = "one run's own program (XLA counts a loop's body once)"
        else:
            # Every run of the vmapped program does one run's arithmetic, so a run-update's FLOPs are the
            # one-run program's. XLA's own count of the batched program is kept beside it but not used: on a
            # GPU it leaves out the batched matrix products that become library calls (the H200 record of
            # 2026-12-04 counted 2.5 GFLOP per run-update at R = 4 against one run's 19.4).
            rec = programs[r]["record"]
            rec["xla_flops_per_update_as_counted"] = rec["flops_per_update"]
            rec["flops_per_update"] = one["flops_per_update"]
            rec["flops_from"] = "one run's own program (each run of the batch does its arithmetic)"

    def dispatch(key):
        def once():
            p = programs[key]
            p["states"], metrics = p["compiled"](p["states"], dataset, *p["args"])
            jax.block_until_ready(metrics)
            return p["count"]
        return once

    if skipped:
        say(f"  R = {', '.join(map(str, skipped))} skipped: the time budget (--max-seconds) is half spent")
    runs = sorted(r for r in order if r not in skipped)
    if deadline is not None:  # what is left of the budget, shared by the timing rounds
        min_seconds = max(0.0, min(min_seconds, (deadline - time.perf_counter()) / max(1, len(programs))))
    cpu_rates = {}
    rates = time_interleaved({key: dispatch(key) for key in programs}, min_seconds, rounds, cpu_rates)
    median = {key: float(np.median(rates[key])) for key in programs}
    median_cpu = {key: float(np.median(cpu_rates[key])) for key in programs}
    for key, p in programs.items():
        p["record"].update({
            "aggregate_updates_per_s": median[key], "best_round_updates_per_s": max(rates[key]),
            "round_rates": [round(x, 4) for x in rates[key]],
            "achieved_flop_per_s": p["record"]["flops_per_update"] * median[key],
            "updates_per_cpu_s": median_cpu[key], "round_updates_per_cpu_s": [round(x, 4) for x in cpu_rates[key]]})
    table = []
    for r in runs:
        rec = programs[r]["record"]
        rec["per_run_updates_per_s"] = median[r] / r
        rec["ratio_to_one_run_program"] = median[r] / median["one"]
        rec["cpu_time_ratio_to_one_run_program"] = median_cpu[r] / median_cpu["one"]
        if runs and runs[0] == 1:
            rec["ratio_to_one_run"] = median[r] / median[1]
            rec["cpu_time_ratio_to_one_run"] = median_cpu[r] / median_cpu[1]
        table.append(rec)
        say(f"  R={r}: {median[r]:.2f} updates/s in total (median of {len(rates[r])} rounds), "
            f"{rec['ratio_to_one_run_program']:.2f}x one run's own program"
            + (f", {rec['ratio_to_one_run']:.2f}x R=1" if "ratio_to_one_run" in rec else "")
            + f"; per CPU-second {rec['cpu_time_ratio_to_one_run_program']:.2f}x")
    one = programs["one"]["record"]
    say(f"  one run, own program: {median['one']:.2f} updates/s")
    programs.clear()  # frees the states before the next configuration
    return {"batching": batching, "updates_per_dispatch": updates_per_dispatch, "min_seconds": min_seconds, "rounds": rounds,
            "num_tasks": num_tasks, "layout": "task-major, tasks x seeds (sweep_layout)", "by_runs": table,
            "one_run_program": one, "skipped_runs": skipped}


def projections(sweep: dict, updates: int = PAPER_UPDATES, domain_runs: int = DOMAIN_RUNS,
                table_runs: int = TABLE_RUNS) -> dict:
    """Wall time of one domain (``domain_runs`` runs) and of the paper's table (``table_runs`` runs), each
    run ``updates`` long, on the measured device, from the sweep's measured rates.

    How: with ``R`` runs per program, one domain is ``ceil(domain_runs / R)`` programs run one after
    another, each ``updates / per_run_rate(R)`` long (a last program with fewer runs is counted as a
    full one: conservative); with the sweep's ``one_run_program``, ``domain_runs`` single-run programs
    one after another. The domain's time is the smallest of these; the table is
    ``table_runs / domain_runs`` domains (10 domains x 2 methods) at that time. Counted: training
    updates only. Not counted: evaluation (the paper evaluates every 100k updates), dataset loading,
    compilation and checkpoints.
    """
    options = []
    for rec in sweep["by_runs"]:
        r = rec["runs"]
        programs = math.ceil(domain_runs / r)
        seconds = programs * updates / rec["per_run_updates_per_s"]
        options.append({"runs_per_program": r, "program": f"R runs in one program ({sweep.get('batching', 'vmap')})",
                        "programs": programs,
                        "domain_hours": seconds / 3600})
    if "one_run_program" in sweep:  # the runs one after another, each in its own program
        seconds = domain_runs * updates / sweep["one_run_program"]["aggregate_updates_per_s"]
        options.append({"runs_per_program": 1, "program": "one run per program", "programs": domain_runs,
                        "domain_hours": seconds / 3600})
    best = min(options, key=lambda o: o["domain_hours"])
    domains = table_runs / domain_runs
    return {
        "updates_per_run": updates, "domain_runs": domain_runs, "table_runs": table_runs,
        "domain": f"{domain_runs} runs (5 tasks x 4 seeds)",
        "table": f"{table_runs} runs (50 tasks = 10 domains x 5, x 2 methods RQL and TFQL, x 4 seeds)",
        "by_runs_per_program": options, "best_runs_per_program": best["runs_per_program"],
        "best_program": best["program"],
        "domain_hours": best["domain_hours"], "table_hours": domains * best["domain_hours"],
        "table_days": domains * best["domain_hours"] / 24,
        "counted": "training updates only (sampling included); evaluation, data loading, compilation and "
                   "checkpoints are not included",
        "largest_measured_runs": max(o["runs_per_program"] for o in options),
    }


def sweep_dispatch_default(name: str, platform: str) -> int:
    """Updates per dispatch of the runs sweep: few on a CPU at the paper's sizes, where one update of
    one run is slow enough that 8 keep a dispatch of a few runs within the sweep's seconds per round,
    more elsewhere; dispatch overhead is negligible against any of them. The record keeps the value
    used (``updates_per_dispatch``) beside the rates measured with it."""
    if platform == "cpu":
        return 8 if name == "paper" else 100
    return 200
