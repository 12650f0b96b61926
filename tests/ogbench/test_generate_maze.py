"""rql_lite.ogbench.maze_navigate and the point-maze datasets: OGBench's navigate recipe on a few short
episodes, loaded back through OGBench's own loader and its single-task relabelling."""
from __future__ import annotations

import gymnasium
import numpy as np
import ogbench
import pytest

from rql_lite.ogbench import generate, maze_navigate

EPISODE_LENGTH = 60
NUM_EPISODES = 2  # plus one validation episode


@pytest.fixture(scope="module")
def medium_env():
    env = gymnasium.make("pointmaze-medium-v0", terminate_at_goal=False, max_episode_steps=301)
    return env, maze_navigate.maze_cells(env.unwrapped.maze_map)


@pytest.fixture(scope="module")
def medium_data(tmp_path_factory):
    return generate.generate_dataset("pointmaze-medium-navigate-v0", str(tmp_path_factory.mktemp("pointmaze")),
                                     num_episodes=NUM_EPISODES, episode_length=EPISODE_LENGTH, progress=False)


def test_cells_are_ogbenchs_free_and_vertex_cells():
    maze = np.array([[1, 1, 1, 1, 1],
                     [1, 0, 0, 0, 1],
                     [1, 1, 1, 0, 1],
                     [1, 1, 1, 0, 1],
                     [1, 1, 1, 1, 1]])
    free, vertices = maze_navigate.maze_cells(maze)
    assert free == [(1, 1), (1, 2), (1, 3), (2, 3), (3, 3)]
    # (1, 2) is a horizontal corridor's middle and (2, 3) a vertical one's: not vertices.
    assert vertices == [(1, 1), (1, 3), (3, 3)]


def test_the_recipes_match_ogbenchs_commands():
    sizes = {name: (r.env_id, r.num_episodes, r.episode_length) for name, r in generate.DATASETS.items()
             if r.family == "pointmaze"}
    assert sizes == {"pointmaze-medium-navigate-v0": ("pointmaze-medium-v0", 1000, 1000),
                     "pointmaze-large-navigate-v0": ("pointmaze-large-v0", 1000, 1000),
                     "pointmaze-giant-navigate-v0": ("pointmaze-giant-v0", 500, 2000)}
    assert maze_navigate.NAVIGATE_NOISE == 0.5
    assert generate.published_episode_length("pointmaze-giant-navigate-singletask-task1-v0") == 2000


def test_without_noise_the_controller_follows_the_oracle_to_goal_after_goal(medium_env):
    env, cells = medium_env
    np.random.seed(0)
    rows, directions = maze_navigate.rollout(env, cells, env_seed=0, noise=0.0)
    np.testing.assert_allclose(rows["actions"], directions, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, atol=1e-4)
    # It reaches goals (a new one is drawn on arrival, so it keeps moving): the relabelled single-task
    # rewards are not what this checks; the env's own success is, through how far the point travels.
    travelled = np.linalg.norm(np.diff(rows["qpos"], axis=0), axis=1).sum()
    assert travelled > 4 * env.unwrapped._maze_unit


def test_action_noise_is_gaussian_around_the_oracle_direction(medium_env):
    env, cells = medium_env
    np.random.seed(1)
    residuals = []
    for episode in range(4):
        rows, directions = maze_navigate.rollout(env, cells, env_seed=episode)
        near_zero = np.abs(directions) < 0.2  # components far from the clip at +-1, so the quartiles are the noise's
        residuals.append((rows["actions"] - directions)[near_zero])
    residuals = np.concatenate(residuals)
    assert residuals.size > 300
    quartiles = np.quantile(residuals, [0.25, 0.5, 0.75])
    # N(0, 0.5^2) has quartiles -0.337, 0, 0.337.
    np.testing.assert_allclose(quartiles, [-0.337, 0.0, 0.337], atol=0.08)


def test_files_have_ogbench_layout(medium_data):
    with np.load(medium_data.train_path) as f:
        train = {key: f[key] for key in f}
    rows = NUM_EPISODES * (EPISODE_LENGTH + 1)
    assert {k: v.shape for k, v in train.items()} == {
        "observations": (rows, 2), "actions": (rows, 2), "terminals": (rows,), "qpos": (rows, 2), "qvel": (rows, 2)}
    assert np.flatnonzero(train["terminals"]).tolist() == [EPISODE_LENGTH, 2 * EPISODE_LENGTH + 1]
    np.testing.assert_array_equal(train["observations"], train["qpos"])  # the point observes its position
    assert np.abs(train["actions"]).max() <= 1.0


def test_loads_through_ogbench_singletask_with_its_relabelling(medium_data):
    env, train, val = ogbench.make_env_and_datasets("pointmaze-medium-navigate-singletask-task1-v0",
                                                    dataset_path=medium_data.train_path)
    assert len(train["observations"]) == NUM_EPISODES * EPISODE_LENGTH and len(val["observations"]) == EPISODE_LENGTH
    assert train["observations"].shape[1:] == env.observation_space.shape == (2,)
    np.testing.assert_array_equal(train["next_observations"][: EPISODE_LENGTH - 1],
                                  train["observations"][1:EPISODE_LENGTH])
    # Single-task rewards: 0 within the goal's tolerance of task 1's goal, else -1; no bootstrap from success.
    goal_xy = env.unwrapped.task_infos[0]["goal_xy"]
    with np.load(medium_data.train_path) as f:
        qpos = f["qpos"][~f["terminals"]]
    success = np.linalg.norm(qpos - goal_xy, axis=1) <= env.unwrapped._goal_tol
    np.testing.assert_array_equal(train["rewards"], success - 1.0)
    np.testing.assert_array_equal(train["masks"], 1.0 - success)


def test_same_seed_same_bytes_for_any_worker_count(medium_data, tmp_path):
    parallel = generate.generate_dataset("pointmaze-medium-navigate-v0", str(tmp_path), num_episodes=NUM_EPISODES,
                                         episode_length=EPISODE_LENGTH, progress=False, workers=2)
    for ours, reference in zip(parallel, medium_data):
        with open(ours, "rb") as a, open(reference, "rb") as b:
            assert a.read() == b.read()


def test_a_full_size_run_takes_the_published_episode_length():
    from rql_lite.runs.spec import RunSpec

    giant = RunSpec(task="pointmaze-giant-navigate-singletask-task1-v0", profile="full").resolved()
    scene = RunSpec(task="scene-play-singletask-task1-v0", profile="full").resolved()
    assert (giant.episode_length, scene.episode_length) == (2000, 1000)
    assert RunSpec(task="pointmaze-giant-navigate-singletask-task1-v0", profile="full",
                   episode_length=1000).resolved().episode_length == 1000


def test_task_path_lengths_are_the_mazes_bfs_distances():
    assert maze_navigate.task_path_cells("pointmaze-medium-navigate-singletask-task3-v0") == 6
    assert maze_navigate.task_path_cells("pointmaze-large-navigate-singletask-task2-v0") == 19
    with pytest.raises(ValueError, match="point-maze single-task name"):
        maze_navigate.task_path_cells("scene-play-singletask-task1-v0")
