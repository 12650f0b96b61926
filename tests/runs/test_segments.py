"""Runs over several tasks in one program, and runs cut into time-limited segments.

Same tiny run as the run-directory tests (two seeds, 16-unit networks, 40 steps, a two-episode
generated dataset). A run stopped by ``--max-minutes`` and resumed must end with the records and
(bitwise, on CPU) the parameters of an uninterrupted one; a (task, seed) trained beside other tasks
must get what it would get alone (to float32 rounding: the program batches more runs).
"""
import json

import jax
import numpy as np
import pytest
from support import QUIET, TASK, TASK1, assert_one_line_error, assert_same_outcome, cli, spec, train_argv

from rql_lite.cli import main
from rql_lite.runs import report
from rql_lite.runs.experiment import SegmentEnded, run
from rql_lite.runs.rundir import load_run, runs_of


def test_a_run_in_time_limited_segments_ends_as_an_uninterrupted_one(tmp_path, capsys, data_dir, straight):
    out = tmp_path / "run"
    # A limit shorter than one dispatch: each command makes one dispatch of progress, then stops.
    code, _ = cli(capsys, *train_argv(out, data_dir, "--max-minutes", "0.0001"))
    assert code == 0
    first = json.loads((out / "records" / "seed0.json").read_text())
    assert first["steps"] == 20 and not first["finished"] and first["target_steps"] == 40
    segments = 1
    while not json.loads((out / "records" / "seed0.json").read_text())["finished"]:
        code, err = cli(capsys, *train_argv(out, data_dir, "--max-minutes", "0.0001", "--resume"))
        assert code == 0, err
        segments += 1
        assert segments < 5
    assert segments == 2
    assert_same_outcome(out, straight)


def test_the_segment_message_says_how_to_continue(tmp_path, capsys, data_dir):
    out = tmp_path / "run"
    with pytest.raises(SegmentEnded, match=r"stopped at step 20 of 40 .*--max-minutes.*Continue with: .*--resume") as stop:
        run(spec(out, data_dir), max_minutes=1e-6, command="python -m rql_lite train ... --max-minutes 1e-06", **QUIET)
    assert [r["steps"] for r in stop.value.records] == [20, 20]
    assert not any(r["finished"] for r in stop.value.records)
    # The CLI prints it on stdout and exits 0, like a job that ended on its time limit.
    code = cli(capsys, *train_argv(out, data_dir, "--max-minutes", "0.0001", "--resume"))[0]
    assert code == 0


def test_tasks_of_one_domain_train_in_one_program_and_each_gets_its_record(tmp_path, capsys, data_dir, straight):
    out = tmp_path / "two-tasks"
    records = run(spec(out, data_dir, task=(TASK1, TASK)), **QUIET)
    assert [(r["task"], r["seed"]) for r in records] == [(TASK1, 0), (TASK1, 1), (TASK, 0), (TASK, 1)]
    for task in (TASK1, TASK):
        for seed in (0, 1):
            on_disk = json.loads((out / "records" / task / f"seed{seed}.json").read_text())
            assert on_disk["task"] == task and on_disk["finished"] and on_disk["runs_in_program"] == 4
            assert on_disk["tasks_in_program"] == [TASK1, TASK]
            assert [p["step"] for p in on_disk["success_curve"]] == [20, 40]
    # Results tables find every (task, seed) record.
    found = {(r.task, r.seed) for r in report.find_records(str(tmp_path))}
    assert found == {(TASK1, 0), (TASK1, 1), (TASK, 0), (TASK, 1)}

    info, states, meta = load_run(str(out))
    assert runs_of(info) == [(TASK1, 0), (TASK1, 1), (TASK, 0), (TASK, 1)] and meta["step"] == 40
    _, alone_leaves, _ = straight  # task 2, seeds 0 and 1, trained alone
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(states)]
    for mine, theirs in zip(leaves, alone_leaves):
        if mine.ndim == 0 or mine.shape[0] != 4:
            continue
        np.testing.assert_allclose(mine[2:], theirs, rtol=1e-4, atol=1e-5)
    # On this two-episode dataset no task is ever solved, so both tasks' rewards are -1 everywhere
    # and task 1's agents equal task 2's with the same seed (tests/test_train.py checks that distinct
    # reward columns reach their runs).
    for m in leaves:
        if m.ndim > 0 and m.shape[0] == 4:
            np.testing.assert_allclose(m[:2], m[2:], rtol=1e-4, atol=1e-5)

    # Export needs to know which task; with it, it writes that agent.
    code, err = cli(capsys, "export", "--run", str(out), "--seed", "1", "--out", str(tmp_path / "a.msgpack"))
    assert_one_line_error(code, err, "trained several tasks", "--task", TASK1)
    code, err = cli(capsys, "export", "--run", str(out), "--seed", "1", "--task", TASK1, "--out",
                    str(tmp_path / "a.msgpack"))
    assert code == 0, err
    assert (tmp_path / "a.msgpack").is_file()


@pytest.mark.parametrize("argv, needles", [
    (["--tasks", TASK1, "cube-double-play-singletask-task1-v0"], ["share one dataset", "cube-single-play-v0",
                                                                 "cube-double-play-v0"]),
    (["--tasks", TASK, TASK], ["distinct"]),
    (["--tasks", TASK, "cube-single-play-singletask-task9-v0"], ["unknown task"]),
    (["--task", TASK, "--tasks", TASK1], ["--task TASK or --tasks", "not both"]),
    (["--tasks", TASK1, TASK, "--max-minutes", "0"], ["--max-minutes", "> 0"]),
])
def test_bad_task_lists_and_limits_are_one_line_before_anything_is_written(tmp_path, capsys, argv, needles):
    out = tmp_path / "run"
    base = ["train", "--steps", "10", "--out", str(out), "--data-dir", str(tmp_path / "data"), "--no-progress"]
    code, err = cli(capsys, *base, *argv)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    assert not out.exists() and not (tmp_path / "data").exists()


def test_a_multi_task_run_in_segments_ends_bitwise_as_one_uninterrupted_run(tmp_path, data_dir):
    straight_out, cut_out = tmp_path / "straight", tmp_path / "cut"
    run(spec(straight_out, data_dir, task=(TASK1, TASK), seeds=(3,)), **QUIET)
    segments, resume = 0, False
    while True:
        segments += 1
        try:
            run(spec(cut_out, data_dir, task=(TASK1, TASK), seeds=(3,)), resume=resume, max_minutes=1e-6, **QUIET)
            break
        except SegmentEnded:
            resume = True
    assert segments == 2
    _, a, meta_a = load_run(str(straight_out))
    _, b, meta_b = load_run(str(cut_out))
    assert meta_a["step"] == meta_b["step"] == 40
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for task in (TASK1, TASK):
        ra, rb = (json.loads((out / "records" / task / "seed3.json").read_text()) for out in (straight_out, cut_out))
        assert [p["success_rate"] for p in ra["success_curve"]] == [p["success_rate"] for p in rb["success_curve"]]
        assert ra["finished"] and rb["finished"]


def test_a_resume_that_changes_the_run_or_its_evaluation_is_refused_by_name(capsys, data_dir, straight_dir):
    # Another value of one knob: the message names it with both values, and nothing else.
    code, err = cli(capsys, *train_argv(straight_dir, data_dir, "--seeds", "0", "2", "--resume"))
    assert_one_line_error(code, err, "differs in seeds: [0, 1] there, [0, 2] here")
    assert "overrides" not in err and "steps" not in err
    # Fewer steps than planned: a run is never cut back (its records already say more).
    code, err = cli(capsys, *train_argv(straight_dir, data_dir, "--steps", "20", "--resume"))
    assert_one_line_error(code, err, "planned for 40 steps", "can only grow", "got 20")
    # More steps without --resume: say that --resume extends it.
    code, err = cli(capsys, *train_argv(straight_dir, data_dir, "--steps", "60"))
    assert_one_line_error(code, err, "planned for 40 steps", "--resume to extend it to 60")
    # The records' success rates were measured with 1 episode of at most 20 steps: a resume must keep that.
    code, err = cli(capsys, *train_argv(straight_dir, data_dir, "--eval-episodes", "5", "--resume"))
    assert_one_line_error(code, err, "--eval-episodes 1", "got 5")
    code, err = cli(capsys, *train_argv(straight_dir, data_dir, "--max-eval-steps", "30", "--resume"))
    assert_one_line_error(code, err, "--max-eval-steps 20", "got 30")


def test_export_keeps_an_existing_file_unless_told_and_evaluate_picks_a_task(tmp_path, capsys, data_dir):
    out = tmp_path / "run"
    run(spec(out, data_dir, task=(TASK1, TASK), seeds=(0,), steps=20), **QUIET)
    agent = tmp_path / "agent.msgpack"
    assert cli(capsys, "export", "--run", str(out), "--task", TASK, "--out", str(agent))[0] == 0
    before = agent.read_bytes()
    code, err = cli(capsys, "export", "--run", str(out), "--task", TASK1, "--out", str(agent))
    assert_one_line_error(code, err, "exists", "--overwrite")
    assert agent.read_bytes() == before
    assert cli(capsys, "export", "--run", str(out), "--task", TASK1, "--out", str(agent), "--overwrite")[0] == 0
    assert main(["evaluate", "--run", str(out), "--task", TASK1, "--episodes", "1", "--max-steps", "5"]) == 0
    printed = capsys.readouterr().out
    assert TASK1 in printed and TASK not in printed.replace(TASK1, "")


def test_a_finished_run_extended_with_more_steps_is_the_run_planned_that_long(tmp_path, capsys, data_dir, straight):
    """20 steps, finished; then --steps 40 --resume: the records and (bitwise) the parameters of the
    40-step run, and run.json says when and from how many steps it was extended."""
    out = tmp_path / "run"
    run(spec(out, data_dir, steps=20), **QUIET)
    assert json.loads((out / "records" / "seed0.json").read_text())["finished"]
    code, err = cli(capsys, *train_argv(out, data_dir, "--resume"))
    assert code == 0, err
    assert_same_outcome(out, straight)
    info = json.loads((out / "run.json").read_text())
    assert info["identity"]["steps"] == 40 and "--steps 40" in info["command"]
    [extension] = info["extended"]
    assert extension["from_steps"] == 20 and extension["to_steps"] == 40 and "--resume" not in extension["command"]


def test_a_checkpoint_of_the_shorter_plan_belongs_to_the_extended_run(tmp_path, data_dir):
    """Between the extension's run.json and its first save, the checkpoint still holds the shorter plan:
    evaluate, export and --resume accept it; a longer plan or another knob is still another run."""
    from rql_lite.runs.rundir import check_checkpoint_identity

    out = tmp_path / "run"
    run(spec(out, data_dir, steps=20), **QUIET)
    info = json.loads((out / "run.json").read_text())
    info["identity"]["steps"] = 40
    (out / "run.json").write_text(json.dumps(info))
    _, _, meta = load_run(str(out))
    assert meta["identity"]["steps"] == 20 and meta["step"] == 20
    check_checkpoint_identity("c", meta, info["identity"])
    with pytest.raises(ValueError, match="belongs to another run"):
        check_checkpoint_identity("c", meta, {**info["identity"], "steps": 10})
    with pytest.raises(ValueError, match="belongs to another run"):
        check_checkpoint_identity("c", meta, {**info["identity"], "seeds": [0, 2]})
