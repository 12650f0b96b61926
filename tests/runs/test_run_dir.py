"""Run directories under interruption, concurrency and bad input.

Each test starts a tiny run (two seeds, 16-unit networks, 40 steps) on a two-episode generated
dataset and does to it what a cluster or a tired user does: Ctrl-C and SIGTERM in the middle of
an evaluation, kill -9 in the middle of a checkpoint or run.json write, a second command on the
same directory, flipped bits, read-only directories, odd arguments. Every interrupted run, once
resumed, must end with the records and (bitwise, on CPU) the parameters of an uninterrupted one.
"""
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from support import (QUIET, TASK, assert_one_line_error, assert_same_outcome, cli, interrupted_at_call, snapshot,
                     spec, train_argv)

from rql_lite import files
from rql_lite.runs import checkpoint
from rql_lite.runs.experiment import RunInterrupted, TrainingDiverged, check_out_dir, run
from rql_lite.runs.rundir import CHECKPOINT_FILE, LOCK_FILE, load_run, remove_stale_temporaries


# --------------------------------------------------------------------------- real processes

# Runs ``python -m rql_lite ARGV`` with one hook that stops it at a chosen moment and says so on
# stdout, so that the test can kill or signal it exactly there.
HOOKED_CLI = r'''
import os, sys, time
from rql_lite import files
from rql_lite.runs import checkpoint, experiment
hook, argv = sys.argv[1], sys.argv[2:]


def stall():
    print("STALLED", flush=True)
    time.sleep(600)


if hook.startswith("checkpoint"):  # half-way through writing checkpoint number N
    real_write, calls, stop_at = checkpoint.write_bytes_atomic, [], int(hook.split(":")[1])

    def write(path, data, keep_previous=False):
        calls.append(path)
        if len(calls) == stop_at:
            with open(files.temporary_path(path), "wb") as f:
                f.write(data[: len(data) // 2])
            stall()
        return real_write(path, data, keep_previous)

    checkpoint.write_bytes_atomic = write
elif hook == "run.json":  # half-way through writing run.json
    real_json = experiment.write_json_atomic

    def write_json(path, payload):
        if path.endswith("run.json"):
            with open(files.temporary_path(path), "w") as f:
                f.write('{"identity": {"task"')
            stall()
        return real_json(path, payload)

    experiment.write_json_atomic = write_json
elif hook.startswith("evaluate"):  # inside evaluation call number N (all runs of one step at once)
    real_evaluate, calls, stop_at = experiment.evaluate_many, [], int(hook.split(":")[1])

    def evaluate_many(*args, **kwargs):
        calls.append(1)
        if len(calls) == stop_at:
            stall()
        return real_evaluate(*args, **kwargs)

    experiment.evaluate_many = evaluate_many
elif hook == "locked":  # stop right after taking the run directory's lock
    real_lock = experiment.RunDirectoryLock.__init__

    def lock(self, *args, **kwargs):
        real_lock(self, *args, **kwargs)
        stall()

    experiment.RunDirectoryLock.__init__ = lock
from rql_lite.cli import main
sys.exit(main(argv))
'''


# The time limits below only stop a hung child: a 2-core machine shared with other jobs can make a
# child that normally stalls within seconds take minutes.
def start_stalled(hook, argv, compile_cache, timeout=600):
    """Start the hooked command line and return it once it has stalled where ``hook`` says."""
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=compile_cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    # Ctrl-C as a terminal delivers it: a child started from a background job (``cmd &`` in a script, as
    # some CI runners do) inherits SIGINT ignored, and Python then never turns it into KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-c", HOOKED_CLI, hook, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:
            if line.strip() == "STALLED":
                return proc
        pytest.fail(f"the process ended before its hook {hook!r}: {proc.wait()} {proc.stderr.read()[-3000:]}")
    finally:
        watchdog.cancel()


def finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_kill_9_mid_checkpoint_write_leaves_a_run_that_resumes_exactly(tmp_path, data_dir, straight, compile_cache):
    out = tmp_path / "run"
    proc = start_stalled("checkpoint:2", train_argv(out, data_dir), compile_cache)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    leftovers = [n for n in os.listdir(out) if files.is_temporary(n)]
    assert leftovers == [files.temporary_path(CHECKPOINT_FILE, proc.pid)]
    assert checkpoint.read_metadata(str(out / CHECKPOINT_FILE))["step"] == 20  # the last complete save

    logged = []
    run(spec(out, data_dir), resume=True, progress=False, log=logged.append)
    assert any("removed" in line and "killed" in line for line in logged), logged
    assert not [n for n in os.listdir(out) if files.is_temporary(n)]
    assert_same_outcome(out, straight)


def test_kill_9_while_run_json_is_written_does_not_get_the_directory_stuck(tmp_path, data_dir, straight,
                                                                            compile_cache):
    out = tmp_path / "run"
    proc = start_stalled("run.json", train_argv(out, data_dir), compile_cache)
    proc.kill()
    proc.wait()
    assert sorted(os.listdir(out)) == sorted([LOCK_FILE, files.temporary_path("run.json", proc.pid)])
    assert check_out_dir(spec(out, data_dir).resolved(), resume=False) is None  # a plain rerun may start
    assert check_out_dir(spec(out, data_dir).resolved(), resume=True) is None  # so may --resume
    run(spec(out, data_dir), resume=True, **QUIET)
    assert_same_outcome(out, straight)
    assert LOCK_FILE not in os.listdir(out)  # released at the end


@pytest.mark.parametrize("sig, evaluation, step", [(signal.SIGINT, 1, 20), (signal.SIGTERM, 2, 40)])
def test_ctrl_c_or_sigterm_during_an_evaluation_saves_and_says_how_to_continue(tmp_path, capsys, data_dir, straight,
                                                                              compile_cache, sig, evaluation, step):
    """Evaluation 1 is step 20 (both seeds in one evaluate_many call); evaluation 2 is the last step (40). Saving only
    every 40 steps: the interruption at 20 must still keep those 20 steps."""
    out = tmp_path / "run"
    argv = train_argv(out, data_dir)
    argv[argv.index("--save-every") + 1] = "40"
    proc = start_stalled(f"evaluate:{evaluation}", argv, compile_cache)
    proc.send_signal(sig)
    code, _, err = finish(proc)
    assert code == 128 + sig, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert f"interrupted at step {step} of 40" in last and "Continue with: python -m rql_lite train" in last, err
    meta = checkpoint.read_metadata(str(out / CHECKPOINT_FILE))
    assert meta["step"] == step  # the steps since the last interval save are kept
    record = json.loads((out / "records" / "seed0.json").read_text())
    assert record["steps"] == step and not record["finished"]  # the cut-short evaluation is not claimed
    assert all(p["step"] < step for p in record["success_curve"])

    resume = shlex.split(last.split("Continue with: ", 1)[1])
    assert resume[:3] == ["python", "-m", "rql_lite"] and resume[-1] == "--resume"
    assert cli(capsys, *resume[3:])[0] == 0
    assert_same_outcome(out, straight)


def test_two_commands_on_one_run_directory(tmp_path, capsys, data_dir, compile_cache):
    out = tmp_path / "run"
    # The holder stops right after taking the lock, and keeps it until killed.
    holder = start_stalled("locked", train_argv(out, data_dir), compile_cache)
    try:
        before = snapshot(out)
        tic = time.perf_counter()
        second = subprocess.run([sys.executable, "-m", "rql_lite", *train_argv(out, data_dir)], capture_output=True,
                                text=True, timeout=240, check=False)
        assert time.perf_counter() - tic < 60  # at once: no data loaded, nothing trained
        assert_one_line_error(second.returncode, second.stderr, f"in use by PID {holder.pid}",
                              "python -m rql_lite train --task")
        code, err = cli(capsys, *train_argv(out, data_dir, "--agent", "tfql"))  # another run: busy, not "mixed"
        assert_one_line_error(code, err, f"PID {holder.pid}")
        assert_one_line_error(*cli(capsys, "evaluate", "--run", str(out)), f"PID {holder.pid}")
        assert_one_line_error(*cli(capsys, "export", "--run", str(out), "--out", str(tmp_path / "a.msgpack")),
                              f"PID {holder.pid}")
        assert not (tmp_path / "a.msgpack").exists()
        assert snapshot(out) == before  # the second commands touched nothing
    finally:
        holder.kill()
        holder.wait()
    # The lock died with its holder (kill -9): the directory is free again, and not stuck.
    run(spec(out, data_dir, steps=20), **QUIET)


# kill -9 at random moments and at the two dangerous ones, again and again, of a process that
# does nothing but write checkpoints: the newest complete one is always found, never a partial one.
SAVE_LOOP = r'''
import os, sys, time
import numpy as np
from rql_lite.runs import checkpoint
path, hook = sys.argv[1], sys.argv[2]


def states(i):
    return {"a": np.full((512, 512), i, np.float32), "b": np.full((1000,), i, np.int32)}


def stall(*_):
    print("STALLED", flush=True)
    time.sleep(600)


for i in range(1000):
    if i == 2 and hook == "fsync":  # the temporary file is complete but not yet renamed
        os.fsync = stall
    if i == 2 and hook == "rotate":  # the latest has become .prev, the new one is not in place yet
        real_replace = os.replace

        def replace(src, dst):
            real_replace(src, dst)
            if dst.endswith(checkpoint.PREVIOUS_SUFFIX):
                stall()

        os.replace = replace
    checkpoint.save(path, states(i), {"i": i})
    print(f"saved {i}", flush=True)
'''


def test_kill_9_during_checkpoint_writes_never_loses_or_mixes_a_checkpoint(tmp_path):
    template = {"a": np.zeros((512, 512), np.float32), "b": np.zeros((1000,), np.int32)}
    rng = random.Random(14)
    for attempt, hook in enumerate(["fsync", "rotate", "fsync", "rotate", "random", "random"]):
        folder = tmp_path / f"attempt{attempt}"
        folder.mkdir()
        path = str(folder / CHECKPOINT_FILE)
        proc = subprocess.Popen([sys.executable, "-c", SAVE_LOOP, path, hook], stdout=subprocess.PIPE, text=True)
        saved = -1
        for line in proc.stdout:
            if line.startswith("saved"):
                saved = int(line.split()[1])
            if line.strip() == "STALLED" or (hook == "random" and saved >= 1):
                break
        if hook == "random":
            time.sleep(rng.uniform(0.0, 0.5))
        proc.kill()
        proc.wait()
        for line in proc.stdout:  # saves completed while the kill was on its way
            if line.startswith("saved"):
                saved = int(line.split()[1])
        temporaries = [n for n in os.listdir(folder) if files.is_temporary(n)]
        if hook != "random":
            assert temporaries == [files.temporary_path(CHECKPOINT_FILE, proc.pid)]
        assert remove_stale_temporaries(str(folder)) == sorted(str(folder / n) for n in temporaries)
        states, meta, used, problems = checkpoint.load_latest(path, template)
        assert not problems and saved <= meta["i"] <= saved + 1
        if hook != "random":
            assert (used == path + checkpoint.PREVIOUS_SUFFIX) == (hook == "rotate")
        for leaf in states.values():
            assert np.all(np.asarray(leaf) == meta["i"])  # one save's arrays, whole


# --------------------------------------------------------------------------- in-process runs

def test_the_last_step_is_evaluated_and_saved_whatever_the_intervals(tmp_path, data_dir):
    out = tmp_path / "run"
    (record, _) = run(spec(out, data_dir, steps=30), **QUIET)
    assert record["steps"] == 30 and record["finished"]
    assert [p["step"] for p in record["success_curve"]] == [20, 30]
    meta = checkpoint.read_metadata(str(out / CHECKPOINT_FILE))
    assert meta["step"] == 30 and [p["step"] for p in meta["curves"]["0"]] == [20, 30]
    on_disk = json.loads((out / "records" / "seed0.json").read_text())
    assert on_disk["steps"] == meta["step"]  # a record never claims more than its checkpoint holds


def test_resuming_a_finished_run_says_it_is_finished_and_trains_nothing(tmp_path, data_dir, straight, straight_dir):
    out = tmp_path / "run"
    shutil.copytree(straight_dir, out)
    logged = []
    records = run(spec(out, data_dir), resume=True, progress=False, log=logged.append)
    assert any("is already finished (40 steps): nothing to train" in line for line in logged), logged
    assert all(r["finished"] and r["steps"] == 40 for r in records)
    assert_same_outcome(out, straight)


def test_a_damaged_checkpoint_is_refused_by_name_and_the_previous_one_used(tmp_path, capsys, data_dir, straight):
    out = tmp_path / "run"
    run(spec(out, data_dir), **QUIET)
    latest, previous = out / CHECKPOINT_FILE, out / (CHECKPOINT_FILE + checkpoint.PREVIOUS_SUFFIX)
    assert checkpoint.read_metadata(str(previous))["step"] == 20
    damaged = bytearray(latest.read_bytes())
    damaged[len(damaged) // 2] ^= 0x10  # one flipped bit, deep in the parameters
    latest.write_bytes(bytes(damaged))

    warnings = []
    _, _, meta = load_run(str(out), log=warnings.append)
    assert meta["step"] == 20 and "checksum" in warnings[0] and str(latest) in warnings[0]

    logged = []
    run(spec(out, data_dir), resume=True, progress=False, log=logged.append)
    assert any("moved the damaged checkpoint" in line for line in logged), logged
    assert (out / (CHECKPOINT_FILE + ".damaged")).exists()
    assert_same_outcome(out, straight)  # steps 20 to 40 trained again, to the same parameters

    for path in (latest, previous):  # now both are damaged: refused, naming both, changing nothing
        path.write_bytes(path.read_bytes()[:-100])
    before = snapshot(out)
    with pytest.raises(ValueError, match=f"neither checkpoint.*{CHECKPOINT_FILE}.*{CHECKPOINT_FILE}.prev"):
        run(spec(out, data_dir), resume=True, **QUIET)
    assert snapshot(out) == before
    code, err = cli(capsys, "evaluate", "--run", str(out))
    assert_one_line_error(code, err, "neither checkpoint")


def test_a_diverging_run_stops_with_a_message_and_keeps_only_what_was_finite(tmp_path, data_dir, monkeypatch):
    import rql_lite.train as train_module

    real, calls = train_module.run_updates_runs, []

    def diverge_in_second_dispatch(*args):
        calls.append(1)
        states, metrics = real(*args)
        if len(calls) == 2:  # as a too-large learning rate would make it
            metrics = {**metrics, "value_loss": metrics["value_loss"] * np.nan}
        return states, metrics

    monkeypatch.setattr(train_module, "run_updates_runs", diverge_in_second_dispatch)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="value_loss became NaN.*keeps step 20.*learning_rate"):
        run(spec(out, data_dir), **QUIET)
    assert checkpoint.read_metadata(str(out / CHECKPOINT_FILE))["step"] == 20
    assert json.loads((out / "records" / "seed0.json").read_text())["steps"] == 20


def test_ctrl_c_during_training_in_process_keeps_the_last_complete_dispatch(tmp_path, data_dir, straight, monkeypatch):
    import rql_lite.train as train_module

    real = train_module.run_updates_runs
    monkeypatch.setattr(train_module, "run_updates_runs", interrupted_at_call(real, 2))
    out = tmp_path / "run"
    with pytest.raises(RunInterrupted, match="interrupted at step 20 of 40.*--resume"):
        run(spec(out, data_dir), **QUIET)
    monkeypatch.setattr(train_module, "run_updates_runs", real)
    run(spec(out, data_dir), resume=True, **QUIET)
    assert_same_outcome(out, straight)


# --------------------------------------------------------------------------- bad input: one line, nothing written

@pytest.mark.parametrize("argv, needles", [
    (["--set", "learning_rate=inf"], ["learning_rate", "finite"]),
    (["--set", "alpha=nan"], ["alpha", "finite"]),
    (["--set", "value_layer_norm=maybe"], ["value_layer_norm", "true or false"]),
    (["--set", "obs_dim=5"], ["obs_dim", "dataset"]),
    (["--set", "agent=tfql"], ["--agent"]),
    (["--set", "batch_size=2.5"], ["batch_size", "integer"]),
    (["--set", "policy_hidden=0"], ["hidden"]),
    (["--set", "expectile=2"], ["expectile"]),
    (["--set", "alpah=3"], ["alpah", "valid"]),
    (["--set", "alpha=1", "alpha=2"], ["twice"]),
    (["--set", "alpha"], ["name=value"]),
    (["--max-eval-steps", "0"], ["--max-eval-steps", ">= 1"]),
    (["--steps", "0"], ["--steps"]),
    (["--steps", "ten"], ["--steps", "integer"]),
    (["--seeds", "-1"], ["--seeds"]),
    (["--seeds", "3", "3"], ["distinct"]),
    (["--seeds", "4294967296"], ["--seeds", "2147483647"]),
    (["--eval-episodes", "-1"], ["--eval-episodes"]),
    (["--save-every", "0"], ["--save-every"]),
    (["--workers", "0"], ["--workers"]),
    (["--label", ""], ["--label"]),
    (["--profile", "huge"], ["--profile"]),
    (["--dataset", "nowhere.npz"], ["nowhere.npz"]),
])
def test_bad_train_arguments_are_one_line_before_anything_is_read_or_written(tmp_path, capsys, argv, needles):
    before = snapshot(tmp_path)
    code, err = cli(capsys, "train", "--task", TASK, "--out", str(tmp_path / "run"), "--data-dir",
                    str(tmp_path / "data"), *argv)
    assert_one_line_error(code, err, *needles)
    assert snapshot(tmp_path) == before


def _dataset_copy(data_dir, dest, mutate):
    src = os.path.join(data_dir, "generated", "2ep-100steps-seed0", "cube-single-play-v0.npz")
    train_path = os.path.join(dest, "cube-single-play-v0.npz")
    val_path = os.path.join(dest, "cube-single-play-v0-val.npz")
    shutil.copy(src, train_path)
    shutil.copy(src.replace(".npz", "-val.npz"), val_path)
    mutate(train_path)
    return train_path


def _write_text(path, text):
    with open(path, "w") as f:
        f.write(text)


def _truncate_to_half(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _rewrite(path, change):
    arrays = dict(np.load(path))
    change(arrays)
    os.remove(path)
    np.savez(path, **arrays)


@pytest.mark.parametrize("name, mutate, needles", [
    ("not a zip", lambda p: _write_text(p, "observations,actions\n1,2\n"), ["not a readable .npz", "regenerate"]),
    ("truncated", _truncate_to_half, ["not a readable .npz", "truncated"]),
    ("missing key", lambda p: _rewrite(p, lambda a: a.pop("terminals")), ["lacks 'terminals'"]),
    ("unequal lengths", lambda p: _rewrite(p, lambda a: a.update(actions=a["actions"][:-7])), ["unequal length",
                                                                                              "actions 195"]),
    ("no val file", lambda p: os.remove(p.replace(".npz", "-val.npz")), ["-val.npz"]),
])
def test_a_bad_dataset_file_is_named_in_one_line(tmp_path, capsys, data_dir, name, mutate, needles):
    folder = tmp_path / "data"
    folder.mkdir()
    path = _dataset_copy(data_dir, str(folder), mutate)
    before = snapshot(tmp_path)
    code, err = cli(capsys, "train", "--task", TASK, "--dataset", path, "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, *needles)
    if name != "no val file":
        assert path in err
    assert snapshot(tmp_path) == before


def test_bad_paths_are_one_line_and_write_nothing(tmp_path, capsys, data_dir):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    before = snapshot(tmp_path)
    assert_one_line_error(*cli(capsys, *train_argv(a_file, data_dir)), str(a_file), "is a file")
    assert_one_line_error(*cli(capsys, *train_argv(a_file / "run", data_dir)), "is a file")
    assert_one_line_error(*cli(capsys, *train_argv(tmp_path / "nothing", data_dir, "--resume")), "drop --resume")
    assert_one_line_error(*cli(capsys, "evaluate", "--run", str(tmp_path / "nothing")), "not a directory")
    assert_one_line_error(*cli(capsys, "evaluate", "--run", str(tmp_path), "--episodes", "0"), "--episodes")
    assert_one_line_error(*cli(capsys, "evaluate", "--run", str(tmp_path), "--episodes", "2", "--video-episodes", "3"),
                          "--video-episodes")
    assert_one_line_error(*cli(capsys, "evaluate", "--run", str(tmp_path)), "holds no run")
    assert_one_line_error(*cli(capsys, "export", "--run", str(tmp_path), "--out", str(tmp_path)), "is a directory",
                          "agent-seed0.msgpack")
    assert snapshot(tmp_path) == before


def test_a_run_without_checkpoint_or_with_a_damaged_run_json_is_named(tmp_path, capsys, data_dir, straight_dir):
    out = tmp_path / "run"  # a run stopped before its first save: run.json and nothing else
    out.mkdir()
    shutil.copy(straight_dir / "run.json", out / "run.json")
    before = snapshot(tmp_path)
    export = ["export", "--run", str(out), "--out", str(tmp_path / "a.msgpack")]
    for command in (["evaluate", "--run", str(out)], export):
        code, err = cli(capsys, *command)
        assert_one_line_error(code, err, "no checkpoint yet", "python -m rql_lite train", "--resume")
        assert "start without" not in err
    assert snapshot(tmp_path) == before
    run_json = out / "run.json"
    run_json.write_text(run_json.read_text()[:40])
    before = snapshot(tmp_path)
    for command in (["evaluate", "--run", str(out)], train_argv(out, data_dir, "--resume")):
        assert_one_line_error(*cli(capsys, *command), f"{run_json} is damaged")
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- read-only directories, as root too

# Runs several command lines in one process and prints their exit codes and stderr as JSON. As
# root it first drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its bounding set and executes
# itself again, so that it obeys file modes like any user (root would write into a 0o555 folder).
CLI_BATCH = r'''
import contextlib, ctypes, io, json, os, sys
if os.geteuid() == 0 and not os.environ.get("CAPABILITIES_DROPPED"):
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            sys.exit(77)
    os.environ["CAPABILITIES_DROPPED"] = "1"
    os.execv(sys.executable, sys.orig_argv)
from rql_lite.cli import main
results = {}
for name, argv in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
    results[name] = [code, err.getvalue()]
print(json.dumps(results))
'''


def test_read_only_directories_are_refused_up_front(tmp_path, data_dir):
    existing = tmp_path / "existing"
    run(spec(existing, data_dir, steps=20), **QUIET)
    locked_parent = tmp_path / "locked"
    locked_parent.mkdir()
    commands = {
        "read-only run with --resume": train_argv(existing, data_dir, "--steps", "20", "--resume"),
        "read-only parent": train_argv(locked_parent / "run", data_dir),
        "read-only --out": train_argv(locked_parent, data_dir),
        "export into a read-only folder": ["export", "--run", str(existing), "--out", str(locked_parent / "a.msgpack")],
        "videos into a read-only run": ["evaluate", "--run", str(existing), "--episodes", "1", "--video-episodes", "1"],
        "a dataset to generate into a read-only --data-dir": train_argv(tmp_path / "fresh", str(locked_parent / "data")),
    }
    for folder in (existing, existing / "records", locked_parent):
        folder.chmod(0o555)
    try:
        before = snapshot(tmp_path)
        child = subprocess.run([sys.executable, "-c", CLI_BATCH, json.dumps(commands)], capture_output=True, text=True,
                               timeout=240, check=False)
        if child.returncode == 77:
            pytest.skip("cannot drop root's capability to ignore file modes here")
        assert child.returncode == 0, child.stderr[-3000:]
        results = json.loads(child.stdout.strip().splitlines()[-1])
        assert sorted(results) == sorted(commands)
        for code, err in results.values():
            assert_one_line_error(code, err, "not writable", "read-only")
        assert snapshot(tmp_path) == before
    finally:
        for folder in (existing, existing / "records", locked_parent):
            folder.chmod(0o755)
