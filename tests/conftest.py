"""Shared fixtures, built once per test session: the generated tiny dataset, the reference run, the
fake evaluation env and a persistent XLA cache for the subprocesses that train.

The helpers the tests share (the tiny run's spec and command line, comparing outcomes) are plain
functions in ``support.py``.
"""
import atexit
import os
import shutil
import sys
import tempfile

# Tests run on CPU, deterministically, without grabbing all memory.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# One persistent XLA cache for the session, this process and the commands it starts (they inherit the
# environment): a program compiled once (the tiny run's update, its evaluation policy) is not compiled
# again by the next command. Set before JAX is imported; removed when the session ends.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="rql-lite-tests-xla-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # support.py and fake_eval_env.py; env workers inherit sys.path
    sys.path.insert(0, HERE)

# As the library does before it makes an env: EGL, not GLFW (some tests import ogbench directly).
from rql_lite.ogbench.env_workers import prepare_for_envs  # noqa: E402

prepare_for_envs()

import pytest  # noqa: E402

import support  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A data directory holding the tiny run's generated dataset (two 100-step episodes of cube-single)."""
    from rql_lite.ogbench.datasets import load_ogbench

    folder = str(tmp_path_factory.mktemp("datasets"))
    load_ogbench(support.TASK, "generated", data_dir=folder, num_episodes=support.DATASET_EPISODES,
                 episode_length=support.EPISODE_LENGTH, progress=False)
    return folder


@pytest.fixture(scope="session")
def straight_dir(tmp_path_factory, data_dir):
    """The tiny run, uninterrupted (read it, copy it; do not change it)."""
    from rql_lite.runs.experiment import run

    out = tmp_path_factory.mktemp("straight") / "run"
    run(support.spec(out, data_dir), **support.QUIET)
    return out


@pytest.fixture(scope="session")
def straight(straight_dir):
    """What every interrupted-and-resumed tiny run must end with (``support.outcome``)."""
    return support.outcome(straight_dir)


@pytest.fixture(scope="session")
def compile_cache():
    """The session's persistent XLA cache (shared with child processes): only the first one compiles the update."""
    return os.environ["JAX_COMPILATION_CACHE_DIR"]


@pytest.fixture(scope="session")
def fake_env():
    """The id of a cheap JAX-free gymnasium env (``fake_eval_env.FakeReach``, observations 28, actions 5)
    that ``evaluate_many``'s worker processes can make: ``"fake_eval_env:FakeReach-v0"``."""
    import fake_eval_env  # noqa: F401  (registers the envs in this process too)

    return "fake_eval_env:FakeReach-v0"


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real one-node SLURM (``slurm_cluster.LocalSlurm``: slurmctld, slurmd and munged as daemons), started
    once per session and stopped at its end, with no daemon left. Skipped where SLURM cannot start here;
    a failure where ``RQL_REQUIRE_SLURM=1`` (CI)."""
    from slurm_cluster import LocalSlurm, Unavailable

    cluster = LocalSlurm()
    try:
        cluster.start()
    except Unavailable as err:
        if os.environ.get("RQL_REQUIRE_SLURM") == "1":
            pytest.fail(f"RQL_REQUIRE_SLURM=1, but SLURM cannot start here: {err}")
        pytest.skip(f"SLURM cannot start here: {err}")
    yield cluster
    left = cluster.stop()
    assert not left, f"SLURM daemons still running after the session: {left}"
