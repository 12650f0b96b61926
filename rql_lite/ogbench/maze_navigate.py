"""OGBench's "navigate" recipe for the point mazes: a noisy controller that follows the maze's oracle.

OGBench makes ``pointmaze-{medium,large,giant}-navigate-v0`` without any learned expert
(``data_gen_scripts/generate_locomaze.py`` with ``--dataset_type=navigate --noise=0.5``). Each episode:

* starts in a cell drawn uniformly from **all free cells** and aims at a goal drawn uniformly from the
  **vertex cells** (free cells that are not the middle of a straight corridor);
* at every step asks the env for the oracle subgoal (``get_oracle_subgoal``: the neighbouring cell one
  BFS step closer to the goal) and acts with the unit vector towards it plus Gaussian noise::

      a_t = clip(d_t + eps_t, -1, 1),   d_t = (g_t - x_t) / (||g_t - x_t|| + 1e-6),   eps_t ~ N(0, 0.5^2 I)

  (the point's policy in OGBench's script is the identity on that direction: ``actor_fn(ob) = ob[-2:]``);
* draws a **new goal** from the vertex cells the moment the current one is reached, so an episode
  strings several goals together; it never terminates early (``terminate_at_goal=False``).

The recorded rows are OGBench's: observation before the step, action, ``terminals`` (the episode's last
row), ``prev_qpos`` and ``prev_qvel``. The env's own noise (start position, goal position) is drawn from
the env's generator, seeded per episode; the recipe's draws (cells, action noise) from NumPy's global
generator, as in OGBench's script, also seeded per episode by the caller.
"""
from __future__ import annotations

import numpy as np

NAVIGATE_NOISE = 0.5  # OGBench's --noise for every pointmaze navigate dataset


def maze_cells(maze_map: np.ndarray) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """``(free_cells, vertex_cells)`` of a maze map (``1`` wall, ``0`` free), as OGBench lists them.

    A vertex cell is a free cell that is not a straight corridor's middle: not free above and below
    with walls left and right, nor free left and right with walls above and below.
    """
    maze_map = np.asarray(maze_map)
    free, vertices = [], []
    for i in range(maze_map.shape[0]):
        for j in range(maze_map.shape[1]):
            if maze_map[i, j] != 0:
                continue
            free.append((i, j))
            vertical_corridor = (maze_map[i - 1, j] == 0 and maze_map[i + 1, j] == 0
                                 and maze_map[i, j - 1] == 1 and maze_map[i, j + 1] == 1)
            horizontal_corridor = (maze_map[i, j - 1] == 0 and maze_map[i, j + 1] == 0
                                   and maze_map[i - 1, j] == 1 and maze_map[i + 1, j] == 1)
            if not (vertical_corridor or horizontal_corridor):
                vertices.append((i, j))
    return free, vertices


def oracle_direction(maze) -> np.ndarray:
    """The unit vector ``(2,)`` from the point towards the oracle subgoal of the current goal
    (``maze`` is the unwrapped OGBench maze env)."""
    xy = maze.get_xy()
    subgoal_xy, _ = maze.get_oracle_subgoal(xy, maze.cur_goal_xy)
    offset = subgoal_xy - xy
    return offset / (np.linalg.norm(offset) + 1e-6)


def noisy_action(direction: np.ndarray, noise: float = NAVIGATE_NOISE) -> np.ndarray:
    """``clip(direction + N(0, noise^2), -1, 1)``, the noise from NumPy's global generator."""
    return np.clip(direction + np.random.normal(0.0, noise, np.shape(direction)), -1.0, 1.0)


def rollout(env, cells, env_seed: int, noise: float = NAVIGATE_NOISE) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One navigate episode in ``env`` (a ``gymnasium.make`` of ``pointmaze-*-v0`` with
    ``terminate_at_goal=False`` and the episode's length + 1 as ``max_episode_steps``).

    Args:
      cells: ``maze_cells(env.unwrapped.maze_map)``.
      env_seed: seeds the env's generator (start and goal noise, the settling steps' actions).

    Returns:
      ``(rows, directions)``: the rows OGBench saves (``observations``, ``actions``, ``terminals``,
      ``qpos``, ``qvel``), and the oracle direction ``(T, 2)`` each action was drawn around.
    """
    free, vertices = cells
    maze = env.unwrapped
    env.action_space.seed(env_seed)  # the reset's settling steps sample actions from it
    init_ij = free[np.random.randint(len(free))]
    goal_ij = vertices[np.random.randint(len(vertices))]
    ob, _ = env.reset(seed=env_seed, options=dict(task_info=dict(init_ij=init_ij, goal_ij=goal_ij)))

    rows = {"observations": [], "actions": [], "terminals": [], "qpos": [], "qvel": []}
    directions = []
    done = False
    while not done:
        direction = oracle_direction(maze)
        action = noisy_action(direction, noise)
        next_ob, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if info["success"]:  # reached: a new goal, as OGBench's navigate data does
            maze.set_goal(vertices[np.random.randint(len(vertices))])
        rows["observations"].append(ob)
        rows["actions"].append(action)
        rows["terminals"].append(done)
        rows["qpos"].append(info["prev_qpos"])
        rows["qvel"].append(info["prev_qvel"])
        directions.append(direction)
        ob = next_ob
    dtypes = {"terminals": bool}
    arrays = {key: np.asarray(value, dtype=dtypes.get(key, np.float32)) for key, value in rows.items()}
    return arrays, np.asarray(directions, np.float32)


def task_path_cells(task: str) -> int:
    """The shortest path, in maze cells, from an OGBench point-maze task's start cell to its goal cell
    (``"pointmaze-large-navigate-singletask-task2-v0"``: 19), by the maze's own BFS."""
    import re

    import gymnasium
    import ogbench  # noqa: F401  (registers the maze envs)

    match = re.fullmatch(r"pointmaze-(\w+)-navigate-singletask-task(\d)-v0", task)
    if match is None:
        raise ValueError(f"{task!r} is not a point-maze single-task name such as "
                         f"'pointmaze-medium-navigate-singletask-task1-v0'")
    env = gymnasium.make(f"pointmaze-{match[1]}-singletask-task{match[2]}-v0")
    maze = env.unwrapped
    info = maze.task_infos[int(match[2]) - 1]
    _, bfs = maze.get_oracle_subgoal(np.asarray(info["init_xy"]), np.asarray(info["goal_xy"]))
    env.close()
    return int(bfs[tuple(info["init_ij"])])
