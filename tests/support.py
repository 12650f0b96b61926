"""Helpers shared by the tests (plain functions; the shared fixtures are in conftest.py).

The tiny run every run test uses: one task of cube-single, two seeds, 16-unit networks, 40 steps
evaluated and saved every 20, on a two-episode generated dataset (``conftest.data_dir``).
"""
import hashlib
import json
import os

import jax
import numpy as np

from rql_lite.cli import main
from rql_lite.runs.rundir import LOCK_FILE, load_run
from rql_lite.runs.spec import RunSpec

TASK = "cube-single-play-singletask-task2-v0"
TASK1 = TASK.replace("task2", "task1")
TINY = dict(policy_hidden=(16,), value_hidden=(16,), num_values=2, batch_size=16)
QUIET = dict(progress=False, log=lambda *_: None)
DATASET_EPISODES, EPISODE_LENGTH = 2, 100  # the generated dataset of conftest.data_dir


def spec(out, data_dir, **kw) -> RunSpec:
    """The tiny run's spec in ``out``; ``kw`` changes its fields."""
    base = dict(task=TASK, seeds=(0, 1), steps=40, out=str(out), profile="smoke", overrides=TINY, eval_every=20,
                eval_episodes=1, save_every=20, dataset_episodes=DATASET_EPISODES, episode_length=EPISODE_LENGTH,
                max_eval_steps=20, data_dir=data_dir)
    base.update(kw)
    return RunSpec(**base)


def train_argv(out, data_dir, *extra) -> list[str]:
    """The command line of ``spec(out, data_dir)``, then ``extra``."""
    return ["train", "--task", TASK, "--seeds", "0", "1", "--steps", "40", "--eval-every", "20", "--save-every", "20",
            "--eval-episodes", "1", "--max-eval-steps", "20", "--dataset-episodes", str(DATASET_EPISODES),
            "--episode-length", str(EPISODE_LENGTH), "--data-dir", data_dir, "--out", str(out), "--no-progress",
            "--set", "policy_hidden=16", "value_hidden=16", "num_values=2", "batch_size=16", *extra]


def outcome(out):
    """What a finished run leaves that must not depend on interruptions: records without wall
    times, and the checkpoint's parameters. The git commit is left out too: it is the checkout of
    the process that wrote the record, and others may commit or edit files while the tests run."""
    records = {}
    for folder, _, names in os.walk(os.path.join(out, "records")):
        for name in sorted(names):
            with open(os.path.join(folder, name)) as f:
                record = json.load(f)
            for key in ("wall_time_s", "updated", "command", "git_commit"):
                record.pop(key)
            record["success_curve"] = [{k: v for k, v in p.items() if k != "wall_time_s"}
                                       for p in record["success_curve"]]
            records[os.path.relpath(os.path.join(folder, name), out)] = record
    _, states, meta = load_run(str(out))
    return records, [np.asarray(x) for x in jax.tree_util.tree_leaves(states)], meta


def assert_same_outcome(out, reference):
    """``out``'s run ended exactly as ``reference`` (an ``outcome``): records and, bitwise, parameters."""
    records, leaves, meta = outcome(out)
    ref_records, ref_leaves, ref_meta = reference
    assert records == ref_records
    assert meta["step"] == ref_meta["step"]
    for a, b in zip(leaves, ref_leaves):
        np.testing.assert_array_equal(a, b)  # bitwise on CPU


def snapshot(root):
    """Every file and folder under ``root`` with its mtime and content hash. The lock file is left
    out: it is bookkeeping, and a stale one left by a killed process is reused."""
    found = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), root)] = "dir"
        for name in names:
            if name == LOCK_FILE:
                continue
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = (os.stat(path).st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
    return found


def cli(capsys, *argv):
    """``python -m rql_lite ARGV`` in this process: ``(exit code, stderr)``."""
    try:
        code = main(list(argv))
    except SystemExit as exit:
        code = exit.code
    return code, capsys.readouterr().err


def assert_one_line_error(code, err, *needles):
    """A refusal as the command line gives it: exit code 2 and one line on stderr naming ``needles``."""
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def interrupted_at_call(real, call: int):
    """``real`` wrapped to raise ``KeyboardInterrupt`` (as Ctrl-C would) at its ``call``-th call, and
    to run as ``real`` otherwise. Patch it in with pytest's ``monkeypatch.setattr``."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return wrapper
