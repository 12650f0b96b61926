"""How often the rules where rql_lite and the authors' release differ apply (rql_lite.ogbench.fidelity),
counted on a dataset whose answers are known by construction."""
import numpy as np
import pytest

from rql_lite import data
from rql_lite.ogbench.fidelity import chunk_rule_fractions


def test_chunk_rule_fractions_count_what_they_say_on_a_dataset_with_known_answers():
    episodes, length, h = 200, 10, 5
    n = episodes * length
    rng = np.random.default_rng(0)
    terminals = np.tile(np.eye(length)[-1], episodes)
    masks = np.ones(n)
    masks[7::length] = 0.0  # a success at row 7 of every episode
    actions = rng.uniform(-0.9, 0.9, (n, 2))
    actions[::100, 0] = 1.0  # 1 row in 100 at the bound, which the release would clip
    ds = data.from_arrays(rng.normal(size=(n, 3)), actions, np.zeros(n), terminals, masks=masks)
    got = chunk_rule_fractions(ds, h, num_chunks=40_000)["fractions"]
    # Starts are uniform over the 10 rows of an episode:
    expected = {
        "crosses_episode_end": 0.4,  # starts 6..9 run past row 9
        "ends_on_last_row": 0.1,  # start 5 ends exactly on row 9
        "any_success": 0.5,  # starts 3..7 contain row 7
        "success_inside": 0.4,  # starts 4..7: row 7 comes before the chunk's last valid step
    }
    for name, want in expected.items():
        assert abs(got[name] - want) < 0.015, (name, got[name])
    assert got["action_rows_clipped_by_release"] == pytest.approx(0.01)
    assert got["actions_clipped_by_release"] == pytest.approx(0.005)
