"""The OGBench run end to end at tiny size: records, exact resume, Ctrl-C, and refusals."""
import json
import os
import urllib.error

import jax
import numpy as np
import pytest

from rql_lite import data
from rql_lite.runs import checkpoint
from rql_lite.runs.experiment import CHECKPOINT_FILE, RunSpec, run
from rql_lite.train import init_states

TASK = "cube-single-play-singletask-task2-v0"
TINY = dict(policy_hidden=(16,), value_hidden=(16,), num_values=2, batch_size=16)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("datasets"))


def spec(out, data_dir, **kw):
    base = dict(task=TASK, seeds=(0, 1), steps=40, out=str(out), profile="smoke", overrides=TINY, eval_every=20,
                eval_episodes=1, save_every=20, dataset_episodes=2, episode_length=100, max_eval_steps=20,
                data_dir=data_dir)
    base.update(kw)
    return RunSpec(**base)


def saved_leaves(out):
    meta = checkpoint.read_metadata(os.path.join(out, CHECKPOINT_FILE))
    from rql_lite.agent import AgentConfig

    template, _ = init_states(AgentConfig(**meta["config"]), [0, 1])
    states, _ = checkpoint.load(os.path.join(out, CHECKPOINT_FILE), template)
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(states)], meta


def test_run_writes_records_with_provenance(tmp_path, data_dir):
    records = run(spec(tmp_path / "a", data_dir), progress=False, log=lambda *_: None)
    assert [r["seed"] for r in records] == [0, 1]
    for r in records:
        with open(tmp_path / "a" / "records" / f"seed{r['seed']}.json") as f:
            on_disk = json.load(f)
        assert on_disk["finished"] and on_disk["steps"] == 40
        assert [p["step"] for p in on_disk["success_curve"]] == [20, 40]
        assert 0.0 <= on_disk["final_success_rate"] <= 1.0
        assert len(on_disk["dataset"]["sha256"]) == 64 and on_disk["dataset"]["source"] == "generated"
        for key in ("task", "agent", "config", "git_commit", "device", "wall_time_s"):
            assert key in on_disk


def test_stopped_and_resumed_run_equals_an_uninterrupted_one(tmp_path, data_dir, monkeypatch):
    run(spec(tmp_path / "straight", data_dir), progress=False, log=lambda *_: None)

    import rql_lite.train as train_module

    real, calls = train_module.run_updates_runs, {"n": 0}

    def interrupt_second_dispatch(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as if Ctrl-C arrived
        return real(*args)

    monkeypatch.setattr(train_module, "run_updates_runs", interrupt_second_dispatch)
    with pytest.raises(KeyboardInterrupt):
        run(spec(tmp_path / "stopped", data_dir), progress=False, log=lambda *_: None)
    _, meta = saved_leaves(tmp_path / "stopped")
    assert meta["step"] == 20  # Ctrl-C saved the last complete state
    monkeypatch.setattr(train_module, "run_updates_runs", real)
    run(spec(tmp_path / "stopped", data_dir), resume=True, progress=False, log=lambda *_: None)

    straight, _ = saved_leaves(tmp_path / "straight")
    resumed, meta = saved_leaves(tmp_path / "stopped")
    assert meta["step"] == 40
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)  # bitwise on CPU


def test_out_dir_of_another_run_or_the_same_run_without_resume_is_refused(tmp_path, data_dir):
    run(spec(tmp_path / "r", data_dir, steps=20), progress=False, log=lambda *_: None)
    with pytest.raises(ValueError, match="another run's results.*agent"):
        run(spec(tmp_path / "r", data_dir, steps=20, agent="tfql"), progress=False, log=lambda *_: None)
    with pytest.raises(ValueError, match="--resume"):
        run(spec(tmp_path / "r", data_dir, steps=20), progress=False, log=lambda *_: None)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        run(spec(tmp_path / "junk", data_dir), progress=False, log=lambda *_: None)


def test_corrupt_checkpoint_on_resume_is_refused(tmp_path, data_dir):
    run(spec(tmp_path / "c", data_dir, steps=20), progress=False, log=lambda *_: None)
    (tmp_path / "c" / CHECKPOINT_FILE).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        run(spec(tmp_path / "c", data_dir, steps=20), resume=True, progress=False, log=lambda *_: None)


def test_unknown_task_lists_close_names():
    with pytest.raises(ValueError, match="cube-double-play-singletask-task2-v0"):
        data.check_task("cube-dubble-play-singletask-task2-v0")


def test_official_dataset_without_internet_says_how_to_generate(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(ValueError, match="--dataset generated"):
        data.load_ogbench(TASK, "official", data_dir=str(tmp_path))


def _copy_dataset(data_dir, dest, name="cube-single-play-v0", mutate=None):
    src = os.path.join(data_dir, "generated", "2ep-100steps-seed0", f"{name}.npz")
    for suffix in ("", "-val"):
        arrays = dict(np.load(src.replace(".npz", f"{suffix}.npz")))
        if mutate and not suffix:
            mutate(arrays)
        np.savez_compressed(os.path.join(dest, f"{name}{suffix}.npz"), **arrays)
    return os.path.join(dest, f"{name}.npz")


def test_dataset_for_another_environment_is_refused(tmp_path, data_dir):
    data.load_ogbench(TASK, "generated", data_dir=data_dir, num_episodes=2, episode_length=100)
    path = _copy_dataset(data_dir, tmp_path, mutate=lambda a: a.update(observations=a["observations"][:, :20]))
    with pytest.raises(ValueError, match="observation dim 20.*needs 28"):
        data.load_ogbench(TASK, path)


def test_nan_in_a_dataset_names_key_and_index(tmp_path, data_dir):
    data.load_ogbench(TASK, "generated", data_dir=data_dir, num_episodes=2, episode_length=100)

    def poison(arrays):
        arrays["actions"][7, 2] = np.nan

    path = _copy_dataset(data_dir, tmp_path, mutate=poison)
    with pytest.raises(ValueError, match=r"'actions'.*\(7, 2\)"):
        data.load_ogbench(TASK, path)
