"""Evaluation throughput: one episode at a time (``evaluate``, run by run) against all in lockstep
(``evaluate_many``): the same episode loop with one slot, and with R x B slots in worker processes.

``python -m rql_lite bench --configs --eval-runs 20 --eval-episodes 50`` (or
``python -m rql_lite.bench.evaluation --runs 20 --episodes 50 --max-steps 200 --out results/bench``)
times both on the same stacked agents and writes ``bench-eval-<platform>-<stamp>.json``.
The agents are freshly initialised (random parameters) at the given profile's size: their
policy calls cost what a trained agent's cost, but they never succeed, so their episodes run
to ``max_steps`` (or the time limit); a trained agent's successful episodes end earlier.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time

import jax
import numpy as np

from rql_lite import checks
from rql_lite.agent import acting_params
from rql_lite.configs import agent_config
from rql_lite.files import git_commit, utc_now, write_json_atomic
from rql_lite.ogbench.evaluate import _policy_chunks, eval_pool, evaluate, evaluate_many, make_eval_env
from rql_lite.train import device_description, init_states, unstack

DEFAULT_TASK = "cube-double-play-singletask-task2-v0"


class _TimedEnv:
    """An env whose ``reset``/``step`` time is summed, so the serial loop's env share is known."""

    def __init__(self, env):
        self.env, self.seconds = env, 0.0
        self.observation_space, self.action_space, self.spec = env.observation_space, env.action_space, env.spec

    def reset(self, **kwargs):
        tic = time.perf_counter()
        try:
            return self.env.reset(**kwargs)
        finally:
            self.seconds += time.perf_counter() - tic

    def step(self, action):
        tic = time.perf_counter()
        try:
            return self.env.step(action)
        finally:
            self.seconds += time.perf_counter() - tic


def _load() -> float | None:
    """The 1-minute load average (other programs on a shared machine slow both sides down)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def bench_evaluation(task: str = DEFAULT_TASK, num_runs: int = 20, num_episodes: int = 50, max_steps: int | None = 200,
                     workers: int | None = None, profile: str = "smoke", max_envs: int | None = None,
                     exact: bool | None = None, log=None) -> dict:
    """Time ``num_runs`` x ``num_episodes`` evaluation episodes serially and with ``evaluate_many``.

    ``exact``: as in ``evaluate_many`` (default: per-episode products on CPU, one batch on an accelerator).

    Returns a dict: ``device``, ``cores``, ``workers``, ``runs``, ``episodes_per_run``,
    ``max_steps``, ``mean_steps_per_episode``, ``env_steps``; ``serial`` and ``batched`` with
    ``wall_s`` (the evaluation itself), ``setup_s`` (env building; the batched side also
    starts its workers; compilation is done beforehand and reported as ``compile_s``),
    ``policy_s``/``env_s`` (where the time went), ``env_steps_per_s``, ``cpu_s`` (this process's,
    plus the workers' for the batched side) and ``env_steps_per_cpu_s``, and the load average
    before and after (on a shared machine); ``speedup`` (serial
    wall / batched wall), ``speedup_with_setup`` (both including their setup), ``agree``
    (every episode's success, return and length equal) and ``mismatched_episodes``.
    """
    say = log or (lambda *_: None)
    exact = jax.default_backend() == "cpu" if exact is None else bool(exact)
    tic = time.perf_counter()
    env = _TimedEnv(make_eval_env(task))
    serial_setup = time.perf_counter() - tic
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    config = agent_config(task, obs_dim, action_dim, profile=profile)
    states, _ = init_states(config, list(range(num_runs)))
    tasks, seeds = [task] * num_runs, [1000 * r + 1 for r in range(num_runs)]
    record = {"task": task, "profile": profile, "agents": "random-init (never succeed: episodes run to max_steps)",
              "runs": num_runs, "episodes_per_run": num_episodes, "max_steps": max_steps, "exact": exact,
              "cores": os.cpu_count(), "device": device_description(), "platform": jax.devices()[0].platform,
              "jax_version": jax.__version__, "git_commit": git_commit(), "date": utc_now()}

    # --- serial: one env, one agent and one episode at a time (evaluate: one slot), one policy call per chunk
    tic = time.perf_counter()
    first = jax.tree_util.tree_map(lambda x: x[:1], acting_params(states))
    jax.block_until_ready(_policy_chunks(config, first, np.zeros((1, 1, obs_dim), np.float32),
                                         jax.random.PRNGKey(0)[None], np.zeros((1, 1), np.int32), np.int32(0), exact))
    serial_compile = time.perf_counter() - tic
    say(f"serial: {num_runs} runs x {num_episodes} episodes ...")
    load_before = _load()
    tic, cpu = time.perf_counter(), time.process_time()
    serial = [evaluate(env, unstack(states, r), num_episodes, seed=seeds[r], max_steps=max_steps, exact=exact)
              for r in range(num_runs)]
    serial_wall, serial_cpu = time.perf_counter() - tic, time.process_time() - cpu
    env_steps = int(sum(sum(r["episode_lengths"]) for r in serial))
    record["serial"] = {"wall_s": serial_wall, "setup_s": serial_setup, "compile_s": serial_compile,
                        "env_s": env.seconds, "policy_s": serial_wall - env.seconds,
                        "policy_calls": int(sum(-(-n // config.horizon) for r in serial for n in r["episode_lengths"])),
                        "env_steps_per_s": env_steps / serial_wall, "cpu_s": serial_cpu,
                        "env_steps_per_cpu_s": env_steps / serial_cpu,
                        "load_average_before_after": [load_before, _load()]}
    record["serial"]["note"] = "policy_s = wall - env_s: the policy calls and the loop's own Python"

    # --- batched: R x B envs in worker processes, one policy call per chunk for all of them
    say("batched: starting workers and envs ...")
    with eval_pool(tasks, num_episodes, workers=workers, max_envs=max_envs) as pool:
        shape = (num_runs, pool.per_wave, obs_dim)
        tic = time.perf_counter()
        jax.block_until_ready(_policy_chunks(
            config, acting_params(states), np.zeros(shape, np.float32),
            jax.numpy.stack([jax.random.PRNGKey(s) for s in seeds]),
            np.zeros(shape[:2], np.int32), np.int32(0), exact))
        batched_compile = time.perf_counter() - tic
        say(f"batched: {pool.num_workers if pool.num_workers > 1 else 0} workers, {num_runs * pool.per_wave} envs ...")
        timings, load_before = {}, _load()
        workers_cpu = pool.cpu_seconds()
        tic, cpu = time.perf_counter(), time.process_time()
        batched = evaluate_many(tasks, states, num_episodes, seeds, max_steps=max_steps, exact=exact, pool=pool,
                                timings=timings)
        batched_wall, main_cpu = time.perf_counter() - tic, time.process_time() - cpu
        if workers_cpu is not None:
            workers_cpu = pool.cpu_seconds() - workers_cpu
        startup = pool.startup_s
    record["workers"] = timings["workers"]
    record["batched"] = {"wall_s": batched_wall, "setup_s": startup, "compile_s": batched_compile,
                         "policy_s": timings["policy_s"], "env_s": timings["env_s"],
                         "policy_calls": timings["policy_calls"], "waves": timings["waves"],
                         "envs": timings["envs"], "episodes_per_wave": timings["episodes_per_wave"],
                         "workers_imported_jax": any(w["jax_imported"] for w in timings["worker_info"]),
                         "env_steps_per_s": env_steps / batched_wall, "main_cpu_s": main_cpu,
                         "workers_cpu_s": workers_cpu, "load_average_before_after": [load_before, _load()]}
    total_cpu = main_cpu + (workers_cpu or 0.0)
    record["batched"].update(cpu_s=total_cpu, env_steps_per_cpu_s=env_steps / total_cpu)
    record["batched"]["note"] = "env_s = time waiting for the workers' resets and chunk steps"
    mismatched = [(r, e) for r in range(num_runs) for e in range(num_episodes)
                  if any(batched[r][k][e] != serial[r][k][e] for k in ("successes", "returns", "episode_lengths"))]
    record.update(env_steps=env_steps, mean_steps_per_episode=env_steps / (num_runs * num_episodes),
                  success_rate=float(np.mean([r["success_rate"] for r in serial])),
                  speedup=serial_wall / batched_wall,
                  speedup_with_setup=(serial_wall + serial_setup) / (batched_wall + startup),
                  agree=not mismatched, mismatched_episodes=len(mismatched))
    return record


def format_eval_report(record: dict) -> str:
    s, b = record["serial"], record["batched"]
    lines = [
        (f"evaluation on {record['device']} ({record['cores']} cores): {record['runs']} runs x "
         f"{record['episodes_per_run']} episodes of {record['task']}, max_steps {record['max_steps']} "
         f"({record['mean_steps_per_episode']:.0f} steps/episode, {record['env_steps']} env steps), "
         f"{record['profile']} random-init agents"),
        (f"  serial : {s['wall_s']:8.1f} s  ({s['env_steps_per_s']:7.0f} env steps/s; env {s['env_s']:.1f} s, "
         f"policy+loop {s['policy_s']:.1f} s in {s['policy_calls']} calls; env setup {s['setup_s']:.1f} s)"),
        (f"  batched: {b['wall_s']:8.1f} s  ({b['env_steps_per_s']:7.0f} env steps/s; env {b['env_s']:.1f} s, "
         f"policy {b['policy_s']:.1f} s in {b['policy_calls']} calls; {record['workers']} workers, {b['envs']} envs, "
         f"{b['waves']} waves; setup {b['setup_s']:.1f} s)"),
        (f"  CPU time: serial {s['cpu_s']:.1f} s, batched {b['cpu_s']:.1f} s (workers {b['workers_cpu_s'] or 0:.1f} s)"
         f" = {s['env_steps_per_cpu_s']:.0f} vs {b['env_steps_per_cpu_s']:.0f} env steps per CPU-second; 1-min load "
         f"average {s['load_average_before_after']} / {b['load_average_before_after']} (before/after each side)"),
        (f"  speed-up {record['speedup']:.2f}x ({record['speedup_with_setup']:.2f}x with setup); results "
         + ("agree exactly" if record["agree"] else f"differ in {record['mismatched_episodes']} episodes")),
    ]
    return "\n".join(lines)


def write_record(record: dict, out_dir: str = "results/bench") -> str:
    """Write ``record`` atomically to ``out_dir/bench-eval-<platform>-<stamp>.json``; return the path."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(out_dir, f"bench-eval-{record['platform']}-{stamp}.json")
    write_json_atomic(path, record)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rql_lite.bench.evaluation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default=DEFAULT_TASK, help="OGBench task (default %(default)s)")
    parser.add_argument("--runs", type=checks.int_argument(1), default=20,
                        help="agents evaluated at once (default %(default)s)")
    parser.add_argument("--episodes", type=checks.int_argument(1), default=50,
                        help="episodes per agent (default %(default)s)")
    parser.add_argument("--max-steps", type=checks.int_argument(0), default=200,
                        help="steps per episode at most; 0: the env's limit")
    parser.add_argument("--workers", type=checks.int_argument(0), default=None,
                        help="env processes (default: one per CPU core)")
    parser.add_argument("--max-envs", type=checks.int_argument(1), default=None,
                        help="envs held at once (default: memory-based)")
    parser.add_argument("--profile", default="smoke", choices=("smoke", "full"), help="agent size (default smoke)")
    parser.add_argument("--vmapped", action="store_true", help="exact=False: one vmapped policy batch")
    parser.add_argument("--out", default="results/bench", help="directory for the JSON record")
    args = parser.parse_args(argv)
    record = bench_evaluation(args.task, args.runs, args.episodes, args.max_steps or None, workers=args.workers,
                              profile=args.profile, max_envs=args.max_envs, exact=False if args.vmapped else None,
                              log=lambda m: print(m, file=sys.stderr, flush=True))
    path = write_record(record, args.out)
    print(format_eval_report(record))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
