"""The OGBench run end to end at tiny size: records, exact resume, Ctrl-C, and refusals.

The reference run (``conftest.straight_dir``: the tiny run of ``support.spec``, uninterrupted) is
trained once per session; these tests read it, or copy it and change the copy.
"""
import json
import os
import shutil

import jax
import numpy as np
import pytest
from support import QUIET, assert_same_outcome, cli, interrupted_at_call, spec, train_argv

from rql_lite.agent import AgentConfig
from rql_lite.runs import checkpoint, records
from rql_lite.runs.experiment import run
from rql_lite.runs.rundir import CHECKPOINT_FILE, RUN_FILE
from rql_lite.train import init_states


def saved_leaves(out):
    meta = checkpoint.read_metadata(os.path.join(out, CHECKPOINT_FILE))
    template, _ = init_states(AgentConfig(**meta["config"]), [0, 1])
    states, _ = checkpoint.load(os.path.join(out, CHECKPOINT_FILE), template)
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(states)], meta


def test_a_run_writes_records_with_provenance(straight_dir):
    for seed in (0, 1):
        path = straight_dir / "records" / f"seed{seed}.json"
        on_disk = json.loads(path.read_text())
        assert on_disk["schema"] == records.RECORD_SCHEMA and on_disk["seed"] == seed
        assert on_disk["finished"] and on_disk["steps"] == 40
        assert [p["step"] for p in on_disk["success_curve"]] == [20, 40]
        assert 0.0 <= on_disk["final_success_rate"] <= 1.0
        assert len(on_disk["dataset"]["sha256"]) == 64 and on_disk["dataset"]["source"] == "generated"
        for key in ("task", "agent", "config", "git_commit", "device", "wall_time_s", "runs_batching"):
            assert key in on_disk
        record = records.Record.from_file(str(path))  # and the reader reads what the writer wrote
        assert (record.seed, record.steps, record.finished) == (seed, 40, True)
        assert record.success_rate == on_disk["final_success_rate"]


def test_stopped_and_resumed_from_the_command_line_equals_an_uninterrupted_run(tmp_path, capsys, data_dir, straight,
                                                                                monkeypatch):
    import rql_lite.train as train_module

    real = train_module.run_updates_runs
    out = tmp_path / "stopped"
    monkeypatch.setattr(train_module, "run_updates_runs", interrupted_at_call(real, 2))  # Ctrl-C in dispatch 2
    with pytest.raises(KeyboardInterrupt):
        run(spec(out, data_dir), **QUIET)
    _, meta = saved_leaves(out)
    assert meta["step"] == 20  # Ctrl-C saved the last complete state
    monkeypatch.setattr(train_module, "run_updates_runs", real)
    code, err = cli(capsys, *train_argv(out, data_dir, "--resume"))
    assert code == 0, err
    _, meta = saved_leaves(out)
    assert meta["step"] == 40
    assert_same_outcome(out, straight)  # bitwise on CPU


def test_out_dir_of_another_run_or_the_same_run_without_resume_is_refused(tmp_path, data_dir, straight_dir):
    shutil.copytree(straight_dir, tmp_path / "r")
    with pytest.raises(ValueError, match="another run's results.*agent"):
        run(spec(tmp_path / "r", data_dir, agent="tfql"), **QUIET)
    with pytest.raises(ValueError, match="--resume"):
        run(spec(tmp_path / "r", data_dir), **QUIET)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        run(spec(tmp_path / "junk", data_dir), **QUIET)


def test_corrupt_checkpoint_on_resume_is_refused(tmp_path, data_dir, straight_dir):
    out = tmp_path / "c"
    shutil.copytree(straight_dir, out)
    os.remove(out / (CHECKPOINT_FILE + checkpoint.PREVIOUS_SUFFIX))  # no previous checkpoint to fall back on
    (out / CHECKPOINT_FILE).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        run(spec(out, data_dir), resume=True, **QUIET)


def test_an_older_run_without_the_matmul_precision_field_resumes(tmp_path, data_dir, monkeypatch):
    """A run directory written before AgentConfig.matmul_precision existed (run.json and checkpoint
    without it) resumes as "default", what it ran with."""
    import rql_lite.train as train_module

    one = spec(tmp_path / "r", data_dir, seeds=(0,), steps=20, eval_every=10, eval_episodes=0, save_every=10)
    real = train_module.run_updates_runs
    monkeypatch.setattr(train_module, "run_updates_runs", interrupted_at_call(real, 2))
    with pytest.raises(KeyboardInterrupt):
        run(one, **QUIET)
    monkeypatch.setattr(train_module, "run_updates_runs", real)
    # Rewrite the run as an older rql_lite wrote it: no matmul_precision anywhere.
    ckpt = os.path.join(one.out, CHECKPOINT_FILE)
    meta = checkpoint.read_metadata(ckpt)
    template, _ = init_states(AgentConfig(**meta["config"]), [0])
    states, _ = checkpoint.load(ckpt, template)
    del meta["config"]["matmul_precision"]
    meta.pop("network")
    checkpoint.save(ckpt, states, meta)
    if os.path.exists(ckpt + checkpoint.PREVIOUS_SUFFIX):
        os.remove(ckpt + checkpoint.PREVIOUS_SUFFIX)
    info_path = os.path.join(one.out, RUN_FILE)
    with open(info_path) as f:
        info = json.load(f)
    del info["config"]["matmul_precision"]
    with open(info_path, "w") as f:
        json.dump(info, f)
    assert meta["step"] == 10
    resumed = run(one, resume=True, **QUIET)
    assert resumed[0]["steps"] == 20 and resumed[0]["config"]["matmul_precision"] == "default"
