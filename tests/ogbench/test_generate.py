"""rql_lite.ogbench.generate: tiny datasets that load through OGBench's own loader."""
from __future__ import annotations

import os

import jax
import numpy as np
import ogbench
import pytest

from rql_lite import data
from rql_lite.ogbench import generate

EPISODE_LENGTH = 40
NUM_EPISODES = 2  # plus one validation episode


def _generate(name, out_dir, **kwargs):
    kwargs = dict(num_episodes=NUM_EPISODES, episode_length=EPISODE_LENGTH, progress=False) | kwargs
    return generate.generate_dataset(name, str(out_dir), **kwargs)


def _load_raw(path):
    with np.load(path) as f:
        return {key: f[key] for key in f}


@pytest.fixture(scope="module")
def cube_double(tmp_path_factory):
    return _generate("cube-double-play-v0", tmp_path_factory.mktemp("cube_double"))


def test_files_have_ogbench_layout(cube_double):
    train = _load_raw(cube_double.train_path)
    rows = NUM_EPISODES * (EPISODE_LENGTH + 1)
    assert {k: v.shape[0] for k, v in train.items()} == dict.fromkeys(
        ["observations", "actions", "terminals", "qpos", "qvel"], rows
    )
    assert train["observations"].dtype == np.float32 and train["qpos"].dtype == np.float32
    # Only the last row of each episode is terminal.
    assert np.flatnonzero(train["terminals"]).tolist() == [EPISODE_LENGTH, 2 * EPISODE_LENGTH + 1]
    # qpos is the state the observation was computed from: cube 0's xyz appears scaled in both.
    cube_xyz_from_qpos = (train["qpos"][:, 14:17] - np.array([0.425, 0.0, 0.0])) * 10.0
    np.testing.assert_allclose(train["observations"][:, 19:22], cube_xyz_from_qpos, atol=1e-4)
    assert np.abs(train["actions"]).max() <= 1.0
    # Each episode gets its own seed, so the two episodes differ.
    first, second = np.split(train["actions"], NUM_EPISODES)
    assert not np.array_equal(first, second)
    assert cube_double.stats["num_transitions"] == (NUM_EPISODES + 1) * EPISODE_LENGTH
    assert cube_double.stats["transitions_per_second"] > 0


def test_loads_through_ogbench_singletask(cube_double):
    env, train, val = ogbench.make_env_and_datasets(
        "cube-double-play-singletask-task2-v0", dataset_path=cube_double.train_path
    )
    expected_keys = {"observations", "actions", "next_observations", "terminals", "rewards", "masks"}
    assert set(train) == expected_keys and set(val) == expected_keys
    assert len(train["observations"]) == NUM_EPISODES * EPISODE_LENGTH
    assert len(val["observations"]) == EPISODE_LENGTH
    assert train["observations"].shape[1:] == env.observation_space.shape
    assert train["next_observations"].shape == train["observations"].shape
    assert train["actions"].shape[1:] == env.action_space.shape
    assert np.flatnonzero(train["terminals"]).tolist() == [EPISODE_LENGTH - 1, 2 * EPISODE_LENGTH - 1]
    # Within an episode, each next observation is the following row's observation.
    np.testing.assert_array_equal(
        train["next_observations"][: EPISODE_LENGTH - 1], train["observations"][1:EPISODE_LENGTH]
    )
    # Reward = (#cubes at their goal) - (#cubes), so in {-2, -1, 0} for two cubes.
    assert set(np.unique(train["rewards"])) <= {-2.0, -1.0, 0.0}
    np.testing.assert_array_equal(train["masks"], (train["rewards"] != 0).astype(np.float32))


def test_chunk_sampler_respects_episode_ends_on_a_generated_dataset(cube_double):
    _, train, _ = ogbench.make_env_and_datasets("cube-double-play-singletask-task2-v0",
                                                dataset_path=cube_double.train_path)
    # Tag every row with its episode (OGBench's terminals mark each episode's last row).
    episode = np.concatenate([[0], np.cumsum(train["terminals"])[:-1]]).astype(np.float32)
    tagged = dict(train, observations=train["observations"].copy(), actions=train["actions"].copy(),
                  next_observations=train["next_observations"].copy())
    tagged["observations"][:, 0] = tagged["next_observations"][:, 0] = episode
    tagged["actions"][:, 0] = episode
    batch = data.sample_chunks(data.from_dict(tagged), jax.random.PRNGKey(0), 512, 5)
    obs_episode = np.asarray(batch["observations"])[:, 0]
    actions, valid = np.asarray(batch["actions"])[:, :, 0], np.asarray(batch["valid"]) > 0
    assert np.all(actions == obs_episode[:, None])  # entries past the end repeat the last row of the same episode
    assert np.all(np.asarray(batch["next_observations"])[:, 0] == obs_episode)
    assert valid[:, 0].all() and (~valid).any()  # some chunks do run into an episode's end
    assert np.all(np.diff(valid.astype(int), axis=1) <= 0)  # once invalid, stays invalid


def test_same_seed_same_data_for_any_worker_count(cube_double, tmp_path):
    again = _generate("cube-double-play-v0", tmp_path / "again")
    parallel = _generate("cube-double-play-v0", tmp_path / "parallel", workers=2)
    for index in range(2):  # train, val
        reference = _load_raw(cube_double[index])
        for run in (again, parallel):
            data = _load_raw(run[index])
            assert data.keys() == reference.keys()
            for key in reference:
                np.testing.assert_array_equal(data[key], reference[key], err_msg=key)
            # Same bytes too, so the sha256 that run records keep identifies the data itself.
            with open(run[index], "rb") as a, open(cube_double[index], "rb") as b:
                assert a.read() == b.read()


@pytest.mark.parametrize(
    "name, task, num_buttons, num_rewards",
    [
        ("puzzle-3x3-play-v0", "puzzle-3x3-play-singletask-task1-v0", 9, 9),
        ("scene-play-v0", "scene-play-singletask-task2-v0", 2, 5),  # cube + 2 buttons + drawer + window
    ],
)
def test_button_envs_store_button_states(tmp_path, name, task, num_buttons, num_rewards):
    paths = _generate(task, tmp_path, num_episodes=1)  # a task name selects its dataset
    assert os.path.basename(paths.train_path) == f"{name}.npz"
    raw = _load_raw(paths.train_path)
    assert raw["button_states"].shape == (EPISODE_LENGTH + 1, num_buttons)
    assert raw["button_states"].dtype == np.int64
    assert set(np.unique(raw["button_states"])) <= {0, 1}

    env, train, _ = ogbench.make_env_and_datasets(task, dataset_path=paths.train_path, add_info=True)
    assert train["button_states"].shape == (EPISODE_LENGTH, num_buttons)
    assert train["observations"].shape == (EPISODE_LENGTH, *env.observation_space.shape)
    assert train["rewards"].min() >= -num_rewards and train["rewards"].max() <= 0


def test_every_recipe_is_found_by_its_dataset_and_task_names():
    assert all(generate.get_recipe(name) is recipe for name, recipe in generate.DATASETS.items())
    assert generate.get_recipe("cube-double-play-singletask-task2-v0") is generate.DATASETS["cube-double-play-v0"]


def test_unknown_name_suggests_close_names(tmp_path):
    with pytest.raises(ValueError, match="cube-double-play-v0"):
        generate.generate_dataset("cube-dubble-play-v0", str(tmp_path))
    with pytest.raises(ValueError, match="Valid datasets: cube-single-play-v0"):
        generate.get_recipe("antmaze-large-navigate-v0")
    assert not os.listdir(tmp_path)


def test_no_temporary_files_remain(cube_double):
    out_dir = os.path.dirname(cube_double.train_path)
    assert sorted(os.listdir(out_dir)) == ["cube-double-play-v0-val.npz", "cube-double-play-v0.npz"]


def test_failed_write_keeps_old_file_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "data.npz"
    path.write_bytes(b"previous contents")

    def interrupted_save(file, arrays):
        file.write(b"half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(generate, "_write_npz_reproducibly", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        generate._save_npz_atomic(str(path), {"x": np.zeros(3)})
    assert os.listdir(tmp_path) == ["data.npz"]
    assert path.read_bytes() == b"previous contents"
