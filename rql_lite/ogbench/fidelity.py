"""How often the data-handling rules where ``rql_lite`` and the authors' release differ apply.

The book's Fidelity page lists every difference between the paper, the release and
``rql_lite`` that can change a learned result. Some only matter for a few sampled chunks;
this module counts how many, on a real dataset, with ``rql_lite``'s own sampler:

- a success (``mask = 0``) strictly inside a chunk, before its last valid step: the release
  keeps summing rewards after it and bootstraps with the last step's mask; ``rql_lite``
  stops rewards and bootstrap at the first success;
- a chunk that runs past its episode's end: the release gives it weight 0 in both losses
  (unless the end falls on the chunk's last step), ``rql_lite`` keeps it with ``gamma^n_valid``;
- a chunk whose last step is its episode's last row: the release bootstraps from the
  observation of that last row (one step too early), ``rql_lite`` from the next observation;
- dataset actions that the release clips to ``+-(1 - 1e-5)``.

Run it as ``python -m rql_lite.ogbench.fidelity TASK [--dataset generated|PATH] --out FILE.json``.
"""
from __future__ import annotations

import argparse
import json
import os

import jax
import numpy as np

from rql_lite import checks
from rql_lite.configs import DOMAINS, domain_of
from rql_lite.data import ChunkDataset, from_dict, sample_chunks
from rql_lite.files import write_json_atomic
from rql_lite.ogbench.datasets import load_ogbench

RELEASE_ACTION_CLIP = 1.0 - 1e-5  # the release's action_clip_eps = 1e-5 (envs/env_utils.py)


def chunk_rule_fractions(dataset: ChunkDataset, horizon: int, num_chunks: int = 100_000, seed: int = 0) -> dict:
    """Fractions of ``num_chunks`` chunks drawn by ``rql_lite.data.sample_chunks`` that each rule touches.

    ``dataset``: a ``rql_lite.data.ChunkDataset``. Returns a dict of floats in [0, 1] plus the counts used.
    """
    sample = jax.jit(sample_chunks, static_argnums=(2, 3))
    keys = jax.random.split(jax.random.PRNGKey(seed), max(1, num_chunks // 10_000))
    per_key = num_chunks // len(keys)
    counts = {"success_inside": 0, "any_success": 0, "crosses_episode_end": 0, "ends_on_last_row": 0}
    episode_end = np.asarray(dataset.episode_end)
    for key in keys:
        batch = jax.device_get(sample(dataset, key, per_key, horizon))
        valid, masks = batch["valid"] > 0, batch["masks"]
        n_valid = valid.sum(axis=1)
        success = (masks == 0) & valid
        # A success at a valid step before the last valid one: rewards after it differ.
        before_last = np.arange(horizon)[None, :] < (n_valid - 1)[:, None]
        counts["success_inside"] += int((success & before_last).any(axis=1).sum())
        counts["any_success"] += int(success.any(axis=1).sum())
        counts["crosses_episode_end"] += int((n_valid < horizon).sum())
        # Only full chunks can end exactly on the episode's last row (the rest cross it).
        start = np.asarray(jax.random.randint(key, (per_key,), 0, dataset.size))  # the sampler's own draw
        assert np.array_equal(np.asarray(dataset.observations)[start], batch["observations"]), "sampler changed"
        counts["ends_on_last_row"] += int(((n_valid == horizon) & (start + horizon - 1 == episode_end[start])).sum())
    total = per_key * len(keys)
    actions = np.asarray(dataset.actions)
    fractions = {name: count / total for name, count in counts.items()}
    fractions["actions_clipped_by_release"] = float(np.mean(np.abs(actions) > RELEASE_ACTION_CLIP))
    fractions["action_rows_clipped_by_release"] = float(np.mean((np.abs(actions) > RELEASE_ACTION_CLIP).any(axis=1)))
    return {"fractions": fractions, "num_chunks": total, "horizon": horizon, "num_rows": int(actions.shape[0]),
            "num_episodes": int(np.unique(episode_end).size)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rql_lite.ogbench.fidelity", description=__doc__.splitlines()[0])
    parser.add_argument("task", help="e.g. cube-double-play-singletask-task2-v0")
    parser.add_argument("--dataset", default="generated", help="generated, official or a NAME.npz path")
    parser.add_argument("--episodes", type=checks.int_argument(1), default=None,
                        help="episodes to generate (default: published count)")
    parser.add_argument("--chunks", type=checks.int_argument(1), default=100_000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    _, train, _, info = load_ogbench(args.task, args.dataset, num_episodes=args.episodes, workers=os.cpu_count())
    horizon = DOMAINS[domain_of(args.task)]["horizon"]
    result = chunk_rule_fractions(from_dict(train), horizon, args.chunks)
    result.update(task=args.task, dataset=info, sampler="rql_lite.data.sample_chunks (rows uniform)")
    write_json_atomic(args.out, result)
    print(json.dumps(result["fractions"], indent=2))


if __name__ == "__main__":
    main()
