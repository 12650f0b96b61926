"""Loading OGBench datasets: the official download without internet, and files for another env or
with NaN are refused by name. The generated tiny dataset is the session's (``conftest.data_dir``)."""
import os
import urllib.error

import numpy as np
import pytest
from support import DATASET_EPISODES, EPISODE_LENGTH, TASK

from rql_lite.ogbench.datasets import generated_folder, load_ogbench


def test_official_dataset_without_internet_says_how_to_generate(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(ValueError, match="--dataset generated"):
        load_ogbench(TASK, "official", data_dir=str(tmp_path))


def _copy_dataset(data_dir, dest, name="cube-single-play-v0", mutate=None):
    folder = generated_folder(data_dir, num_episodes=DATASET_EPISODES, episode_length=EPISODE_LENGTH)
    src = os.path.join(folder, f"{name}.npz")
    for suffix in ("", "-val"):
        arrays = dict(np.load(src.replace(".npz", f"{suffix}.npz")))
        if mutate and not suffix:
            mutate(arrays)
        np.savez_compressed(os.path.join(dest, f"{name}{suffix}.npz"), **arrays)
    return os.path.join(dest, f"{name}.npz")


def test_the_generated_dataset_loads_with_its_provenance(data_dir):
    env, train, val, info = load_ogbench(TASK, "generated", data_dir=data_dir, num_episodes=DATASET_EPISODES,
                                         episode_length=EPISODE_LENGTH)
    assert info["source"] == "generated" and len(info["sha256"]) == 64
    assert info["num_transitions"] == DATASET_EPISODES * EPISODE_LENGTH == len(train["actions"])
    assert train["observations"].shape[1:] == env.observation_space.shape and len(val["actions"]) == EPISODE_LENGTH


def test_dataset_for_another_environment_is_refused(tmp_path, data_dir):
    path = _copy_dataset(data_dir, tmp_path, mutate=lambda a: a.update(observations=a["observations"][:, :20]))
    with pytest.raises(ValueError, match="observation dim 20.*needs 28"):
        load_ogbench(TASK, path)


def test_nan_in_a_dataset_names_key_and_index(tmp_path, data_dir):
    def poison(arrays):
        arrays["actions"][7, 2] = np.nan

    path = _copy_dataset(data_dir, tmp_path, mutate=poison)
    with pytest.raises(ValueError, match=r"'actions'.*\(7, 2\)"):
        load_ogbench(TASK, path)
