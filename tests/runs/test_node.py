"""``python -m rql_lite node`` and its bootstrap ``scripts/gpu_node.sh``: argument checks and the fit of
the steps to a measured rate. The whole pipeline runs end to end in ``test_kit.py``, in an environment
holding only a GPU image's packages and the offline kit."""
import os
import subprocess
import sys

import pytest

from rql_lite.runs.node import NodeOptions, fitted_steps

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "gpu_node.sh")
TASKS = ["cube-single-play-singletask-task1-v0", "cube-single-play-singletask-task2-v0"]
TINY = ["--profile", "smoke", "--tasks", *TASKS, "--seeds", "0", "1", "--steps", "40", "--eval-every", "20",
        "--save-every", "20", "--eval-episodes", "1", "--max-eval-steps", "20", "--dataset-episodes", "2",
        "--episode-length", "100", "--set", "policy_hidden=16", "value_hidden=16", "num_values=2", "batch_size=16",
        "--segment-minutes", "0.0001"]


def gpu_node(*args, cwd):
    env = dict(os.environ, HOME=str(cwd), JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    return subprocess.run(["bash", SCRIPT, "--python", sys.executable, *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


@pytest.mark.parametrize("bad, named", [
    (["--agents", "dqn"], "argument --agents: invalid choice: 'dqn'"),
    (["--segment-minutes", "0"], "argument --segment-minutes"),
    (["--steps", "-3"], "argument --steps"),
    (["--tasks", "antmaze-large-navigate-singletask-task1-v0"], "--tasks antmaze-large-navigate"),
    (["--fit-minutes", "1"], "--fit-minutes sets the steps from the benchmark; drop --steps"),
])
def test_a_bad_option_is_one_line_and_creates_nothing(tmp_path, bad, named):
    out, work = tmp_path / "out", tmp_path / "work"
    result = gpu_node("--skip-install", "--out", str(out), "--work", str(work), *TINY, *bad, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and named in result.stderr and result.stderr.count("\n") == 1, \
        result.stderr
    assert result.stdout == "" and not out.exists() and not work.exists()
    assert sorted(os.listdir(tmp_path)) == []


def test_the_bootstrap_needs_one_install_choice(tmp_path):
    result = gpu_node("--out", str(tmp_path / "out"), *TINY, cwd=tmp_path)
    assert result.returncode == 2 and "give one of --kit DIR, --wheelhouse DIR or --skip-install" in result.stderr
    result = gpu_node("--kit", str(tmp_path), "--out", str(tmp_path / "out"), *TINY, cwd=tmp_path)
    assert result.returncode == 2 and "holds no manifest.json" in result.stderr


def test_checkpoints_stay_out_of_what_comes_back(tmp_path):
    with pytest.raises(ValueError, match="inside --out"):
        NodeOptions(out=str(tmp_path / "out"), work=str(tmp_path / "out" / "work"), tasks=(TASKS[0],),
                    profile="smoke").check()


def test_fit_minutes_refuses_sizes_the_benchmark_did_not_measure(tmp_path):
    with pytest.raises(ValueError, match="--set num_values changes an update's cost"):
        NodeOptions(out=str(tmp_path / "out"), tasks=(TASKS[0],), profile="smoke", fit_minutes=1.0,
                    overrides={"num_values": 2}).check()


BENCH = {"paper": {"runs_sweep": {"batching": "vmap", "by_runs": [
    {"runs": 1, "per_run_updates_per_s": 900.0}, {"runs": 4, "per_run_updates_per_s": 390.8},
    {"runs": 20, "per_run_updates_per_s": 100.0}]}}}


def test_the_fit_uses_the_rate_measured_for_the_programs_runs_or_the_next_larger():
    steps, row = fitted_steps(BENCH, "full", runs=4, minutes=1.0)
    assert (steps, row["runs"]) == (23000, 4)  # 390.8 * 60 = 23,448 -> 23,000
    steps, row = fitted_steps(BENCH, "full", runs=5, minutes=1.0)
    assert (steps, row["runs"]) == (6000, 20)  # never the faster rate of a smaller program
    assert fitted_steps(BENCH, "full", runs=1, minutes=0.001)[0] == 1000  # at least one dispatch's worth
    with pytest.raises(ValueError, match="measured no program of 21 runs or more"):
        fitted_steps(BENCH, "full", runs=21, minutes=1.0)
