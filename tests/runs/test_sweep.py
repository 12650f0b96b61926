"""The sweep without a cluster: the plan and its job script, bad plans, what an element does in each
case (finished, busy, unfinished, failed, no progress), status and collect.

An element's ``train`` process and ``scontrol requeue`` are replaced here by fakes that record what
they were asked; tests/runs/test_sweep_slurm.py runs the real ones on a real SLURM.
"""
import json
import os
import shlex
import shutil
import subprocess
import time

import pytest
from support import TASK, TASK1, assert_one_line_error, cli, snapshot

from rql_lite.cli import build_parser, main, spec_from_args
from rql_lite.runs import records, slurm, sweep
from rql_lite.runs.records import find_records
from rql_lite.runs.rundir import RunDirectoryLock

TINY_SET = ["--set", "policy_hidden=16", "value_hidden=16", "num_values=2", "batch_size=16"]
# The tiny run of support.spec as a sweep: one element per agent on TASK, seeds 0 and 1.
TINY_PLAN = ["--tasks", TASK, "--seeds", "0", "1", "--profile", "smoke", "--steps", "40", "--eval-every", "20",
             "--save-every", "20", "--eval-episodes", "1", "--max-eval-steps", "20", "--dataset-episodes", "2",
             "--episode-length", "100", *TINY_SET]


def plan_argv(out, data_dir, *extra):
    return ["sweep", "--out", str(out), "--data-dir", str(data_dir), *TINY_PLAN, "--time", "30", "--dry-run", *extra]


def test_a_plan_is_one_array_script_with_one_element_per_domain_and_agent(tmp_path, capsys):
    out = tmp_path / "paper"
    code, err = cli(capsys, "sweep", "--out", str(out), "--domains", "cube-double-play", "--tasks", TASK1, TASK,
                    "--agents", "rql", "tfql", "--seeds", "0", "1", "2", "3", "--time", "240", "--margin-minutes", "10",
                    "--cpus-per-task", "8", "--gres", "gpu:1", "--partition", "gpu", "--account", "proj",
                    "--sbatch-line=--qos=long", "--sbatch-line", "#SBATCH --mem=64G", "--data-dir",
                    str(tmp_path / "data"), "--dry-run")
    assert code == 0, err
    script = (out / "sweep.sbatch").read_text()
    plan = json.loads((out / "sweep.json").read_text())
    assert plan["submissions"] == []
    elements = plan["elements"]
    assert [(e["dataset"], e["agent"], len(e["tasks"])) for e in elements] == [
        ("cube-double-play-v0", "rql", 5), ("cube-double-play-v0", "tfql", 5),
        ("cube-single-play-v0", "rql", 2), ("cube-single-play-v0", "tfql", 2)]
    sbatch = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert sbatch == ["#SBATCH --job-name=rql-paper", "#SBATCH --array=0-3", "#SBATCH --time=240", "#SBATCH --requeue",
                      "#SBATCH --open-mode=append", f"#SBATCH --output={out}/logs/element%a_job%A.log",
                      "#SBATCH --cpus-per-task=8", "#SBATCH --gres=gpu:1", "#SBATCH --partition=gpu",
                      "#SBATCH --account=proj", "#SBATCH --qos=long", "#SBATCH --mem=64G"]
    # The #SBATCH lines come before the first command (sbatch stops reading them there); bash accepts it.
    first_command = next(i for i, line in enumerate(script.splitlines()) if line and not line.startswith("#"))
    assert all(script.splitlines().index(line) < first_command for line in sbatch)
    assert subprocess.run(["bash", "-n", str(out / "sweep.sbatch")]).returncode == 0
    assert script.rstrip().endswith(f'sweep element {out} "$SLURM_ARRAY_TASK_ID" --max-minutes 230')
    assert (out / "logs").is_dir()  # SLURM does not create the log's folder
    for e in elements:
        assert f"#   {e['command']}" in script
        # Each element's command is the run's own: it parses back to the element's run, with the CPUs
        # for generation and evaluation and the shared data directory.
        args = build_parser().parse_args(shlex.split(e["command"])[3:])
        spec = spec_from_args(args).resolved()
        assert spec.out == e["run_dir"] == str(out / "runs" / f"{e['dataset'][:-3]}-{e['agent']}")
        assert spec.workers == spec.eval_workers == 8 and spec.data_dir == str(tmp_path / "data")
        assert spec.profile == "full" and spec.steps == 1_000_000 and list(spec.seeds) == [0, 1, 2, 3]


def test_the_same_plan_may_be_written_again_and_another_is_refused(tmp_path, capsys):
    out, data = tmp_path / "sweep", tmp_path / "data"
    assert cli(capsys, *plan_argv(out, data, "--agents", "rql"))[0] == 0
    assert cli(capsys, *plan_argv(out, data, "--agents", "rql", "--time", "60"))[0] == 0  # only SLURM options changed
    assert "--time=60" in (out / "sweep.sbatch").read_text()
    before = snapshot(tmp_path)
    code, err = cli(capsys, *plan_argv(out, data, "--agents", "rql", "--steps", "60"))
    assert_one_line_error(code, err, "holds another sweep", "element 0", "choose another --out")
    assert snapshot(tmp_path) == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    code, err = cli(capsys, *plan_argv(tmp_path / "other", data))
    assert_one_line_error(code, err, "not empty", "holds no sweep")


@pytest.mark.parametrize("extra, needles", [
    (["--time", "0"], ["--time", ">= 1"]),
    (["--time", "4:00:00"], ["--time", "4:00:00", "whole minutes", "240"]),
    (["--time", "5", "--margin-minutes", "5"], ["--margin-minutes 5", "no time to train"]),
    (["--agents", "rql", "dqn"], ["--agents", "dqn"]),
    (["--domains", "cube-dubble-play"], ["--domains cube-dubble-play", "cube-double-play"]),
    (["--sbatch-line=--array=0-9"], ["--sbatch-line --array=0-9", "the sweep sets it"]),
    (["--sbatch-line", "#SBATCH --time=10"], ["--sbatch-line --time=10", "give --time"]),
    (["--sbatch-line", "qos=long"], ["--sbatch-line", "one sbatch option"]),
    (["--gres", "gpu 1"], ["--gres 'gpu 1'", "one word"]),
    (["--set", "alpha=-1"], ["--set", "alpha"]),
    (["--dataset", "nowhere.npz"], ["--dataset", "nowhere.npz"]),
])
def test_a_bad_plan_is_one_line_and_creates_nothing(tmp_path, capsys, extra, needles):
    out = tmp_path / "sweep"
    code, err = cli(capsys, *plan_argv(out, tmp_path / "data"), *extra)
    assert_one_line_error(code, err, *needles)
    assert os.listdir(tmp_path) == []


def test_a_plan_needs_a_time_and_something_to_train(tmp_path, capsys):
    argv = ["sweep", "--out", str(tmp_path / "s"), "--tasks", TASK, "--dry-run"]
    assert_one_line_error(*cli(capsys, *argv), "--time is required", "--time 240")
    assert_one_line_error(*cli(capsys, "sweep", "--out", str(tmp_path / "s"), "--time", "9"), "nothing to train")
    assert os.listdir(tmp_path) == []


def test_submitting_without_slurm_says_so_and_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    code, err = cli(capsys, "sweep", "--out", str(tmp_path / "s"), "--data-dir", str(tmp_path / "data"), *TINY_PLAN,
                    "--time", "30")
    assert_one_line_error(code, err, "sbatch not found", "--dry-run")
    assert os.listdir(tmp_path) == []


def test_a_refused_submission_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    def refuse(script):
        raise slurm.SlurmError("sbatch refused: Invalid partition name specified")

    monkeypatch.setattr(slurm, "_tool", lambda name: name)
    monkeypatch.setattr(slurm, "submit", refuse)
    code, err = cli(capsys, "sweep", "--out", str(tmp_path / "s"), "--data-dir", str(tmp_path / "data"), *TINY_PLAN,
                    "--time", "30", "--partition", "nope")
    assert_one_line_error(code, err, "Invalid partition")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- one element


@pytest.fixture
def planned(tmp_path, capsys, data_dir):
    """A written one-element sweep (rql, the tiny run) on the session's tiny dataset."""
    out = tmp_path / "sweep"
    assert cli(capsys, *plan_argv(out, data_dir, "--agents", "rql"))[0] == 0
    return out, json.loads((out / "sweep.json").read_text())["elements"][0]


class FakeTrain:
    """Stands in for the element's ``train`` process: records its argv, writes records at ``steps``."""

    def __init__(self, element, steps=None, code=0):
        self.element, self.steps, self.code, self.calls = element, steps, code, []

    def __call__(self, argv, env=None):
        self.calls.append(argv)
        if self.steps is not None:
            write_records(self.element, self.steps)
        return self.code


def write_records(element, steps):
    for seed in element["seeds"]:
        record = records.make_record(
            task=element["tasks"][0], agent=element["agent"], method="RQL", seed=seed, steps=steps,
            target_steps=element["steps"], finished=steps == element["steps"], profile="smoke", config={},
            dataset={"source": "generated", "path": "x.npz", "sha256": "0" * 64, "num_transitions": 200},
            eval_episodes=1, success_curve=[{"step": steps, "success_rate": 0.0, "episodes": 1, "wall_time_s": 1.0}],
            git_commit=None, device="cpu", wall_time_s=1.0, command=element["command"])
        records.write_record(os.path.join(element["run_dir"], "records", f"seed{seed}.json"), record)


@pytest.fixture
def requeues(monkeypatch):
    asked = []
    monkeypatch.setattr(slurm, "requeue", asked.append)
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    monkeypatch.setenv("SLURM_JOB_ID", "78")  # not the element's name: requeueing 78 could hit another job
    return asked


def test_an_unfinished_segment_requeues_its_element_by_its_array_name(planned, monkeypatch, requeues):
    out, element = planned
    train = FakeTrain(element, steps=20)
    monkeypatch.setattr(sweep.subprocess, "call", train)
    assert main(["sweep", "element", str(out), "0", "--max-minutes", "25"]) == 0
    (argv,) = train.calls
    assert argv[1:4] == ["-m", "rql_lite", "train"] and argv[-3:] == ["--no-progress", "--max-minutes", "25"]
    assert argv[3:-3] == shlex.split(element["command"])[3:]  # the run's own command, no --resume the first time
    assert requeues == ["77_0"]

    (out / "runs" / "cube-single-play-rql" / "run.json").write_text("{}")  # as the first segment leaves it
    train = FakeTrain(element, steps=40)
    monkeypatch.setattr(sweep.subprocess, "call", train)
    assert main(["sweep", "element", str(out), "0", "--max-minutes", "25"]) == 0
    assert train.calls[0][-1] == "--resume" and requeues == ["77_0"]  # finished: not requeued again


def test_an_element_whose_run_is_busy_leaves_at_once_without_loading_or_requeueing(planned, monkeypatch, requeues,
                                                                                   capsys):
    out, element = planned
    train = FakeTrain(element, steps=20)
    monkeypatch.setattr(sweep.subprocess, "call", train)
    with RunDirectoryLock(element["run_dir"], "python -m rql_lite train (the first submission)"):
        tick = time.perf_counter()
        assert main(["sweep", "element", str(out), "0", "--max-minutes", "25"]) == 0
        assert time.perf_counter() - tick < 5
    assert train.calls == [] and requeues == []
    printed = capsys.readouterr().out
    assert "in use by PID" in printed and "the first submission" in printed and "without requeueing" in printed


@pytest.mark.parametrize("steps, code, status, says", [
    (None, 2, 2, "train exited with status 2"),  # bad input, or the directory taken just before train
    (0, 0, 1, "without progress"),
])
def test_a_failed_or_stuck_segment_is_not_requeued(planned, monkeypatch, requeues, capsys, steps, code, status, says):
    out, element = planned
    monkeypatch.setattr(sweep.subprocess, "call", FakeTrain(element, steps=steps, code=code))
    assert main(["sweep", "element", str(out), "0", "--max-minutes", "25"]) == status
    assert requeues == [] and says in capsys.readouterr().out


def test_a_finished_element_does_nothing_and_an_unknown_one_is_refused(planned, monkeypatch, requeues, capsys):
    out, element = planned
    write_records(element, 40)
    train = FakeTrain(element)
    monkeypatch.setattr(sweep.subprocess, "call", train)
    assert main(["sweep", "element", str(out), "0", "--max-minutes", "25"]) == 0
    assert train.calls == [] and requeues == [] and "nothing to do" in capsys.readouterr().out
    assert_one_line_error(*cli(capsys, "sweep", "element", str(out), "3", "--max-minutes", "25"), "elements 0 to 0")


# --------------------------------------------------------------------------- status and collect


def test_status_and_collect_from_the_records(planned, capsys, monkeypatch, straight_dir, tmp_path):
    out, element = planned
    shutil.copytree(straight_dir, element["run_dir"])  # the tiny run, finished: what the element would leave
    sweep_file = out / "sweep.json"
    info = json.loads(sweep_file.read_text())
    info["submissions"].append({"job_id": "41", "submitted": "2026-01-01T00:00:00+00:00"})
    sweep_file.write_text(json.dumps(info))
    monkeypatch.setattr(slurm, "element_states", lambda jobs: {("41", 0): "COMPLETED"} if jobs == ["41"] else {})
    capsys.readouterr()
    assert main(["sweep", "status", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["element", "task", "agent", "seed", "step", "finished", "SLURM"]
    assert [line.split() for line in lines[1:3]] == [["0", TASK, "rql", str(s), "40/40", "yes", "41_0", "COMPLETED"]
                                                     for s in (0, 1)]
    assert lines[3].startswith("2 of 2 runs finished")

    results = tmp_path / "results"
    assert main(["sweep", "collect", str(out), "--results", str(results)]) == 0
    copied = find_records(str(results))
    assert [(r.task, r.seed, r.finished) for r in copied] == [(TASK, 0, True), (TASK, 1, True)]
    dest = results / "sweep" / "cube-single-play-rql"
    assert sorted(os.listdir(dest)) == ["records", "run.json"]  # no checkpoint, no lock
    assert (dest / "run.json").read_bytes() == (straight_dir / "run.json").read_bytes()
    assert main(["sweep", "collect", str(out), "--results", str(results)]) == 0  # again: the same files

    # A destination holding another run is refused before anything is copied.
    other = json.loads((dest / "run.json").read_text())
    other["identity"]["seeds"] = [7]
    (dest / "run.json").write_text(json.dumps(other))
    before = snapshot(results)
    assert_one_line_error(*cli(capsys, "sweep", "collect", str(out), "--results", str(results)), "another run's")
    assert snapshot(results) == before


def test_status_without_slurm_still_lists_the_records(planned, capsys, monkeypatch, tmp_path):
    out, element = planned
    write_records(element, 20)
    info = json.loads((out / "sweep.json").read_text())
    info["submissions"].append({"job_id": "41", "submitted": "2026-01-01T00:00:00+00:00"})
    (out / "sweep.json").write_text(json.dumps(info))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    capsys.readouterr()
    assert main(["sweep", "status", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "20/40  no        unknown (squeue not found)" in printed and "0 of 2 runs finished" in printed
    assert_one_line_error(*cli(capsys, "sweep", "status", str(tmp_path / "nothing")), "holds no sweep")


def test_element_states_reads_squeue(monkeypatch):
    """squeue's lines (one per element with --array) become states; a pending element says why it waits."""
    seen = []

    def fake_run(args, check=True):
        seen.append(args)
        text = "5_0|RUNNING|None\n5_1|PENDING|BeginTime\n5_[2-3]|PENDING|Priority\n" if args[0] == "squeue" else ""
        return subprocess.CompletedProcess(args, 0 if args[0] == "squeue" else 1, text, "")

    monkeypatch.setattr(slurm, "_run", fake_run)
    monkeypatch.setattr(slurm.shutil, "which", lambda name: "/usr/bin/" + name)
    states = slurm.element_states(["5", "6"])
    assert states == {("5", 0): "RUNNING", ("5", 1): "PENDING (BeginTime)"}
    assert "--array" in seen[0] and "--states=all" in seen[0] and "--jobs=5,6" in seen[0]
    assert seen[1][0] == "sacct" and "--jobs=6" in seen[1]  # only what squeue no longer knows
    assert slurm.is_active(states[("5", 1)]) and not slurm.is_active("COMPLETED")
    with pytest.raises(ValueError, match="ARRAYJOB_INDEX"):
        slurm.requeue("78")  # a bare job id may name a whole array


def test_the_readmes_sweep_commands_parse():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "README.md")) as f:
        text = f.read().replace("\\\n", " ")
    commands = [line.split("#")[0] for line in text.splitlines() if line.startswith("python -m rql_lite sweep")]
    assert len(commands) == 3
    parser = build_parser()
    actions = []
    for command in commands:
        argv = shlex.split(command)[3:]
        if argv[1] not in ("status", "collect"):
            argv.insert(1, "submit")  # as main() reads a plain `sweep ...`
        args = parser.parse_args(argv)
        actions.append(args.sweep_action)
        if args.sweep_action == "submit":
            assert args.time and args.domains and args.agents == ["rql", "tfql"]
    assert actions == ["submit", "status", "collect"]
