"""Command line: ``python -m rql_lite <command>``; ``--help`` lists the commands.

Argument parsing and dispatch only: each command calls the library. Bad input is one line on
stderr (``error: ...``) naming the argument or file and the fix, exit code 2, and nothing is
created or changed. Ctrl-C (or SIGTERM) during ``train`` saves the progress and says how to
continue (exit code 130, or 143 for SIGTERM). Nothing in the package imports this module.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import sys

import jax
import numpy as np

from rql_lite import checks
from rql_lite.agent import AGENTS, AgentConfig
from rql_lite.bench import evaluation as bench_evaluation
from rql_lite.bench import suite
from rql_lite.files import check_writable_directory
from rql_lite.ogbench.datasets import DEFAULT_DATA_DIR, generated_folder
from rql_lite.ogbench.evaluate import evaluate_many
from rql_lite.ogbench.generate import generate_dataset, published_episode_length
from rql_lite.ogbench.videos import write_video
from rql_lite.runs import checkpoint
from rql_lite.runs import kit, sweep
from rql_lite.runs.experiment import RunInterrupted, SegmentEnded, run
from rql_lite.runs.node import TRAIN_PASS, NodeOptions, run_node
from rql_lite.runs.rundir import claim_for_reading, load_run, read_run_info, runs_of
from rql_lite.runs.spec import RunSpec
from rql_lite.train import unstack


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse's default prints the usage first)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see: {self.prog} --help)\n")


COUNT, NON_NEGATIVE = checks.int_argument(1), checks.int_argument(0)
POSITIVE = checks.number_argument(above=0.0)


def _minutes(text: str) -> int:
    """``sweep --time``: whole minutes (SLURM's 4:00:00 spelled 240)."""
    try:
        return COUNT(text)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"{err}; give whole minutes, e.g. --time 240 for 4 hours") from None


def _command_line(argv) -> str:
    return "python -m rql_lite " + shlex.join(argv)


def _bench(args) -> int:
    if not args.configs and not args.eval_runs:
        raise ValueError("nothing to measure: give --configs paper and/or smoke, or --eval-runs R")
    if args.configs:
        payload, path = suite.run_bench(args.configs, num_seeds=args.seeds, updates_per_dispatch=args.updates_per_dispatch,
                                  min_seconds=args.min_seconds, out_dir=args.out, runs=args.runs,
                                  sweep_seconds=args.sweep_seconds,
                                  sweep_updates_per_dispatch=args.sweep_updates_per_dispatch,
                                  rounds=args.rounds, precision=args.precision, log=print, max_seconds=args.max_seconds)
        print(suite.format_report(payload))
        print(f"wrote {path}")
    if args.eval_runs:  # evaluation: R agents x E episodes, one episode at a time vs all in lockstep
        record = bench_evaluation.bench_evaluation(num_runs=args.eval_runs, num_episodes=args.eval_episodes,
                                                   max_steps=args.eval_max_steps, log=print)
        print(bench_evaluation.format_eval_report(record))
        print(f"wrote {bench_evaluation.write_record(record, args.out)}")
    return 0


TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _parse_overrides(pairs) -> dict:
    """``["alpha=3", "policy_hidden=256,256"]`` -> ``{"alpha": 3.0, "policy_hidden": (256, 256)}``.

    Each value is read strictly as its field's type (``value_layer_norm=maybe`` and
    ``learning_rate=inf`` are errors); ranges are checked when the config is built.
    """
    types = {f.name: f.type for f in dataclasses.fields(AgentConfig)}
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"--set takes name=value pairs, got {pair!r}")
        name, value = pair.split("=", 1)
        if name not in types:
            raise ValueError(f"--set: unknown hyperparameter {name!r}; valid: {sorted(types)}")
        if name in out:
            raise ValueError(f"--set {name} is given twice; give it once")
        kind = str(types[name])
        try:
            if "tuple" in kind:
                out[name] = tuple(int(v) for v in value.split(","))
            elif kind == "int":
                out[name] = int(value)
            elif kind == "float":
                out[name] = float(value)
                checks.check_number(out[name], f"--set {name}={value}:")
            elif kind == "bool":
                if value.lower() not in TRUE_WORDS + FALSE_WORDS:
                    raise ValueError(f"--set {name}={value}: expected true or false")
                out[name] = value.lower() in TRUE_WORDS
            else:
                out[name] = value
        except ValueError as err:
            if str(err).startswith("--set"):
                raise
            example = {"int": "an integer", "float": "a number", "str": "a word"}.get(kind, "integers like 256,256")
            raise ValueError(f"--set {name}={value}: expected {example}") from None
    return out


def spec_from_args(args):
    """The ``RunSpec`` a parsed ``train`` command line describes."""
    if args.task is None and args.tasks is None:
        raise ValueError("give --task TASK, or --tasks TASK [TASK ...] for several tasks of one domain")
    if args.task is not None and args.tasks is not None:
        raise ValueError("give --task TASK or --tasks TASK [TASK ...], not both")
    task = args.task if args.task is not None else tuple(args.tasks)
    return RunSpec(task=task, agent=args.agent, seeds=tuple(args.seeds), steps=args.steps, dataset=args.dataset,
                   out=args.out, profile=args.profile, overrides=_parse_overrides(args.set),
                   eval_every=args.eval_every, eval_episodes=args.eval_episodes, save_every=args.save_every,
                   dataset_episodes=args.dataset_episodes, data_dir=args.data_dir, workers=args.workers,
                   video_episodes=args.video_episodes, episode_length=args.episode_length,
                   eval_workers=args.eval_workers,
                   max_eval_steps=args.max_eval_steps, label=args.label)


def _train(args) -> int:
    spec = spec_from_args(args)
    received = {}

    def stop_on_sigterm(signum, frame):  # a cluster's time limit: save and stop, as for Ctrl-C
        received["signal"] = signum
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        records = run(spec, resume=args.resume, progress=not args.no_progress, command=_command_line(args.argv),
                      max_minutes=args.max_minutes)
    except SegmentEnded as segment:  # a planned stop, like a cluster job's time limit: not an error
        for r in segment.records:
            print(f"{_run_label(r)}: {r['steps']} of {r['target_steps']} steps, unfinished")
        print(segment)
        return 0
    except RunInterrupted as stop:
        print(stop, file=sys.stderr)
        return 128 + received.get("signal", signal.SIGINT)
    except KeyboardInterrupt:
        print(f"interrupted; {args.out} keeps what was saved before. Run the same command again (with --resume "
              f"if {os.path.join(args.out, 'run.json')} exists)", file=sys.stderr)
        return 128 + received.get("signal", signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
    for r in records:
        print(f"{_run_label(r)}: success rate {r['final_success_rate']} after {r['steps']} steps "
              f"({r['wall_time_s']:.0f} s on {r['device']})")
    print(f"records in {args.out}/records/")
    return 0


def _run_label(record: dict) -> str:
    """``seed S`` in a one-task run, ``TASK seed S`` when the run trained several tasks."""
    return f"{record['task']} seed {record['seed']}" if record.get("tasks_in_program") else f"seed {record['seed']}"


def _generate(args) -> int:
    # By default, the folder that `train --dataset generated` reads for these settings.
    episode_length = args.episode_length or published_episode_length(args.name)
    out = os.path.expanduser(args.out) if args.out else generated_folder(
        num_episodes=args.episodes, seed=args.seed, episode_length=episode_length)
    result = generate_dataset(args.name, out, num_episodes=args.episodes, seed=args.seed, workers=args.workers,
                              episode_length=episode_length)
    stats = result.stats
    print(f"wrote {result.train_path} and {result.val_path}: {stats['num_transitions']} transitions in "
          f"{stats['seconds']:.1f} s ({stats['transitions_per_second']:.0f} transitions/s, {stats['workers']} workers)")
    return 0


def _evaluate(args) -> int:
    if args.video_episodes > args.episodes:
        raise ValueError(f"--video-episodes {args.video_episodes} exceeds --episodes {args.episodes}; "
                         f"record at most as many episodes as are run")
    if (args.run is None) == (args.agent_file is None):
        raise ValueError("give --run RUN_DIR (a train command's --out) or --agent-file FILE (an export), one of them")
    if args.video_out is not None and (args.agent_file is None or args.video_episodes != 1):
        raise ValueError("--video-out names one video: give it with --agent-file and --video-episodes 1 (a run's "
                         "videos go to RUN_DIR/videos/)")
    if args.agent_file is not None:
        return _evaluate_agent_file(args)
    with claim_for_reading(args.run, _command_line(args.argv)):
        if args.video_episodes > 0:
            check_writable_directory(os.path.join(args.run, "videos"), "--run (for its videos/)")
        info, states, meta = load_run(args.run)
        runs = runs_of(info)
        tasks = list(dict.fromkeys(task for task, _ in runs))
        if args.task is not None and args.task not in tasks:
            raise ValueError(f"task {args.task} is not in {args.run} (its tasks: {', '.join(tasks)})")
        several = len(tasks) > 1
        chosen = [i for i, (task, _) in enumerate(runs) if args.task in (None, task)]
        picked = jax.tree_util.tree_map(lambda x: x[np.asarray(chosen)], states)
        try:  # every chosen (task, seed) at once, each with the evaluation seed --seed
            results = evaluate_many([runs[i][0] for i in chosen], picked, args.episodes, [args.seed] * len(chosen),
                                    max_steps=args.max_steps, video_episodes=args.video_episodes)
            for i, result in zip(chosen, results):
                task, seed = runs[i]
                name = f"{task} seed {seed}" if several else f"seed {seed}"
                print(f"{name} (step {meta['step']}): success rate {result['success_rate']:.3f} over "
                      f"{args.episodes} episodes")
                for j, frames in enumerate(result["frames"]):
                    prefix = f"eval-{task}-" if several else "eval-"
                    path = os.path.join(args.run, "videos", f"{prefix}seed{seed}-episode{j}.mp4")
                    write_video(frames, path)
                    print(f"  video: {path}")
        except KeyboardInterrupt:
            print(f"interrupted; {args.run} is unchanged (evaluation writes nothing but videos)", file=sys.stderr)
            return 130
    return 0


def _evaluate_agent_file(args) -> int:
    """``evaluate --agent-file``: an exported agent (or its acting part) on its task, or on ``--task``."""
    if not os.path.isfile(args.agent_file):
        raise ValueError(f"--agent-file {args.agent_file} is not a file; pass what `python -m rql_lite export` wrote")
    if args.video_out is not None:
        check_writable_directory(os.path.dirname(os.path.abspath(args.video_out)), "--video-out's folder")
    state, meta = checkpoint.load_agent(args.agent_file)
    task = args.task or meta.get("task")
    if not task:
        raise ValueError(f"{args.agent_file} names no task; give --task")
    stacked = jax.tree_util.tree_map(lambda x: x[None], state)
    (result,) = evaluate_many([task], stacked, args.episodes, [args.seed], max_steps=args.max_steps,
                              video_episodes=args.video_episodes)
    print(f"{task}, {args.agent_file} (step {meta.get('step')}): success rate {result['success_rate']:.3f} over "
          f"{args.episodes} episodes")
    for j, frames in enumerate(result["frames"]):
        path = args.video_out or f"{os.path.splitext(args.agent_file)[0]}-episode{j}.mp4"
        write_video(frames, path)
        print(f"  video: {path} ({len(frames)} frames; success {result['successes'][j]})")
    return 0


def _node(args) -> int:
    options = NodeOptions(
        out=args.out, tasks=tuple(args.tasks), agents=tuple(args.agents), seeds=tuple(args.seeds), profile=args.profile,
        work=args.work, data_dir=args.data_dir, workers=args.workers, overrides=_parse_overrides(args.set),
        train={name: getattr(args, name) for name in TRAIN_PASS}, segment_minutes=args.segment_minutes,
        total_minutes=args.total_minutes, fit_minutes=args.fit_minutes, bench=not args.no_bench,
        bench_args=tuple(shlex.split(args.bench_args)) if args.bench_args is not None else None,
        bench_seconds=args.bench_seconds, video_agent=args.video_agent, video_task=args.video_task,
        video_seed=args.video_seed, archive=args.archive)
    options.check()  # every ValueError before anything is created
    return run_node(options, args.argv)


def _kit(args) -> int:
    if args.print_wheelhouse_command:
        pyproject = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")
        print(shlex.join(kit.wheelhouse_command(pyproject, args.out, args.python_version, args.glibc_minor, args.jax)))
        return 0
    kit.make_kit(args.out, python_version=args.python_version, glibc_minor=args.glibc_minor,
                 download_dir=args.download_dir)
    return 0


def _sweep_submit(args) -> int:
    plan = sweep.SweepPlan(
        out=args.out, domains=tuple(args.domains or ()), tasks=tuple(args.tasks or ()), agents=tuple(args.agents),
        seeds=tuple(args.seeds), profile=args.profile, overrides=_parse_overrides(args.set),
        train={name: getattr(args, name) for name in sweep.TRAIN_FLAGS}, dataset=args.dataset, data_dir=args.data_dir,
        time_minutes=args.time, margin_minutes=args.margin_minutes, cpus_per_task=args.cpus_per_task, gres=args.gres,
        partition=args.partition, account=args.account, sbatch_lines=tuple(args.sbatch_line or ()),
        job_name=args.job_name, python=args.python or sys.executable)
    sweep.submit_sweep(plan, _command_line(args.argv), dry_run=args.dry_run)
    return 0


def _sweep_status(args) -> int:
    rows, info = sweep.sweep_status(args.sweep)
    print(sweep.format_status(rows, info, args.sweep))
    return 0


def _sweep_collect(args) -> int:
    sweep.collect(args.sweep, results_dir=args.results)
    return 0


def _sweep_element(args) -> int:
    return sweep.run_element(args.sweep, args.index, args.max_minutes)


def _export(args) -> int:
    if os.path.isdir(args.out):
        raise ValueError(f"export --out {args.out} is a directory; give a file path, e.g. "
                         f"{os.path.join(args.out, f'agent-seed{args.seed}.msgpack')}")
    if os.path.exists(args.out) and not args.overwrite:
        raise ValueError(f"export --out {args.out} exists; choose another path, or pass --overwrite to replace it")
    check_writable_directory(os.path.dirname(os.path.abspath(args.out)), "export --out's folder")
    with claim_for_reading(args.run, _command_line(args.argv)):
        runs = runs_of(read_run_info(args.run))
        tasks = list(dict.fromkeys(task for task, _ in runs))
        if args.task is None and len(tasks) > 1:
            raise ValueError(f"{args.run} trained several tasks; choose one with --task ({', '.join(tasks)})")
        task = tasks[0] if args.task is None else args.task
        if task not in tasks:
            raise ValueError(f"task {task} is not in {args.run} (its tasks: {', '.join(tasks)})")
        seeds = [seed for t, seed in runs if t == task]
        if args.seed not in seeds:
            raise ValueError(f"seed {args.seed} is not in {args.run} (its seeds: {seeds})")
        info, states, meta = load_run(args.run)
        state = unstack(states, runs.index((task, args.seed)))
        checkpoint.save_agent(args.out, state, {
            "task": task, "agent": info["identity"]["agent"], "method": info.get("method"),
            "seed": args.seed, "run_command": info.get("command"), "git_commit": info.get("git_commit"),
            "dataset": info["dataset"]}, policy_only=args.policy_only)
    kept = "EMA policy" if args.policy_only else "agent"
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 2**20:.2f} MiB): the {kept} of {task} seed {args.seed} "
          f"of {args.run} at step {meta['step']}")
    return 0


def _add_run_argument(parser) -> None:
    parser.add_argument("--run", required=True, help="a train command's --out directory")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m rql_lite", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="measure updates/s, FLOPs per update and FLOP/s")
    bench.add_argument("--configs", nargs="*", default=["paper", "smoke"],
                       help="which configurations (paper, smoke); none, with --eval-runs, times evaluation only")
    bench.add_argument("--seeds", type=COUNT, default=4, help="also time this many vmapped seeds (1 to skip)")
    bench.add_argument("--updates-per-dispatch", type=COUNT, default=None,
                       help="updates per lax.scan call (default: 10 on CPU for paper, 200 for smoke, 1000 on GPU)")
    bench.add_argument("--min-seconds", type=POSITIVE, default=10.0,
                       help="time each measurement for at least this long")
    bench.add_argument("--runs", type=COUNT, nargs="*", default=None, metavar="R",
                       help="runs in one program for the runs sweep (tasks x seeds, aggregate updates/s, projections); "
                            "default 1 2 4 8 16 20, on CPU 1 2 4 for paper; --runs with no value skips the sweep")
    bench.add_argument("--sweep-seconds", type=POSITIVE, default=10.0,
                       help="timed seconds per R in the sweep (and per precision), split over --rounds")
    bench.add_argument("--sweep-updates-per-dispatch", type=COUNT, default=None,
                       help="updates per run per dispatch in the sweep (default: on CPU 8 for paper, 100 for smoke; 200 on GPU)")
    bench.add_argument("--rounds", type=COUNT, default=3,
                       help="interleaved timing rounds in the sweep (median kept: a shared machine's load varies)")
    bench.add_argument("--precision", action="store_true",
                       help="also measure matmul_precision bfloat16 against default: cost at each config and "
                            "learning on the chapter-5 toy (3 seeds x 4000 updates each)")
    bench.add_argument("--max-seconds", type=POSITIVE, default=None,
                       help="a time budget for the whole benchmark, compilation included (a short GPU lease): each "
                            "part gets a share of what is left, and what does not fit is skipped and listed")
    bench.add_argument("--eval-runs", type=COUNT, default=None, metavar="R",
                       help="also time evaluation: R random-init agents, one episode at a time (evaluate) against all "
                            "in lockstep (evaluate_many); a bench-eval-*.json record")
    bench.add_argument("--eval-episodes", type=COUNT, default=50, metavar="E", help="episodes per agent for --eval-runs")
    bench.add_argument("--eval-max-steps", type=COUNT, default=200, help="steps per episode at most for --eval-runs")
    bench.add_argument("--out", default="results/bench", help="directory for the JSON record")
    bench.set_defaults(func=_bench)

    tr = sub.add_parser("train", help="train an agent (RQL, TFQL, BC flow or a baseline) on an OGBench task with the paper's hyperparameters")
    tr.add_argument("--task", default=None, help="e.g. cube-double-play-singletask-task2-v0")
    tr.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                    help="several tasks of one domain (e.g. its task1 ... task5), trained as tasks x seeds agents in "
                         "one program on one copy of the shared dataset; one record per (task, seed)")
    tr.add_argument("--agent", default="rql", choices=list(AGENTS))
    tr.add_argument("--seeds", type=NON_NEGATIVE, nargs="+", default=[0], help="trained side by side in one program: one after another (lax.map) on one CPU device, "
                         "batched (vmap) on an accelerator")
    tr.add_argument("--steps", type=COUNT, default=None, help="gradient steps (profile default: smoke 200, full 1M)")
    tr.add_argument("--dataset", default="generated", help="official | generated | path/to/NAME.npz (default: %(default)s)")
    tr.add_argument("--out", required=True, help="run directory: run.json, checkpoint, records/")
    tr.add_argument("--profile", default="smoke", choices=["smoke", "full"],
                    help="smoke: tiny networks and steps, the CPU check; full: the paper's (default: %(default)s)")
    tr.add_argument("--resume", action="store_true",
                    help="continue the run in --out exactly where it stopped; with a larger --steps, extend it (the "
                         "result is the run planned for that many steps: the key of update i depends on i alone)")
    tr.add_argument("--set", nargs="*", metavar="NAME=VALUE", help="override hyperparameters, e.g. alpha=3 expectile=0.7")
    tr.add_argument("--eval-every", type=COUNT, default=None, help="evaluate every this many steps (profile default)")
    tr.add_argument("--eval-episodes", type=NON_NEGATIVE, default=None,
                    help="episodes per (task, seed) at each evaluation (profile default: smoke 2, full 50)")
    tr.add_argument("--save-every", type=COUNT, default=None, help="checkpoint every this many steps (profile default)")
    tr.add_argument("--dataset-episodes", type=COUNT, default=None, help="episodes to generate (default: profile)")
    tr.add_argument("--episode-length", type=COUNT, default=None, help="steps per generated episode (default: profile)")
    tr.add_argument("--max-eval-steps", type=COUNT, default=None,
                    help="cap on evaluation episode length (default: env's)")
    tr.add_argument("--label", default=None, help="the method's name in results tables (default: the agent, e.g. RQL)")
    tr.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                    help="where datasets are downloaded or generated (default: %(default)s)")
    tr.add_argument("--workers", type=COUNT, default=1, help="processes for dataset generation")
    tr.add_argument("--eval-workers", type=COUNT, default=None,
                    help="env processes for the evaluations (default: up to one per CPU core of the machine; in a "
                         "cluster job, the cores allocated, as sweep sets it)")
    tr.add_argument("--video-episodes", type=NON_NEGATIVE, default=0,
                    help="record this many episodes per seed at the end")
    tr.add_argument("--max-minutes", type=POSITIVE, default=None,
                    help="end cleanly before this many minutes (a segment): save, write the records as unfinished, "
                         "exit 0 and print the command that continues (--resume). The clock starts once Python "
                         "has imported the library, and the first dispatch of every command always runs (so each "
                         "makes progress): leave a margin of a minute or so to a hard time limit")
    tr.add_argument("--no-progress", action="store_true")
    tr.set_defaults(func=_train)

    gen = sub.add_parser("generate", help="generate a manipulation play dataset (OGBench's oracles) or a point-maze "
                                             "navigate dataset (OGBench's noisy subgoal controller)")
    gen.add_argument("name", help="e.g. cube-double-play-v0 or pointmaze-medium-navigate-v0 (or a singletask name)")
    gen.add_argument("--out", default=None,
                     help="folder (default: where train --dataset generated looks, ~/.rql_lite/datasets/generated/...)")
    gen.add_argument("--episodes", type=COUNT, default=None, help="train episodes (default: the published count)")
    gen.add_argument("--episode-length", type=COUNT, default=None,
                     help="steps per episode (default: the published dataset's, 1000, or 2000 for the giant maze)")
    gen.add_argument("--workers", type=COUNT, default=1)
    gen.add_argument("--seed", type=NON_NEGATIVE, default=0)
    gen.set_defaults(func=_generate)

    ev = sub.add_parser("evaluate", help="evaluate a trained run's EMA policy; optionally record videos")
    ev.add_argument("--run", default=None, help="a train command's --out directory (every (task, seed) of it)")
    ev.add_argument("--agent-file", default=None, help="or an agent file written by export (on its task, or --task)")
    ev.add_argument("--episodes", type=COUNT, default=50, help="episodes per (task, seed) (default: %(default)s)")
    ev.add_argument("--task", default=None, help="evaluate only this task of a run that trained several")
    ev.add_argument("--max-steps", type=COUNT, default=None, help="cap on episode length (default: the env's)")
    ev.add_argument("--seed", type=NON_NEGATIVE, default=0,
                    help="evaluation seed (episode resets and policy noise); every trained seed is evaluated")
    ev.add_argument("--video-episodes", type=NON_NEGATIVE, default=0)
    ev.add_argument("--video-out", default=None,
                    help="with --agent-file and --video-episodes 1: the video's path (.mp4 needs ffmpeg; .gif, .npz)")
    ev.set_defaults(func=_evaluate)

    ex = sub.add_parser("export", help="write one (task, seed) of a run as a small agent file (acting and analysis only)")
    _add_run_argument(ex)
    ex.add_argument("--seed", type=NON_NEGATIVE, default=0, help="which trained seed of the run")
    ex.add_argument("--task", default=None, help="which task, for a run that trained several (--tasks)")
    ex.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    ex.add_argument("--policy-only", action="store_true",
                    help="keep only the EMA policy (acting and evaluation): one network of the agent's 22 at the "
                         "paper's size (2 policies, 10 value heads and their 10 targets)")
    ex.add_argument("--out", required=True, help="e.g. results/.../agent-seed0.msgpack")
    ex.set_defaults(func=_export)

    node = sub.add_parser("node", help="a short GPU allocation in one command: dataset, bench, training in segments, "
                                       "records, policy and video in --out (scripts/gpu_node.sh installs first)")
    node.add_argument("--out", required=True, help="what to bring back (created); checkpoints never go here")
    node.add_argument("--tasks", nargs="+", required=True, metavar="TASK",
                      help="one or several tasks of one manipulation domain, trained in one program per agent")
    node.add_argument("--agents", nargs="+", default=["rql"], choices=list(AGENTS),
                      help="one run directory each, trained one after the other (default: rql)")
    node.add_argument("--seeds", type=NON_NEGATIVE, nargs="+", default=[0])
    node.add_argument("--profile", default="full", choices=["smoke", "full"],
                      help="full: the paper's networks and 1M steps (default); smoke: the CPU check")
    for name in ("steps", "eval-every", "save-every", "dataset-episodes", "episode-length", "max-eval-steps"):
        node.add_argument(f"--{name}", type=COUNT, default=None, help="as in train (default: the profile's)")
    node.add_argument("--eval-episodes", type=NON_NEGATIVE, default=None, help="as in train (default: the profile's)")
    node.add_argument("--set", nargs="*", metavar="NAME=VALUE", help="hyperparameter overrides, as in train")
    node.add_argument("--fit-minutes", type=POSITIVE, default=None,
                      help="instead of --steps: per agent, as many updates per run as the rate the benchmark measures "
                           "here for this program's runs fits in this many minutes (evaluation and compilation come "
                           "on top); evaluated and saved half-way and at the end")
    node.add_argument("--segment-minutes", type=POSITIVE, default=9.0,
                      help="each train process ends cleanly before this many minutes (default: %(default)s)")
    node.add_argument("--total-minutes", type=POSITIVE, default=None,
                      help="start no segment that would end later than this many minutes after the start; the "
                           "export and video take a minute more")
    node.add_argument("--work", default=None, help="run directories and JAX's compilation cache (default: gpu-node-work "
                                                   "beside --out); not brought back")
    node.add_argument("--data-dir", default=None, help="dataset cache, as train's --data-dir")
    node.add_argument("--workers", type=COUNT, default=None, help="processes generating the dataset (default: all cores)")
    node.add_argument("--no-bench", action="store_true", help="skip the benchmark")
    node.add_argument("--bench-args", default=None, help="arguments of python -m rql_lite bench, one quoted string "
                                                         "(default: the profile's; the node's own R first)")
    node.add_argument("--bench-seconds", type=POSITIVE, default=None,
                      help="the benchmark's time budget (bench --max-seconds); it runs while the dataset is generated")
    node.add_argument("--video-agent", default=None, help="the run whose EMA policy is exported and filmed (default: "
                                                          "the first agent)")
    node.add_argument("--video-task", default=None, help="(default: the first task)")
    node.add_argument("--video-seed", type=NON_NEGATIVE, default=None, help="(default: the first seed)")
    node.add_argument("--archive", action="store_true", help="pack --out/runs/ into --out/runs.tar.gz")
    node.set_defaults(func=_node)

    kit_parser = sub.add_parser("kit", help="make the offline kit: the trimmed wheels OGBench's manipulation envs need "
                                            "on a GPU image without a package index (needs PyPI)")
    kit_parser.add_argument("--out", required=True, help="a new folder for the wheels and manifest.json")
    kit_parser.add_argument("--python-version", default="3.12", help="the node's Python, 3.X (default: %(default)s)")
    kit_parser.add_argument("--glibc-minor", type=checks.int_argument(17), default=28,
                            help="the node's glibc 2.N, given as N (ldd --version; default: %(default)s)")
    kit_parser.add_argument("--download-dir", default=None, help="reuse wheels downloaded there before")
    kit_parser.add_argument("--print-wheelhouse-command", action="store_true",
                            help="instead of the kit: print the pip download command of a full wheelhouse (every "
                                 "runtime requirement, untrimmed) into --out, for a node that lacks more than "
                                 "OGBench's stack")
    kit_parser.add_argument("--jax", default=None, help="with --print-wheelhouse-command: the node's jax, pinned")
    kit_parser.set_defaults(func=_kit)
    _add_sweep_parser(sub)
    return parser


SWEEP_ACTIONS = ("submit", "status", "collect", "element")


def _add_sweep_parser(sub) -> None:
    sw = sub.add_parser("sweep", help="a SLURM job array per plan, elements trained in segments and requeued until "
                                      "finished; sweep status, sweep collect",
                        description="python -m rql_lite sweep [submit] ... plans and submits; sweep status DIR and "
                                    "sweep collect DIR follow it (see rql_lite.runs.sweep)")
    actions = sw.add_subparsers(dest="sweep_action", required=True)
    submit = actions.add_parser("submit", help="write the job-array script and submit it (the default action)")
    submit.add_argument("--out", required=True, help="the sweep's directory (sweep.json, sweep.sbatch, logs/, runs/), "
                                                     "on storage every node sees")
    submit.add_argument("--domains", nargs="+", default=None, metavar="DOMAIN",
                        help="every task (1-5) of these domains, e.g. cube-double-play scene-play")
    submit.add_argument("--tasks", nargs="+", default=None, metavar="TASK", help="and/or these tasks")
    submit.add_argument("--agents", nargs="+", default=["rql"], choices=list(AGENTS),
                        help="one element per domain and agent (default: rql)")
    submit.add_argument("--seeds", type=NON_NEGATIVE, nargs="+", default=[0], help="trained in each element's program")
    submit.add_argument("--profile", default="full", choices=["smoke", "full"], help="default: %(default)s")
    for name in ("steps", "eval-every", "save-every", "dataset-episodes", "episode-length", "max-eval-steps"):
        submit.add_argument(f"--{name}", type=COUNT, default=None, help="as in train (default: the profile's)")
    submit.add_argument("--eval-episodes", type=NON_NEGATIVE, default=None, help="as in train (default: the profile's)")
    submit.add_argument("--set", nargs="*", metavar="NAME=VALUE", help="hyperparameter overrides, as in train")
    submit.add_argument("--dataset", default="generated", help="generated (default), official, or a NAME.npz of one "
                                                               "domain")
    submit.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="dataset cache shared by the elements, on storage "
                                                                     "every node sees (default: %(default)s)")
    submit.add_argument("--time", type=_minutes, default=None, metavar="MINUTES",
                        help="each element's wall time in minutes (sbatch --time); required")
    submit.add_argument("--margin-minutes", type=POSITIVE, default=5.0,
                        help="a segment ends this long before the time limit: startup, the last evaluation and save "
                             "(default: %(default)s); segments are train --max-minutes (time - margin)")
    submit.add_argument("--cpus-per-task", type=COUNT, default=None,
                        help="CPUs per element: dataset generation and evaluation workers (sbatch --cpus-per-task)")
    submit.add_argument("--gres", default=None, help="e.g. gpu:1 (sbatch --gres)")
    submit.add_argument("--partition", default=None, help="sbatch --partition")
    submit.add_argument("--account", default=None, help="sbatch --account")
    submit.add_argument("--sbatch-line", action="append", metavar="OPTION",
                        help="another #SBATCH option, repeatable, e.g. --sbatch-line=--qos=long")
    submit.add_argument("--job-name", default=None, help="default: rql-NAME of --out")
    submit.add_argument("--python", default=None, help="the Python with rql_lite the elements run (default: this "
                                                       "one); a full path if it exists on the nodes only")
    submit.add_argument("--dry-run", action="store_true", help="write the script and sweep.json; submit nothing")
    submit.set_defaults(func=_sweep_submit)
    status = actions.add_parser("status", help="every (task, agent, seed): step, finished, its element's SLURM state")
    status.add_argument("sweep", help="the sweep's --out")
    status.set_defaults(func=_sweep_status)
    gather = actions.add_parser("collect", help="copy finished records (run.json and records/) into results/")
    gather.add_argument("sweep", help="the sweep's --out")
    gather.add_argument("--results", default=None, help="into RESULTS/NAME-of-the-sweep/ (default: the checkout's "
                                                        "results/, where chapter 7 and the Results page read)")
    gather.set_defaults(func=_sweep_collect)
    element = actions.add_parser("element", help="what one array element runs (the job script calls it)")
    element.add_argument("sweep", help="the sweep's --out")
    element.add_argument("index", type=NON_NEGATIVE, help="the element ($SLURM_ARRAY_TASK_ID)")
    element.add_argument("--max-minutes", type=POSITIVE, required=True, help="the segment's length (train's)")
    element.set_defaults(func=_sweep_element)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["sweep"] and (len(argv) == 1 or argv[1] not in (*SWEEP_ACTIONS, "-h", "--help")):
        argv = ["sweep", "submit", *argv[1:]]  # plain `sweep ...` plans and submits
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except ValueError as err:  # bad input: one clear line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the system refused (disk full, permissions changed mid-run): one line too
        where = f": {err.filename}" if err.filename else ""
        print(f"error: {err.strerror or err}{where}; fix that and run the command again (with --resume for train)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
