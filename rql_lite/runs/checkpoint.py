"""Checkpoints without pickle: msgpack (via flax.serialization), written atomically, with a checksum.

A checkpoint holds the stacked train states of every seed, the step, and a small
metadata dict (task, agent, config, seeds, dataset hash, history so far). Resuming
restores the states into a template built from the same config, so a checkpoint from
another run or a damaged file is refused with a message that says what differs.

Each save keeps the one before it beside it (``PATH.prev``) and every file carries a
sha256 of its contents, so a damaged latest checkpoint (a flipped bit, a truncated copy) is
refused by name and ``load_latest`` falls back to the previous good one. Files are written with
``rql_lite.files.write_bytes_atomic``: never half a file.
"""
from __future__ import annotations

import hashlib
import json
import os

import flax.serialization
import jax
import numpy as np

from rql_lite.agent import AgentConfig, acting_params, complete_config_dict, config_dict, init_state
from rql_lite.files import PREVIOUS_SUFFIX, write_bytes_atomic
from rql_lite.networks import LEGACY_NETWORK_DEFINITION, NETWORK_DEFINITION

# v2: the states travel as one msgpack blob and the file holds the sha256 of metadata and blob.
# v1 files (no checksum) are still read.
FORMAT = "rql_lite-checkpoint-v2"
FORMAT_V1 = "rql_lite-checkpoint-v1"


class CheckpointDamaged(ValueError):
    """A file that should be a checkpoint but cannot be trusted (unreadable, truncated, checksum wrong)."""


class NoCheckpoint(ValueError):
    """There is no checkpoint file (neither the latest nor the previous one)."""


def _digest(metadata_text: str, states_blob: bytes) -> str:
    digest = hashlib.sha256(metadata_text.encode("utf-8"))
    digest.update(states_blob)
    return digest.hexdigest()


def save(path: str, states, metadata: dict) -> None:
    """Write ``states`` (a pytree, e.g. stacked ``TrainState``) and JSON-able ``metadata``.

    Written atomically (an interruption leaves the previous checkpoint intact, never half a
    file); the checkpoint it replaces becomes ``path + ".prev"``.
    """
    metadata_text = json.dumps({**metadata, "network": NETWORK_DEFINITION}, sort_keys=True)
    states_blob = flax.serialization.msgpack_serialize(
        jax.tree_util.tree_map(np.asarray, flax.serialization.to_state_dict(states)))
    payload = {"format": FORMAT, "metadata": metadata_text, "states": states_blob,
               "sha256": _digest(metadata_text, states_blob)}
    write_bytes_atomic(path, flax.serialization.msgpack_serialize(payload), keep_previous=True)


def read_metadata(path: str) -> dict:
    """The metadata of a checkpoint; ``ValueError`` if the file is not a readable rql_lite checkpoint."""
    return _read(path)["metadata"]


def _read(path: str) -> dict:
    """The payload of a checkpoint file with its metadata parsed and its checksum verified."""
    if not os.path.isfile(path):
        raise NoCheckpoint(f"no checkpoint at {path}")
    try:
        with open(path, "rb") as f:
            payload = flax.serialization.msgpack_restore(f.read())
    except Exception as err:  # msgpack raises several types for damaged input
        raise CheckpointDamaged(f"checkpoint {path} is corrupt or not a checkpoint ({type(err).__name__}); "
                                f"delete it to start over, or point --out at another directory") from None
    if not isinstance(payload, dict) or payload.get("format") not in (FORMAT, FORMAT_V1):
        raise CheckpointDamaged(f"{path} is not an rql_lite checkpoint (format {FORMAT!r} expected); "
                                f"point --out at the run directory that wrote it")
    metadata_text = payload.get("metadata")
    try:
        payload["metadata"] = json.loads(metadata_text)
        if not isinstance(payload["metadata"], dict):
            raise TypeError
    except (KeyError, TypeError, json.JSONDecodeError):
        raise CheckpointDamaged(f"checkpoint {path} is corrupt: its metadata is damaged; delete it to start "
                                f"over") from None
    if payload["format"] == FORMAT:
        blob, recorded = payload.get("states"), payload.get("sha256")
        if not isinstance(blob, bytes) or recorded != _digest(metadata_text, blob):
            # Metadata without a network record was rewritten from a file older than the
            # record: refused for its network (its parameters would be wrong even if intact).
            # Any other mismatch, a flipped bit in the record included, is damage.
            if "network" not in payload["metadata"]:
                check_network(path, payload["metadata"])
            raise CheckpointDamaged(f"checkpoint {path} is corrupt: its contents do not match the checksum it "
                                    f"was saved with (damaged on disk or in a copy); delete it to start over")
        try:
            payload["states"] = flax.serialization.msgpack_restore(blob)
        except Exception as err:
            raise CheckpointDamaged(f"checkpoint {path} is corrupt ({type(err).__name__} in its states); "
                                    f"delete it to start over") from None
    return payload


def load(path: str, template, expected: dict | None = None):
    """Restore states saved by ``save`` into ``template``'s structure; return ``(states, metadata)``.

    ``expected``: metadata entries (e.g. task, agent, config, seeds) that must match the
    checkpoint's; the first mismatch is a ``ValueError`` naming the field and both values.
    """
    payload = _read(path)
    metadata = payload["metadata"]
    check_network(path, metadata)
    for key, want in (expected or {}).items():
        got = metadata.get(key)
        if key == "config" and isinstance(got, dict) and isinstance(want, dict):
            # A field added since the file was saved has its default.
            got, want = complete_config_dict(got), complete_config_dict(want)
        if json.loads(json.dumps(want)) != got:
            raise ValueError(f"checkpoint {path} belongs to another run: its {key} is {got!r}, this run's is "
                             f"{want!r}; use a fresh --out or the original settings")
    try:
        states = flax.serialization.from_state_dict(template, payload["states"])
        shapes_ok = all(np.shape(a) == np.shape(b) for a, b in zip(jax.tree_util.tree_leaves(states),
                                                                    jax.tree_util.tree_leaves(template)))
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"checkpoint {path} does not fit this configuration ({err}); use a fresh --out") from None
    if not shapes_ok:
        raise ValueError(f"checkpoint {path} has parameter shapes that differ from this configuration; use a fresh --out")
    return jax.tree_util.tree_map(jax.numpy.asarray, states), metadata


def load_latest(path: str, template, expected: dict | None = None):
    """Like ``load``, from ``path`` or, if that one is damaged or missing, from ``path + ".prev"``.

    Returns ``(states, metadata, used_path, problems)``: ``problems`` holds one line per damaged
    file passed over. ``NoCheckpoint`` if neither file exists; ``CheckpointDamaged`` naming both if
    neither is good. A checkpoint of another run or network is refused, not passed over.
    """
    problems = []
    for candidate in (path, path + PREVIOUS_SUFFIX):
        if not os.path.isfile(candidate):
            continue
        try:
            states, metadata = load(candidate, template, expected)
        except CheckpointDamaged as err:
            problems.append(str(err))
            continue
        return states, metadata, candidate, problems
    if not problems:
        raise NoCheckpoint(f"no checkpoint at {path}")
    if len(problems) == 1:
        raise CheckpointDamaged(problems[0])
    raise CheckpointDamaged("neither checkpoint can be used: " + "; also ".join(problems))


def check_network(path: str, metadata: dict) -> None:
    """Refuse a file whose networks were defined differently from this ``rql_lite``'s.

    The shapes match across layer orders, so loading would succeed and silently compute
    something else; files written before the definition was recorded are v1.
    """
    made_with = metadata.get("network", LEGACY_NETWORK_DEFINITION)
    if made_with != NETWORK_DEFINITION:
        raise ValueError(f"{path} was made with another network definition ({made_with}); this rql_lite "
                         f"computes {NETWORK_DEFINITION}. Its parameters would load but compute something "
                         f"else: retrain (or re-export from a run trained with this version)")


# --------------------------------------------------------------------------- one agent, for acting

AGENT_FORMAT = "rql_lite-agent-v1"


def save_agent(path: str, state, metadata: dict, policy_only: bool = False) -> None:
    """Write one seed's agent (a single, not stacked, ``TrainState``) for acting and analysis.

    Keeps the config, the step and the four parameter sets (policy, value, target value, EMA
    policy) but not the optimiser state, so the file is about half a checkpoint's size (Adam's
    two moments of each online parameter are the other half) and small enough to share. It cannot resume training; a checkpoint can. Written atomically.

    ``policy_only``: keep only what acts (``agent.acting_params``): the EMA policy, one network of
    RQL's 22 at the paper's size (two policies, ten 4x512 value heads and their ten targets), and for
    IFQL, which chooses among flow samples by its critic, the critic too. Such a file acts and is
    evaluated like any other; it has no values to look inside.
    """
    if np.ndim(state.step) != 0:
        raise ValueError("save_agent takes one seed's state; pick one with rql_lite.train.unstack(states, i)")
    acting = acting_params(state)
    sets = {"ema_policy": acting["policy"], **({"critic": acting["critic"]} if "critic" in acting else {})} \
        if policy_only else {
        "policy": state.policy_params, "value": state.value_params, "target_value": state.target_value_params,
        "ema_policy": state.ema_policy_params}
    payload = {
        "format": AGENT_FORMAT,
        "metadata": json.dumps({**metadata, "config": config_dict(state.config), "step": int(state.step),
                                "network": NETWORK_DEFINITION, "policy_only": bool(policy_only)}, sort_keys=True),
        "params": jax.tree_util.tree_map(np.asarray, {
            name: flax.serialization.to_state_dict(params) for name, params in sets.items()}),
    }
    write_bytes_atomic(path, flax.serialization.msgpack_serialize(payload))


def load_agent(path: str):
    """``(state, metadata)`` from a ``save_agent`` file; the state acts with ``rql_lite.act``.

    Its optimiser state is freshly initialised: use it to act and to look inside, not to train on.
    A policy-only file (``metadata["policy_only"]``) gives a state whose value, target-value and
    online-policy parameters are ``None``: it acts and is evaluated, nothing else.
    """
    if not os.path.isfile(path):
        raise ValueError(f"no agent file at {path}")
    try:
        with open(path, "rb") as f:
            payload = flax.serialization.msgpack_restore(f.read())
        if payload.get("format") != AGENT_FORMAT:
            raise ValueError
        metadata = json.loads(payload["metadata"])
        config = AgentConfig(**metadata["config"])
    except Exception:  # damaged bytes, a checkpoint or another file: all the same to the reader
        raise ValueError(f"{path} is not an rql_lite agent file ({AGENT_FORMAT!r}); write one with "
                         f"python -m rql_lite export") from None
    check_network(path, metadata)
    template = init_state(config, jax.random.PRNGKey(0))
    params = payload["params"]
    restore = flax.serialization.from_state_dict
    if metadata.get("policy_only"):
        state = template.replace(
            step=jax.numpy.asarray(metadata["step"], jax.numpy.int32), policy_params=None, value_params=None,
            target_value_params=None, opt_state=None,
            ema_policy_params=restore(template.ema_policy_params, params["ema_policy"]))
        if "critic" in params:  # IFQL acts with its critic
            state = state.replace(value_params={"q": restore(template.value_params["q"], params["critic"])})
        return jax.tree_util.tree_map(jax.numpy.asarray, state), metadata
    state = template.replace(
        step=jax.numpy.asarray(metadata["step"], jax.numpy.int32),
        policy_params=restore(template.policy_params, params["policy"]),
        value_params=restore(template.value_params, params["value"]),
        target_value_params=restore(template.target_value_params, params["target_value"]),
        ema_policy_params=restore(template.ema_policy_params, params["ema_policy"]),
    )
    return jax.tree_util.tree_map(jax.numpy.asarray, state), metadata
