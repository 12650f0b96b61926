"""The command line, as a user runs it: real processes for the end-to-end checks, in-process parsing."""
import json
import os
import re
import shlex
import subprocess
import sys

from rql_lite import cli
from rql_lite.ogbench.datasets import generated_folder
from rql_lite.runs.checkpoint import load_agent
from rql_lite.runs.spec import RunSpec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A machine without a display on which nobody set MUJOCO_GL: rql_lite must choose EGL itself.
HEADLESS = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY", "WAYLAND_DISPLAY")}


def run_cli(*args, env=None):
    """``python -m rql_lite ARGS`` in a new process."""
    return subprocess.run([sys.executable, "-m", "rql_lite", *args], capture_output=True, text=True,
                          env=os.environ if env is None else env, timeout=600)


def assert_no_glfw(result):
    """GLFW, tried without a display, prints "The DISPLAY environment variable is missing" on stderr."""
    assert "DISPLAY environment variable" not in result.stderr and "GLFW" not in result.stderr, result.stderr


def test_train_smoke_profile_runs_end_to_end_without_a_display(tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", "--task", "cube-single-play-singletask-task2-v0", "--profile", "smoke", "--out", str(out),
                     "--data-dir", str(tmp_path / "data"), "--no-progress", env=HEADLESS)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_no_glfw(result)
    assert "effective config" in result.stdout
    record = json.loads((out / "records" / "seed0.json").read_text())
    assert record["finished"] and record["steps"] == 200 and 0.0 <= record["final_success_rate"] <= 1.0
    run_info = json.loads((out / "run.json").read_text())
    assert run_info["config"]["policy_hidden"] == [64, 64]  # the smoke profile's networks

    evaluated = run_cli("evaluate", "--run", str(out), "--episodes", "2", "--max-steps", "5", env=HEADLESS)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert_no_glfw(evaluated)
    assert re.search(r"^seed 0 \(step 200\): success rate [01]\.000 over 2 episodes$", evaluated.stdout, re.M), \
        evaluated.stdout

    exported = run_cli("export", "--run", str(out), "--seed", "0", "--out", str(tmp_path / "agent.msgpack"))
    assert exported.returncode == 0, exported.stderr[-2000:]
    state, meta = load_agent(str(tmp_path / "agent.msgpack"))
    assert meta["task"] == "cube-single-play-singletask-task2-v0" and int(state.step) == 200
    missing = run_cli("export", "--run", str(out), "--seed", "7", "--out", str(tmp_path / "x.msgpack"))
    assert missing.returncode == 2 and "seed 7" in missing.stderr and not (tmp_path / "x.msgpack").exists()


def test_generate_prints_no_glfw_warning_without_a_display(tmp_path):
    data = tmp_path / "data"
    result = run_cli("generate", "cube-single-play-v0", "--episodes", "1", "--episode-length", "20", "--out", str(data),
                     env=HEADLESS)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_no_glfw(result)
    assert sorted(os.listdir(data)) == ["cube-single-play-v0-val.npz", "cube-single-play-v0.npz"]


def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path):
    out = tmp_path / "nothing"
    result = run_cli("train", "--task", "cube-dubble-play-singletask-task2-v0", "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown task") and "cube-double-play-singletask-task2-v0" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    result = run_cli("train", "--task", "cube-single-play-singletask-task2-v0", "--out", str(out), "--set",
                     "expectile=2")
    assert result.returncode == 2 and "expectile" in result.stderr and not out.exists()


def test_bench_writes_a_record(tmp_path):
    """The whole bench command at the smallest settings that still run every part (the sizes of the
    runs sweep do not change what is checked)."""
    result = run_cli("bench", "--configs", "smoke", "--seeds", "2", "--min-seconds", "0.2", "--updates-per-dispatch",
                     "20", "--runs", "1", "--sweep-seconds", "0.2", "--rounds", "1",
                     "--sweep-updates-per-dispatch", "5", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    (path,) = list(tmp_path.glob("bench-*.json"))
    record = json.loads(path.read_text())
    assert record["device"] and record["smoke"]["updates_per_s"] > 0 and record["smoke"]["flops_per_update"] > 0
    assert record["smoke"]["vmapped_seeds"]["num_seeds"] == 2
    assert record["matmul_flop_per_s"] > 0
    floor = record["smoke"]["floor_ms_per_update"]
    assert 0 < floor < record["smoke"]["ms_per_update"]  # the floor is below what was measured
    sweep = record["smoke"]["runs_sweep"]
    assert [row["runs"] for row in sweep["by_runs"]] == [1] and sweep["batching"] == "map"  # CPU's default
    assert [row["runs"] for row in record["smoke"]["runs_sweep_vmap"]["by_runs"]] == [1]
    assert record["smoke"]["projections"]["domain_hours"] > 0


def test_a_runs_recorded_command_parses_back_to_the_same_run():
    spec = RunSpec(task="cube-single-play-singletask-task2-v0", agent="rql", seeds=(0, 1), steps=5000,
                   out="results/x", profile="smoke", overrides={"alpha": 1000.0, "policy_hidden": (256, 256)},
                   eval_every=1000, eval_episodes=20, label="BC flow").resolved()
    command = spec.command()
    assert command.startswith("python -m rql_lite train ")
    again = cli.spec_from_args(cli.build_parser().parse_args(shlex.split(command)[3:])).resolved()
    assert again == spec


def test_a_recorded_command_keeps_every_setting_and_quotes_odd_paths(tmp_path):
    """Paths with spaces and quotes, a dataset file, the data directory, workers, overrides of every type:
    the command a record keeps, split as a shell splits it, parses back to the very same run."""
    odd = tmp_path / "it's a folder"
    odd.mkdir()
    for name in ("cube-single-play-v0.npz", "cube-single-play-v0-val.npz"):
        (odd / name).write_bytes(b"")
    spec = RunSpec(task=("cube-single-play-singletask-task1-v0", "cube-single-play-singletask-task3-v0"),
                   agent="fql", seeds=(3, 1), steps=7, dataset=str(odd / "cube-single-play-v0.npz"),
                   out=str(odd / "run $HOME"), profile="full", data_dir=str(odd / "data; rm -rf x"), workers=3,
                   eval_workers=2, video_episodes=1, max_eval_steps=50, dataset_episodes=9, eval_episodes=0,
                   overrides={"alpha": 1e-05, "value_layer_norm": False, "policy_hidden": (32, 8),
                              "matmul_precision": "bfloat16"}, label="FQL (mine)").resolved()
    command = spec.command()
    words = shlex.split(command)
    assert words[:4] == ["python", "-m", "rql_lite", "train"]
    assert words[words.index("--data-dir") + 1] == spec.data_dir and words[words.index("--out") + 1] == spec.out
    again = cli.spec_from_args(cli.build_parser().parse_args(words[3:])).resolved()
    assert again == spec
    # The profile's defaults are written out too: the command means the same run if they change.
    default = RunSpec(task="cube-single-play-singletask-task2-v0", profile="smoke").resolved()
    words = shlex.split(default.command())
    for flag in ("--steps", "--eval-every", "--eval-episodes", "--save-every", "--dataset-episodes",
                 "--episode-length", "--max-eval-steps", "--data-dir"):
        assert flag in words, (flag, words)
    assert cli.spec_from_args(cli.build_parser().parse_args(words[3:])).resolved() == default


def test_generate_writes_by_default_where_train_looks(monkeypatch, tmp_path):
    """`generate` without --out writes to the folder `train --dataset generated` reads for the same
    settings (~ expanded; episodes and seed in the name), not to a literal '~' or a fixed folder."""
    monkeypatch.setenv("HOME", str(tmp_path))
    seen = {}

    class Done(Exception):
        pass

    def fake_generate(name, out_dir, **kwargs):
        seen.update(name=name, out_dir=out_dir, **kwargs)
        raise Done

    monkeypatch.setattr(cli, "generate_dataset", fake_generate)
    for argv, episodes, seed in ((["cube-single-play-v0"], None, 0),
                                 (["cube-single-play-v0", "--episodes", "7", "--seed", "3"], 7, 3)):
        try:
            cli.main(["generate", *argv])
        except Done:
            pass
        assert seen["out_dir"] == generated_folder(num_episodes=episodes, seed=seed)
        assert seen["out_dir"].startswith(str(tmp_path)) and "~" not in seen["out_dir"]


def test_the_seeds_help_and_the_readme_say_how_runs_share_a_program():
    """The default is lax.map (one run after another) on one CPU device and vmap on accelerators
    (train.default_batching): no text may say the seeds are vmapped without saying where."""
    train = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    seeds_help = next(action.help for action in train._actions if "--seeds" in action.option_strings)
    assert "lax.map" in seeds_help and "vmap" in seeds_help and "CPU" in seeds_help, seeds_help
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    for paragraph in re.split(r"\n\s*\n", readme):
        if re.search(r"vmap", paragraph):
            assert re.search(r"lax\.map|accelerator|GPU", paragraph), paragraph
