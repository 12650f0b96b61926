"""Throughput benchmark: updates/s (sampling included), XLA-counted FLOPs, achieved FLOP/s.

Run it with ``python -m rql_lite bench``. Each configuration trains on a synthetic
dataset already on the device (1000-step episodes, like OGBench's), so the number is
the cost of the jitted sample + update and nothing else.

What it measures, per configuration (``paper``: the paper's sizes; ``smoke``: the tests'):

* one run, and ``--seeds`` vmapped seeds of one task (the older record's columns);
* the *runs sweep* (``sweep_runs``): aggregate updates/s of ``R`` runs in one program
  (``train.runs_program``: runs laid out as tasks x seeds over a 5-task dataset, as a
  domain's tasks are trained together) for each ``R`` of ``--runs``, with the achieved FLOP/s,
  the ratio to one run, the HLO operations (kernels) one update executes, and from the measured
  rates the projected wall time of one domain and of the paper's whole table (``projections``);
* with ``--precision``, what ``AgentConfig.matmul_precision="bfloat16"`` does to learning on the
  chapter-5 toy and what it costs (``precision_study``).
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import re
import time

import jax
import jax.numpy as jnp
import numpy as np

from rql_lite.agent import AgentConfig, init_state
from rql_lite.configs import paper_benchmark_config
from rql_lite.data import ChunkDataset, from_arrays
from rql_lite.files import device_description, git_commit, utc_now, write_json_atomic
from rql_lite.train import (default_batching, init_states, run_layout, run_updates_jit, run_updates_seeds, runs_program,
                            seed_keys,
                            train_step)

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
    from collections import Counter

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
CPU_PAPER_RUNS = (1, 2, 4)  # the paper's sizes run ~5 updates/s per core pair: a few minutes in all
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
               batching: str | None = None) -> dict:
    """Aggregate updates/s of ``R`` runs in one program (``train.runs_program(batching)``: ``"vmap"``,
    ``"map"``, or this device's default) for each ``R`` in ``runs``.

    Every program is compiled first; then ``rounds`` interleaved rounds time each ``R`` for
    ``min_seconds / rounds`` (at least one dispatch of ``updates_per_dispatch`` updates per run)
    and the median round is kept, since a shared machine's other load comes and goes (every round
    is recorded, and the updates per CPU-second of this process, which that load barely moves).
    Per ``R``: aggregate and per-run updates/s, the ratio to one run (``R = 1`` of the same vmapped
    program), XLA's FLOP and bytes-accessed counts per update (of the compiled program, divided by
    ``R``), the achieved FLOP/s, and the HLO operations one update executes (``kernel_counts`` of the program over
    ``updates_per_dispatch``: per-dispatch work amortised). ``one_run_program``: the same, timed in
    the same rounds, for one run's own program (``train.run_updates_jit``), with each
    ``R``'s ratio to it in ``ratio_to_one_run_program``. All programs live on the device at once.
    """
    runs = sorted({int(r) for r in runs})
    if not runs or runs[0] < 1:
        raise ValueError(f"runs must be integers >= 1, got {runs}")
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
    prepare("one", init_state(config, init_key), (run_key, jnp.asarray(0, jnp.int32)), updates_per_dispatch)
    for r in runs:
        tasks, seeds = sweep_layout(r, num_tasks)
        states, run_keys = init_states(config, seeds)
        prepare(r, states, (run_keys, jnp.asarray(tasks, jnp.int32)), updates_per_dispatch * r)
        programs[r]["record"].update({"runs": r, "tasks": len(set(tasks)), "seeds_per_task": r // len(set(tasks))})
        if batching == "map":
            # The mapped program runs one run's own computation R times in a loop, and XLA's cost
            # analysis counts a loop's body once: per update, the counts are the one-run program's.
            one = programs["one"]["record"]
            programs[r]["record"].update({k: one[k] for k in ("flops_per_update", "bytes_accessed_per_update",
                                                              "kernels_per_update", "kernels_by_kind_per_update")})
            programs[r]["record"]["counts_from"] = "one run's own program (XLA counts a loop's body once)"

    def dispatch(key):
        def once():
            p = programs[key]
            p["states"], metrics = p["compiled"](p["states"], dataset, *p["args"])
            jax.block_until_ready(metrics)
            return p["count"]
        return once

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
        if runs[0] == 1:
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
            "one_run_program": one}


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


# --------------------------------------------------------------------------- matmul precision

def precision_cost(config: AgentConfig, precisions, updates_per_dispatch: int, min_seconds: float = 10.0,
                   rounds: int = 3, dataset: ChunkDataset | None = None) -> dict:
    """Updates/s of one run of ``config`` at each ``matmul_precision``, timed interleaved (median round)."""
    dataset = dataset if dataset is not None else synthetic_dataset(config)
    init_key, run_key = seed_keys(0)
    programs = {}
    for precision in precisions:
        cfg = config.replace(matmul_precision=precision)
        state = init_state(cfg, init_key)
        compiled = run_updates_jit.lower(state, dataset, run_key, 0, updates_per_dispatch).compile()
        state, metrics = compiled(state, dataset, run_key, 0)
        jax.block_until_ready(metrics)
        programs[precision] = {"compiled": compiled, "state": state}

    def dispatch(precision):
        def once():
            p = programs[precision]
            p["state"], metrics = p["compiled"](p["state"], dataset, run_key, 0)
            jax.block_until_ready(metrics)
            return updates_per_dispatch
        return once

    cpu_rates = {}
    rates = time_interleaved({p: dispatch(p) for p in programs}, min_seconds, rounds, cpu_rates)
    med = {p: float(np.median(r)) for p, r in rates.items()}
    med_cpu = {p: float(np.median(r)) for p, r in cpu_rates.items()}
    first = precisions[0]
    return {p: {"updates_per_s": med[p], "round_rates": [round(x, 4) for x in rates[p]],
                f"ratio_to_{first}": med[p] / med[first], "updates_per_cpu_s": med_cpu[p],
                f"cpu_time_ratio_to_{first}": med_cpu[p] / med_cpu[first]} for p in rates}


TOY_SETTINGS = dict(horizon=1, flow_steps=10, num_values=2, policy_hidden=(64, 64), value_hidden=(64, 64),
                    batch_size=256, discount=0.99, alpha=0.03, expectile=0.9, pessimism=0.0, tau=0.05,
                    ema_rate=0.99, agent="rql")  # chapter 5's RQL on the two-stage toy


def precision_learning(precisions=("default", "bfloat16"), seeds=(0, 1, 2), steps: int = 4000,
                       episodes: int = 10_000, eval_episodes: int = 1000) -> dict:
    """What each ``matmul_precision`` does to learning: chapter 5's RQL on ``toy_mdp.TwoStage``.

    Per precision and seed (seeds vmapped in one program, ``steps`` updates): the final value and
    BC losses (mean over the last 1000 updates), the value error at the data's step-1 actions
    (mean ``|V(s1, a, f=1) - r(s1, a)|``: the exact value there is the reward, the episode ends),
    and from ``eval_episodes`` episodes of the EMA policy the mean discounted return, the
    fraction that hit the best bump (``on_best_bump``, the toy's success) and that entered the left
    room. Same seeds, data and evaluation noise for every precision.
    """
    from rql_lite.agent import act
    from rql_lite.analysis import values_at
    from rql_lite.teaching.toy_mdp import TwoStage
    from rql_lite.train import train, unstack

    task = TwoStage()
    raw = task.dataset(episodes, seed=0)
    dataset = from_arrays(raw["observations"], raw["actions"], raw["rewards"], raw["terminals"], raw["masks"],
                          raw["next_observations"])
    step1 = slice(1, 2 * min(episodes, 2000), 2)  # the step-1 rows of the first episodes
    obs1, a1, r1 = raw["observations"][step1], raw["actions"][step1], raw["rewards"][step1]
    out = {"task": "toy_mdp.TwoStage (chapter 5), RQL", "settings": dict(TOY_SETTINGS), "steps": steps,
           "seeds": list(seeds), "dataset_episodes": episodes, "eval_episodes": eval_episodes, "results": {}}
    for precision in precisions:
        cfg = AgentConfig(obs_dim=2, action_dim=2, matmul_precision=precision, **TOY_SETTINGS)
        tick = time.perf_counter()
        states, history = train(cfg, dataset, seeds=list(seeds), num_steps=steps, steps_per_dispatch=1000,
                                progress=False)
        train_s = time.perf_counter() - tick
        res = {k: [] for k in ("value_loss", "bc_loss", "value_error_step1", "mean_return", "on_best_bump",
                               "left_room")}
        for i, seed in enumerate(seeds):
            state = unstack(states, i)
            res["value_loss"].append(float(history[-1]["value_loss"][i]))
            res["bc_loss"].append(float(history[-1]["bc_loss"][i]))
            v = values_at(cfg, state.value_params, obs1, a1, np.ones(len(a1), np.float32))
            res["value_error_step1"].append(float(np.mean(np.abs(v - r1))))
            ro = task.rollout(lambda o, k, st=state: act(st, o, k)[:, 0], eval_episodes, seed=100 + seed,
                              discount=cfg.discount)
            res["mean_return"].append(float(ro["returns"].mean()))
            res["on_best_bump"].append(float(task.on_best_bump(ro["room"], ro["a1"]).mean()))
            res["left_room"].append(float(np.mean(ro["room"] < 0)))
        res["train_s"] = round(train_s, 2)
        res["updates_per_s"] = len(seeds) * steps / train_s  # compile included
        out["results"][precision] = res
    return out


def precision_study(precisions=("default", "bfloat16"), cost_configs=("paper", "smoke"), min_seconds: float = 10.0,
                    rounds: int = 3, learning_steps: int = 4000, log=None) -> dict:
    """``--precision``: the cost (``precision_cost`` at each of ``cost_configs``) and the effect on learning
    (``precision_learning``) of each ``matmul_precision``, plus a bfloat16 matmul rate."""
    say = log or (lambda *_: None)
    on_cpu = jax.devices()[0].platform == "cpu"
    out = {"precisions": list(precisions), "cost": {}}
    if on_cpu:
        out["note"] = ("XLA:CPU computes float32 products in float32 whatever the precision setting, so on a CPU "
                       "'float32' and 'tensorfloat32' compile to the default program, and 'bfloat16' rounds each "
                       "product's operands to bfloat16 then multiplies them in float32 (XLA:CPU cannot run every "
                       "bfloat16 product): the learning effect is bfloat16's, the cost is that of the extra "
                       "conversions, not of bfloat16 arithmetic")
    for name in cost_configs:
        n = sweep_dispatch_default(name, jax.devices()[0].platform)
        say(f"precision cost, {name}: {', '.join(precisions)}")
        out["cost"][name] = precision_cost(BENCH_CONFIGS[name](), tuple(precisions), n, min_seconds, rounds)
        out["cost"][name]["updates_per_dispatch"] = n
    try:
        out["matmul_flop_per_s_bfloat16_operands"] = matmul_flop_per_s(dtype=jnp.bfloat16)
    except Exception as err:  # XLA:CPU may refuse a bfloat16 product
        out["matmul_flop_per_s_bfloat16_operands"] = None
        out["matmul_bfloat16_error"] = f"{type(err).__name__}: {str(err)[:200]}"
    say(f"precision learning: chapter-5 toy, {learning_steps} updates x 3 seeds per precision")
    out["learning"] = precision_learning(tuple(precisions), steps=learning_steps)
    return out


def sweep_dispatch_default(name: str, platform: str) -> int:
    """Updates per dispatch of the runs sweep: few on a CPU at the paper's sizes, where one update of
    one run is slow enough that 8 keep a dispatch of a few runs within the sweep's seconds per round,
    more elsewhere; dispatch overhead is negligible against any of them. The record keeps the value
    used (``updates_per_dispatch``) beside the rates measured with it."""
    if platform == "cpu":
        return 8 if name == "paper" else 100
    return 200


def run_bench(names=("paper", "smoke"), num_seeds: int = 4, updates_per_dispatch: int | None = None,
              min_seconds: float = 10.0, out_dir: str = "results/bench", runs=None, sweep_seconds: float = 10.0,
              sweep_updates_per_dispatch: int | None = None, rounds: int = 3, precision: bool = False,
              log=None) -> tuple[dict, str]:
    """Measure ``names`` and write ``bench-<platform>-<stamp>.json`` under ``out_dir``.

    ``runs``: the ``R`` values of the runs sweep (``sweep_runs``); ``None``: ``default_runs`` per
    configuration; ``()``: no sweep. ``precision``: add the ``precision_study`` section.
    """
    unknown = [n for n in names if n not in BENCH_CONFIGS]
    if unknown:
        raise ValueError(f"unknown benchmark configuration(s) {unknown}; choose from {sorted(BENCH_CONFIGS)}")
    say = log or (lambda *_: None)
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
    }
    for name in names:
        config = BENCH_CONFIGS[name]()
        n = updates_per_dispatch or (10 if on_cpu and name == "paper" else 200 if on_cpu else 1000)
        say(f"{name}: one run, {num_seeds} vmapped seeds")
        record = bench_config(config, n, num_seeds, min_seconds)
        # The floor implied by the FLOP count at the device's matmul throughput, and how close we get.
        record["floor_ms_per_update"] = 1000.0 * record["flops_per_update"] / payload["matmul_flop_per_s"]
        record["fraction_of_matmul_peak"] = record["achieved_flop_per_s"] / payload["matmul_flop_per_s"]
        sweep_values = default_runs(name, platform) if runs is None else tuple(runs)
        if sweep_values:
            say(f"{name}: runs sweep R = {', '.join(map(str, sweep_values))}")
            per_dispatch = sweep_updates_per_dispatch or sweep_dispatch_default(name, platform)
            sweep = sweep_runs(config, sweep_values, per_dispatch, sweep_seconds, rounds, log=say)
            # On a CPU the default batching is "map"; the batched ("vmap") program, the GPU's, is timed
            # too, so that the record shows why (record["runs_sweep_vmap"]).
            other = (sweep_runs(config, sweep_values, per_dispatch, sweep_seconds, rounds, log=say, batching="vmap")
                     if sweep["batching"] != "vmap" else None)
            for row in sweep["by_runs"] + [sweep["one_run_program"]] + (other["by_runs"] if other else []):
                row["fraction_of_matmul_peak"] = row["achieved_flop_per_s"] / payload["matmul_flop_per_s"]
                row["floor_ms_per_update"] = 1000.0 * row["flops_per_update"] / payload["matmul_flop_per_s"]
            record["runs_sweep"] = sweep
            if other:
                record["runs_sweep_vmap"] = other
            record["projections"] = projections(sweep)
        payload[name] = record
    if precision:
        payload["precision"] = precision_study(cost_configs=tuple(names), min_seconds=sweep_seconds, rounds=rounds,
                                               log=say)
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
        rows += [("vmap", row) for row in r.get("runs_sweep_vmap", {}).get("by_runs", [])]
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
    if "precision" in payload:
        for name, costs in payload["precision"]["cost"].items():
            lines.append(f"precision cost, {name}: " + ", ".join(
                f"{k} {v['updates_per_s']:.2f} updates/s" for k, v in costs.items() if isinstance(v, dict)))
        for k, v in payload["precision"]["learning"]["results"].items():
            lines.append(f"precision learning, {k}: return {np.mean(v['mean_return']):.3f}, best bump "
                         f"{np.mean(v['on_best_bump']):.2f}, value error {np.mean(v['value_error_step1']):.4f}, "
                         f"value loss {np.mean(v['value_loss']):.4f} (seeds {v['mean_return']})")
    return "\n".join(lines)
