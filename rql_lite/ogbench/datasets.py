"""OGBench datasets: the official download, files generated locally with OGBench's oracles, or a path.

``load_ogbench(task, source)`` returns the env and the train and val splits as numpy dicts with
OGBench's keys, checked (structure, dimensions, finite values) and with the provenance a run
records (source, portable path, sha256). ``generated_folder`` is the cache folder of a generated
dataset; ``python -m rql_lite generate`` writes there and ``load_ogbench(source="generated")``
reads there, generating first if needed. OGBench and MuJoCo are imported only when a dataset is
loaded.

Several processes may ask for one dataset at once (the elements of a cluster sweep that train one
domain): ``ensure_dataset`` lets one of them generate (or download) it under a file lock while the
others wait and then check what it made; a truncated or damaged file is made again instead of
failing every run. The sha256 that runs record is computed once per version of the files and
kept beside them (``dataset_sha256``), so a training segment does not hash a large dataset again.
"""
from __future__ import annotations

import contextlib
import os
import sys
import zipfile
import zlib

import numpy as np

from rql_lite import files
from rql_lite.configs import DOMAINS, check_task, dataset_name_for_task, domain_of
from rql_lite.data import check_finite
from rql_lite.files import check_writable_directory, exclusive_lock, portable_path, sha256_cached
from rql_lite.ogbench import generate
from rql_lite.ogbench.env_workers import prepare_for_envs

DEFAULT_DATA_DIR = os.path.join("~", ".rql_lite", "datasets")


DATASET_KEYS = ("observations", "actions", "terminals")  # what every OGBench dataset file holds


def check_dataset_source(source: str) -> None:
    """``ValueError`` unless ``source`` is ``"official"``, ``"generated"`` or an existing ``NAME.npz``
    with its ``NAME-val.npz`` beside it. Reads nothing but the directory."""
    if source in ("official", "generated"):
        return
    path = os.path.expanduser(source)
    if not path.endswith(".npz") or not os.path.isfile(path):
        raise ValueError(f"--dataset {source!r} is neither 'official', 'generated' nor an existing NAME.npz file")
    val = path[: -len(".npz")] + "-val.npz"
    if not os.path.isfile(val):
        raise ValueError(f"--dataset {path} has no validation file beside it ({os.path.basename(val)}); "
                         f"OGBench datasets come as NAME.npz and NAME-val.npz")


def check_npz(path: str) -> int:
    """Check a dataset file's structure without loading its arrays; return its number of rows.

    Reads only the zip directory and each array's header: a file that is not a zip archive
    (or was cut short), lacks one of ``DATASET_KEYS``, holds arrays that disagree in length, or
    whose observations or actions are not 2-D is refused with a ``ValueError`` naming the file.
    """
    fix = "regenerate it (delete it and rerun with --dataset generated) or download it again"
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        size = os.path.getsize(path) if os.path.exists(path) else 0
        raise ValueError(f"dataset file {path} ({size} bytes) is not a readable .npz archive "
                         f"({type(err).__name__}: truncated or not an .npz); {fix}") from None
    shapes = {}
    with archive:
        for member in archive.namelist():
            if not member.endswith(".npy"):
                continue
            try:
                with archive.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shapes[member[: -len(".npy")]] = read_header(f)[0]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
                raise ValueError(f"dataset file {path} is damaged (array {member[:-4]!r}: {type(err).__name__}); "
                                 f"{fix}") from None
    missing = [k for k in DATASET_KEYS if k not in shapes]
    if missing:
        raise ValueError(f"dataset file {path} lacks {', '.join(repr(k) for k in missing)} (it holds "
                         f"{sorted(shapes)}); an OGBench dataset needs {', '.join(DATASET_KEYS)}: {fix}")
    for key in ("observations", "actions"):
        if len(shapes[key]) != 2:
            raise ValueError(f"dataset file {path}: {key!r} has shape {shapes[key]}, expected (rows, dim); {fix}")
    rows = {key: (shape[0] if shape else None) for key, shape in shapes.items()}
    if len(set(rows.values())) != 1:
        detail = ", ".join(f"{k} {n}" for k, n in sorted(rows.items()))
        raise ValueError(f"dataset file {path} holds arrays of unequal length (rows: {detail}); every key needs "
                         f"one row per transition: {fix}")
    return rows["observations"]


def sparsify_rewards(rewards: np.ndarray) -> np.ndarray:
    """The sparse variant used for scene and puzzle: -1 until every subtask is done, then 0."""
    return np.where(np.asarray(rewards) != 0.0, -1.0, 0.0).astype(np.float32)


def generated_folder(data_dir: str = DEFAULT_DATA_DIR, num_episodes: int | None = None, seed: int = 0,
                     episode_length: int = 1000) -> str:
    """Where ``generate`` writes, and ``load_ogbench(source="generated")`` looks for, a dataset made
    with these settings: ``DATA_DIR/generated/{published|Nep}[-Lsteps]-seedS`` (``~`` expanded)."""
    size = "published" if num_episodes is None else f"{num_episodes}ep"
    if episode_length != 1000:
        size += f"-{episode_length}steps"
    return os.path.join(os.path.expanduser(data_dir), "generated", f"{size}-seed{seed}")


def load_ogbench(
    task: str,
    source: str = "generated",
    data_dir: str = DEFAULT_DATA_DIR,
    num_episodes: int | None = None,
    workers: int = 1,
    seed: int = 0,
    episode_length: int | None = None,
    progress: bool = True,
    log=None,
):
    """Make the OGBench env for ``task`` and load its dataset (train and val splits).

    Args:
      task: e.g. ``"cube-double-play-singletask-task2-v0"``.
      source: ``"official"`` (OGBench's download; needs internet), ``"generated"`` (made
        locally with OGBench's oracles if missing, then cached under ``data_dir``), or the
        path of a ``NAME.npz`` file in OGBench's layout (``NAME-val.npz`` beside it).
      num_episodes, workers, seed, episode_length: generation settings for ``"generated"``
        (``None`` is the published count and length).
      progress: show a progress bar while a dataset is generated.
      log: hears that a generated dataset is being made, waited for or made again (default: stderr).

    Returns:
      ``(env, train, val, info)``: numpy dicts with OGBench's keys (rewards made sparse for
      scene and puzzle, as the paper does) and ``info`` with ``source``, ``path``, ``sha256``.
    """
    check_task(task)
    prepare_for_envs()  # before MuJoCo's first import: EGL, not GLFW, on a headless machine
    import ogbench

    name = dataset_name_for_task(task)
    episode_length = generate.published_episode_length(name) if episode_length is None else episode_length
    data_dir = os.path.expanduser(data_dir)
    if source == "official":
        folder = os.path.join(data_dir, "official")

        def make():
            try:
                ogbench.download_datasets([name], folder)
            except OSError as err:  # URLError and friends are OSErrors
                raise ValueError(
                    f"could not download the official {name} dataset ({err.__class__.__name__}: no internet?). "
                    f"Generate one locally instead: --dataset generated (or python -m rql_lite generate {name})"
                ) from None
    elif source == "generated":
        folder = generated_folder(data_dir, num_episodes, seed, episode_length)
        try:
            generate.get_recipe(name)
        except ValueError:
            raise ValueError(f"{name} cannot be generated offline (only the manipulation play datasets and the "
                             f"point-maze navigate datasets have scripted recipes in ogbench); use --dataset "
                             f"official where there is internet") from None

        def make():
            generate.generate_dataset(name, folder, num_episodes=num_episodes, seed=seed, workers=workers,
                                      episode_length=episode_length, progress=progress)
    else:
        check_dataset_source(source)
        folder, make = None, None
    path = os.path.join(folder, f"{name}.npz") if folder else os.path.expanduser(source)
    val_path = path[: -len(".npz")] + "-val.npz"
    if make is not None:
        ensure_dataset(path, make, log=log)
    else:  # the user's file: checked (a clear message), never replaced
        for split_path in (path, val_path):
            check_npz(split_path)
    try:
        env, train, val = _read(task, path)
    except DatasetDamaged:
        if make is None:
            raise
        # Damage check_npz cannot see (a flipped byte deep in an array): make it again, once, unless
        # another process has done so since this one looked.
        ensure_dataset(path, make, damaged=_stamp(path, val_path), log=log)
        env, train, val = _read(task, path)
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    for split_name, split in (("train", train), ("val", val)):
        if split["observations"].shape[1] != obs_dim or split["actions"].shape[1] != action_dim:
            raise ValueError(
                f"dataset {path} ({split_name}) has observation dim {split['observations'].shape[1]} and action dim "
                f"{split['actions'].shape[1]}, but {task} needs {obs_dim} and {action_dim}: it was made for another "
                f"environment; regenerate it or pass the right file"
            )
        for key in ("observations", "actions", "next_observations", "rewards"):
            check_finite(key, np.asarray(split[key]))
        if DOMAINS[domain_of(task)]["sparse"]:
            split["rewards"] = sparsify_rewards(split["rewards"])
    info = {"source": source if source in ("official", "generated") else "path", "path": portable_path(path),
            "sha256": dataset_sha256(path, cache=make is not None), "num_transitions": int(len(train["actions"]))}
    return env, train, val, info


class DatasetDamaged(ValueError):
    """A dataset file's arrays cannot be read back (truncated, or corrupted inside)."""


def _read(task: str, path: str):
    """``ogbench.make_env_and_datasets`` on ``path``; its failures as one-line ``ValueError``s."""
    import ogbench

    try:
        return ogbench.make_env_and_datasets(task, dataset_path=path)
    except KeyError as err:  # OGBench's relabelling reads keys such as qpos that check_npz does not require
        raise ValueError(f"dataset {path} (or its -val file) lacks key {err} that {task} needs; regenerate it "
                         f"(--dataset generated) or pass a file made for this task") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise DatasetDamaged(f"dataset {path} (or its -val file) is damaged ({type(err).__name__}: {err}); "
                             f"regenerate it (--dataset generated) or download it again") from None


def lock_path(path: str) -> str:
    """The lock file processes making the dataset ``NAME.npz`` hold: ``.NAME.npz.lock`` beside it."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.lock")


def hash_cache_path(path: str) -> str:
    """Where the sha256 of ``NAME.npz`` and ``NAME-val.npz`` is kept: ``NAME.sha256.json`` beside them."""
    return path[: -len(".npz")] + ".sha256.json"


def dataset_sha256(path: str, cache: bool = True) -> str:
    """The sha256 of the dataset ``NAME.npz`` and its ``NAME-val.npz`` (in that order).

    ``cache``: hashed once per version of the files (``rql_lite.files.sha256_cached``, the digest kept
    in ``hash_cache_path(path)``); ``load_ogbench`` caches in the folders it manages (generated and
    official datasets), not beside a file the user passed by path.
    """
    paths = [path, path[: -len(".npz")] + "-val.npz"]
    return sha256_cached(paths, hash_cache_path(path)) if cache else files.sha256_of(paths)


def _stamp(*paths) -> tuple:
    """Identity of the files' current versions (an atomic replacement changes the inode)."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def _healthy(path: str) -> bool:
    val_path = path[: -len(".npz")] + "-val.npz"
    try:
        check_npz(path)
        check_npz(val_path)
        return True
    except (ValueError, OSError):
        return False


def ensure_dataset(path: str, make, damaged: tuple | None = None, log=None) -> None:
    """Make sure the dataset ``path`` (``NAME.npz`` with ``NAME-val.npz``) is there and readable, calling
    ``make()`` to create it if not; safe when several processes (cluster jobs) ask at once.

    Files that pass ``check_npz`` are used as they are, without a lock. Otherwise the process takes
    an exclusive lock (``lock_path``), looks again (the files may have been made while it waited:
    then it only checks them) and, if they are still missing, truncated or damaged, removes them and
    calls ``make()``; the others wait on the lock, then check what it made. ``damaged``: the
    ``_stamp`` of files found unreadable after they passed ``check_npz``; they are made again only
    if they are still those files. ``log`` hears what happens (default: stderr).
    """
    val_path = path[: -len(".npz")] + "-val.npz"
    say = log or (lambda message: print(message, file=sys.stderr, flush=True))
    if damaged is None and _healthy(path):
        return
    check_writable_directory(os.path.dirname(path), "--data-dir")
    with exclusive_lock(lock_path(path), on_wait=lambda: say(f"waiting for another process making {path}")):
        current = _stamp(path, val_path)
        if damaged is not None and current != damaged and _healthy(path):
            return  # made again by another process since this one found it damaged
        if damaged is None and _healthy(path):
            return  # made by another process while this one waited
        if any(s is not None for s in current):
            say(f"{path}: truncated or damaged; making it again")
            for p in (path, val_path, hash_cache_path(path)):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(p)
        else:
            say(f"{path}: not here yet; making it (other processes that need it wait)")
        make()
        if not _healthy(path):
            check_npz(path)  # raises, naming what is wrong with what was just made
            check_npz(val_path)
