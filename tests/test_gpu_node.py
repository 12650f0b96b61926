"""scripts/gpu_node.sh, the offline GPU node in one script, run end to end on CPU at smoke size.

The wheelhouse is empty and pip reads no configuration (PIP_CONFIG_FILE=/dev/null, no find-links), so
the offline install must succeed with everything "already satisfied", as on a node whose wheelhouse
lacks nothing. The home directory is a temporary one: datasets go there, not to ~/.rql_lite.
"""
import json
import os
import re
import subprocess
import sys
import time
import tomllib

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "gpu_node.sh")
TASKS = ["cube-single-play-singletask-task1-v0", "cube-single-play-singletask-task2-v0"]
MAX_BYTES = 16 * 2**20
# Tiny runs: 40 steps in dispatches of 20, 16-unit networks, a two-episode dataset. Segments of
# 0.0001 minutes make one dispatch each, so every run takes exactly two segments.
TINY = ["--profile", "smoke", "--tasks", *TASKS, "--seeds", "0", "1", "--steps", "40", "--eval-every", "20",
        "--save-every", "20", "--eval-episodes", "1", "--max-eval-steps", "20", "--dataset-episodes", "2",
        "--episode-length", "100", "--set", "policy_hidden=16", "value_hidden=16", "num_values=2", "batch_size=16",
        "--segment-minutes", "0.0001", "--python", sys.executable]


def gpu_node(*args, home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(HOME=str(home), PIP_CONFIG_FILE=os.devnull, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"),
               MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=900)


def files_under(folder):
    return sorted(os.path.join(d, f) for d, _, names in os.walk(folder) for f in names)


def test_the_gpu_node_script_runs_end_to_end_on_cpu_and_resumes(tmp_path):
    home, wheelhouse, out, work = tmp_path / "home", tmp_path / "wheelhouse", tmp_path / "out", tmp_path / "work"
    home.mkdir()
    wheelhouse.mkdir()  # empty: every requirement is already installed here
    start = time.perf_counter()
    result = gpu_node("--wheelhouse", str(wheelhouse), "--out", str(out), "--work", str(work), "--agents", "rql", "tfql",
                      *TINY, home=home)
    first_s = time.perf_counter() - start
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "install: done" in result.stdout and "devices [Cpu" in result.stdout

    # Each run: run.json and one finished record per (task, seed), copied into --out.
    for agent in ("rql", "tfql"):
        copied = out / "runs" / f"cube-single-{agent}-smoke"
        assert json.loads((copied / "run.json").read_text())["identity"]["agent"] == agent
        for task in TASKS:
            for seed in (0, 1):
                record = json.loads((copied / "records" / task / f"seed{seed}.json").read_text())
                assert record["finished"] and record["steps"] == 40 and record["agent"] == agent
        assert (work / "runs" / f"cube-single-{agent}-smoke" / "checkpoint.msgpack").is_file()
    # At least two segments per run, one process each (the log says so, and summary.json).
    log = (out / "gpu_node.log").read_text()
    segments = re.findall(r"^\[gpu_node \+\d+s\] segment (\d+) \((\w+),", log, flags=re.M)
    assert [agent for _, agent in segments].count("rql") >= 2 and [a for _, a in segments].count("tfql") >= 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["all_finished"] and summary["segments_this_invocation"] == len(segments) >= 4
    assert all(r["segments_this_invocation"] >= 2 for r in summary["runs"])

    # The bench JSON, one video, one EMA policy; no checkpoint and no file of 16 MiB or more in --out.
    (bench,) = out.glob("bench-*.json")
    assert json.loads(bench.read_text())["smoke"]["updates_per_s"] > 0
    (video,) = out.glob("*.mp4")
    assert video.name == f"video-rql-{TASKS[0]}-seed0.mp4" and video.read_bytes()[4:8] == b"ftyp"
    (policy,) = out.glob("*.msgpack")
    from rql_lite.runs.checkpoint import load_agent

    state, meta = load_agent(str(policy))
    assert meta["policy_only"] and meta["task"] == TASKS[0] and meta["seed"] == 0 and int(state.step) == 40
    assert not [f for f in files_under(out) if "checkpoint" in f]
    assert all(os.path.getsize(f) < MAX_BYTES for f in files_under(out))
    assert "done: every run is finished" in result.stdout

    # The same command again: nothing left to train, the bench kept; --archive packs runs/ into one file.
    start = time.perf_counter()
    again = gpu_node("--skip-install", "--out", str(out), "--work", str(work), "--agents", "rql", "tfql",
                     "--archive", *TINY, home=home)
    again_s = time.perf_counter() - start
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert not re.search(r"\] segment \d", again.stdout) and "exists (delete it to measure again)" in again.stdout
    assert json.loads((out / "summary.json").read_text())["segments_this_invocation"] == 0
    assert (out / "runs.tar.gz").is_file() and not (out / "runs").exists()
    assert len(files_under(out)) <= 8  # what a rented machine brings back

    # A budget spent before training starts: nothing trained, the runs left to the next command, and said so.
    # A file of 16 MiB in --out (put there beforehand) fails the command, by name.
    out2 = tmp_path / "out2"
    out2.mkdir()
    (out2 / "big.bin").write_bytes(b"\0" * MAX_BYTES)
    budget = gpu_node("--skip-install", "--no-bench", "--out", str(out2), "--work", str(tmp_path / "work2"),
                      "--total-minutes", "0.001", *TINY, home=home)
    assert budget.returncode == 1, budget.stdout[-3000:] + budget.stderr[-3000:]
    assert f"FAILED: {out2 / 'big.bin'} is {MAX_BYTES} bytes, not under 16 MiB" in budget.stdout
    assert "leaves no room for another segment" in budget.stdout
    assert "UNFINISHED" in budget.stdout and "run the same command again to continue" in budget.stdout
    summary = json.loads((out2 / "summary.json").read_text())
    assert not summary["all_finished"] and summary["stopped_by_total_minutes"] and summary["video"] is None
    assert not (tmp_path / "work2" / "runs").exists()
    print(f"gpu_node.sh smoke end to end: {first_s:.0f} s, the re-run {again_s:.0f} s")  # shown with -s


@pytest.mark.parametrize("bad, named", [
    (["--agents", "dqn"], "--agents dqn"),
    (["--segment-minutes", "0"], "--segment-minutes 0"),
    (["--steps", "-3"], "--steps -3"),
    (["--tasks", "antmaze-large-navigate-singletask-task1-v0"], "--tasks antmaze-large-navigate"),
])
def test_a_bad_option_is_one_line_and_creates_nothing(tmp_path, bad, named):
    out, work = tmp_path / "out", tmp_path / "work"
    result = gpu_node("--skip-install", "--out", str(out), "--work", str(work), *TINY, *bad, home=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {named}") and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == "" and not out.exists() and not work.exists()
    assert sorted(os.listdir(tmp_path)) == []


def test_the_wheelhouse_requirements_are_pyprojects_runtime_ones():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    expected = project["dependencies"] + project["optional-dependencies"]["ogbench"]
    printed = subprocess.run(["bash", SCRIPT, "--print-requirements"], capture_output=True, text=True, check=True)
    assert printed.stdout.splitlines() == expected
    command = subprocess.run(["bash", SCRIPT, "--print-download-command", "--node-python", "3.11", "--node-glibc",
                              "2.31", "--node-jax", "0.6.2", "--wheelhouse", "wh"],
                             capture_output=True, text=True, check=True).stdout
    assert command.startswith("python3 -m pip download --dest wh --only-binary=:all: --python-version 3.11 ")
    platforms = re.findall(r"--platform (\S+)", command)
    assert platforms == ["manylinux2014_x86_64"] + [f"manylinux_2_{i}_x86_64" for i in range(17, 32)]
    assert re.findall(r"'([^']+)'", command) == expected + ["jax==0.6.2"]
