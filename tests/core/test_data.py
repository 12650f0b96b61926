"""The chunk sampler never mixes episodes; datasets with NaN or ragged keys are refused."""
import jax
import numpy as np
import pytest

from rql_lite.data import episode_ends, from_arrays, sample_chunks

LENGTHS = [1, 2, 3, 5, 4, 1, 6]  # short, known episodes


def labelled_dataset():
    episode = np.concatenate([np.full(n, i) for i, n in enumerate(LENGTHS)])
    step = np.concatenate([np.arange(n) for n in LENGTHS])
    n = episode.size
    terminals = np.concatenate([np.eye(1, k, k - 1)[0] for k in LENGTHS])
    obs = np.stack([episode, step], axis=1).astype(np.float32)
    actions = np.stack([episode, step], axis=1).astype(np.float32)
    rewards = (100 * episode + step).astype(np.float32)
    masks = np.ones(n, np.float32)
    masks[np.flatnonzero((episode == 3) & (step == 2))] = 0.0  # a true terminal inside episode 3
    return from_arrays(obs, actions, rewards, terminals, masks=masks), episode, step


def test_episode_ends():
    np.testing.assert_array_equal(episode_ends(np.array([0, 1, 0, 0, 1, 0])), [1, 1, 4, 4, 4, 5])


@pytest.mark.parametrize("horizon", [1, 3, 5])
def test_sampler_never_mixes_two_episodes(horizon):
    ds, _, _ = labelled_dataset()
    batch = jax.jit(sample_chunks, static_argnums=(2, 3))(ds, jax.random.PRNGKey(0), 4000, horizon)
    obs, actions = np.asarray(batch["observations"]), np.asarray(batch["actions"])
    valid, rewards = np.asarray(batch["valid"]), np.asarray(batch["rewards"])
    nxt = np.asarray(batch["next_observations"])
    start_ep, start_step = obs[:, 0], obs[:, 1]
    # Every chunk entry, valid or padding, comes from the start's episode.
    assert (actions[:, :, 0] == start_ep[:, None]).all()
    assert (nxt[:, 0] == start_ep).all()
    length = np.asarray(LENGTHS)[start_ep.astype(int)]
    for j in range(horizon):
        expect_valid = start_step + j < length
        np.testing.assert_array_equal(valid[:, j], expect_valid)
        # Valid entries are consecutive steps; padding repeats the last step with zero reward.
        np.testing.assert_array_equal(actions[:, j, 1], np.minimum(start_step + j, length - 1))
        assert (rewards[~expect_valid, j] == 0).all()
        np.testing.assert_array_equal(rewards[expect_valid, j], 100 * start_ep[expect_valid] + start_step[expect_valid] + j)
    # The bootstrap state follows the last valid step (or repeats the episode's last state).
    last_step = np.minimum(start_step + horizon - 1, length - 1)
    np.testing.assert_array_equal(nxt[:, 1], np.minimum(last_step + 1, length - 1))
    assert len(np.unique(start_ep)) == len(LENGTHS)  # every episode was drawn


def test_true_terminal_inside_an_episode_is_carried_as_a_mask():
    ds, _, _ = labelled_dataset()
    batch = sample_chunks(ds, jax.random.PRNGKey(1), 4000, 3)
    obs, masks = np.asarray(batch["observations"]), np.asarray(batch["masks"])
    hit = (obs[:, 0] == 3) & (obs[:, 1] == 1)  # chunk starting one step before the terminal
    assert hit.any()
    np.testing.assert_array_equal(masks[hit][0], [1.0, 0.0, 1.0])


def test_nan_in_a_dataset_names_the_key_and_first_index():
    obs = np.zeros((10, 2), np.float32)
    obs[7, 1] = np.inf
    with pytest.raises(ValueError, match=r"'observations'.*\(7, 1\)"):
        from_arrays(obs, np.zeros((10, 1)), np.zeros(10), np.zeros(10))


def test_ragged_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="'rewards' has 9 rows"):
        from_arrays(np.zeros((10, 2)), np.zeros((10, 1)), np.zeros(9), np.zeros(10))
