"""MuJoCo's GL backend chosen once, with a fallback: EGL taken away from the process (glvnd finds no
EGL vendor), the choice falls to OSMesa where its library loads, else to no rendering; data and
evaluation still work, an evaluation asked for a video says why in one line and records none, and
nothing prints a traceback. Runs in a child process: the choice is made before MuJoCo is imported."""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the GL choice is Linux's")

CHILD = r"""
import jax
from rql_lite.agent import AgentConfig, init_state
from rql_lite.ogbench.env_workers import RenderingUnavailable, ensure_headless_gl, gl_status, prepare_for_envs
from rql_lite.ogbench.evaluate import evaluate
import os
prepare_for_envs()
can_render, why = gl_status()
print("BACKEND", os.environ["MUJOCO_GL"], can_render)
import mujoco  # imports whatever was chosen
task = "cube-single-play-singletask-task2-v0"
cfg = AgentConfig(obs_dim=28, action_dim=5, horizon=5, policy_hidden=(16,), value_hidden=(16,), num_values=2)
state = init_state(cfg, jax.random.PRNGKey(0))
result = evaluate(task, state, num_episodes=1, seed=0, video_episodes=1, max_steps=10)
print("EPISODES", len(result["returns"]), "FRAMES", len(result["frames"]))
if not can_render:
    try:
        ensure_headless_gl()
    except RenderingUnavailable as err:
        print("REFUSED", str(err)[:60])
"""


def run_child(env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "RQL_LITE_GL")}
    env.update(env_changes, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600)


def test_without_egl_falls_back_and_skips_the_video_in_one_line(tmp_path):
    # An empty vendor list: glvnd's libEGL loads, but no EGL implementation behind it.
    done = run_child({"__EGL_VENDOR_LIBRARY_FILENAMES": str(tmp_path / "no-vendor.json")})
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, out + err
    assert "Traceback" not in out + err
    backend = next(line for line in out.splitlines() if line.startswith("BACKEND")).split()
    assert backend[1] != "egl", "EGL was taken away; it cannot be the choice"
    if backend[1] == "osmesa":  # software rendering: the video is recorded
        assert backend[2] == "True" and "EPISODES 1 FRAMES 1" in out
    else:
        assert backend[1:] == ["disable", "False"]
        assert "EPISODES 1 FRAMES 0" in out, "the episode runs, without frames"
        lines = [line for line in err.splitlines() if line.startswith("no video:")]
        assert len(lines) == 1 and "egl" in lines[0] and "osmesa" in lines[0], err
        assert "REFUSED cannot render" in out


def test_an_unusable_choice_is_not_kept(tmp_path):
    """MUJOCO_GL naming a backend that cannot load would make ``import mujoco`` fail; it is replaced."""
    done = run_child({"MUJOCO_GL": "no-such-backend",
                      "__EGL_VENDOR_LIBRARY_FILENAMES": str(tmp_path / "no-vendor.json")})
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert "BACKEND no-such-backend" not in done.stdout
