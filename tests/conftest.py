import os

# Tests run on CPU, deterministically, without grabbing all memory.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

# As the library does before it makes an env: EGL, not GLFW (test modules import ogbench directly).
from rql_lite.ogbench.env_workers import prepare_for_envs  # noqa: E402

prepare_for_envs()
