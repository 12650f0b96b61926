"""Matmul precision: what ``AgentConfig.matmul_precision="bfloat16"`` costs and what it does to learning.

``precision_cost`` times one run of a configuration at each precision (interleaved rounds, as the
throughput sweep times its programs); ``precision_learning`` trains chapter 5's RQL on
``toy_mdp.TwoStage`` at each precision with the same seeds, data and evaluation noise, and
compares losses, value errors and returns. ``precision_study`` is the ``bench --precision``
section of the bench record.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from rql_lite.agent import AgentConfig, act, init_state
from rql_lite.analysis import values_at
from rql_lite.data import ChunkDataset, from_arrays
from rql_lite.bench.throughput import (BENCH_CONFIGS, matmul_flop_per_s, sweep_dispatch_default, synthetic_dataset,
                                       time_interleaved)
from rql_lite.teaching.toy_mdp import TwoStage
from rql_lite.train import run_updates_jit, seed_keys, train, unstack


def precision_cost(config: AgentConfig, precisions, updates_per_dispatch: int, min_seconds: float = 10.0,
                   rounds: int = 3, dataset: ChunkDataset | None = None, deadline: float | None = None) -> dict:
    """Updates/s of one run of ``config`` at each ``matmul_precision``, timed interleaved (median round).

    ``deadline``: as in ``sweep_runs``, precisions are compiled in the order given (the first always)
    until half the time left is spent; those left out are listed under ``"skipped"``."""
    dataset = dataset if dataset is not None else synthetic_dataset(config)
    init_key, run_key = seed_keys(0)
    programs, skipped, start = {}, [], time.perf_counter()
    for precision in precisions:
        if deadline is not None and programs and time.perf_counter() > start + (deadline - start) / 2:
            skipped.append(precision)
            continue
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

    if deadline is not None:
        min_seconds = max(0.0, min(min_seconds, (deadline - time.perf_counter()) / max(1, len(programs))))
    cpu_rates = {}
    rates = time_interleaved({p: dispatch(p) for p in programs}, min_seconds, rounds, cpu_rates)
    med = {p: float(np.median(r)) for p, r in rates.items()}
    med_cpu = {p: float(np.median(r)) for p, r in cpu_rates.items()}
    first = precisions[0]
    out = {p: {"updates_per_s": med[p], "round_rates": [round(x, 4) for x in rates[p]],
               f"ratio_to_{first}": med[p] / med[first], "updates_per_cpu_s": med_cpu[p],
               f"cpu_time_ratio_to_{first}": med_cpu[p] / med_cpu[first]} for p in rates}
    if skipped:
        out["skipped"] = skipped
    return out


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


def default_precisions(platform: str) -> tuple[str, ...]:
    """The precisions ``--precision`` compares: on a CPU, ``float32`` and ``tensorfloat32`` compile to the
    default program, so only bfloat16 is set beside it; elsewhere all four."""
    return ("default", "bfloat16") if platform == "cpu" else ("default", "float32", "tensorfloat32", "bfloat16")


def precision_study(precisions=None, cost_configs=("paper", "smoke"), min_seconds: float = 10.0,
                    rounds: int = 3, learning_steps: int = 4000, log=None, deadline: float | None = None) -> dict:
    """``--precision``: the cost (``precision_cost`` at each of ``cost_configs``) and the effect on learning
    (``precision_learning``, default against bfloat16) of each ``matmul_precision``, plus a bfloat16
    matmul rate. ``deadline``: what does not fit is skipped and listed (``skipped``)."""
    say = log or (lambda *_: None)
    on_cpu = jax.devices()[0].platform == "cpu"
    precisions = default_precisions(jax.devices()[0].platform) if precisions is None else tuple(precisions)
    out = {"precisions": list(precisions), "cost": {}, "skipped": []}
    if on_cpu:
        out["note"] = ("XLA:CPU computes float32 products in float32 whatever the precision setting, so on a CPU "
                       "'float32' and 'tensorfloat32' compile to the default program, and 'bfloat16' rounds each "
                       "product's operands to bfloat16 then multiplies them in float32 (XLA:CPU cannot run every "
                       "bfloat16 product): the learning effect is bfloat16's, the cost is that of the extra "
                       "conversions, not of bfloat16 arithmetic")
    for i, name in enumerate(cost_configs):
        n = sweep_dispatch_default(name, jax.devices()[0].platform)
        if deadline is not None and time.perf_counter() > deadline:
            out["skipped"].append(f"cost at {name}")
            continue
        say(f"precision cost, {name}: {', '.join(precisions)}")
        share = None if deadline is None else time.perf_counter() + (deadline - time.perf_counter()) / (
            len(cost_configs) - i + 1)  # the learning study gets a share too
        out["cost"][name] = precision_cost(BENCH_CONFIGS[name](), tuple(precisions), n, min_seconds, rounds,
                                           deadline=share)
        out["cost"][name]["updates_per_dispatch"] = n
    try:
        out["matmul_flop_per_s_bfloat16_operands"] = matmul_flop_per_s(dtype=jnp.bfloat16)
    except Exception as err:  # XLA:CPU may refuse a bfloat16 product
        out["matmul_flop_per_s_bfloat16_operands"] = None
        out["matmul_bfloat16_error"] = f"{type(err).__name__}: {str(err)[:200]}"
    if deadline is not None and time.perf_counter() > deadline:
        out["skipped"].append("learning")
        return out
    say(f"precision learning: chapter-5 toy, {learning_steps} updates x 3 seeds per precision")
    out["learning"] = precision_learning(("default", "bfloat16"), steps=learning_steps)
    return out
