"""Roll out a trained agent's EMA policy in an OGBench single-task env; record videos.

``evaluate`` queries the policy once every ``h`` steps and executes the whole action
chunk open-loop, as the authors' release does; an episode ends at ``terminated or
truncated`` (OGBench's time limit) or after ``max_steps``. Success is OGBench's
``info["success"]`` at the episode's last step.

Rendering (videos only) needs an OpenGL backend. Headless Linux uses EGL: on a CPU
machine Mesa's software rasteriser (Debian/Ubuntu packages ``libegl1 libegl-mesa0
libgl1-mesa-dri libopengl0``), on an NVIDIA machine the driver's EGL. This module sets
``MUJOCO_GL=egl`` on Linux when it is unset, and switches MuJoCo to EGL if MuJoCo was
imported earlier without it (see ``ensure_headless_gl``).

Videos: ``write_video`` picks the format from the file extension. ``.mp4`` (and any
other ffmpeg format) needs an ``ffmpeg`` program: the one on PATH, else the binary that
the ``imageio-ffmpeg`` package ships (a dependency of ``rql_lite[ogbench]``);
``.gif`` (Pillow) and ``.npz`` (the raw uint8 frames) need nothing beyond the venv.
"""
from __future__ import annotations

import os
import platform
import sys
import uuid
from typing import Any, Sequence

if platform.system() == "Linux" and "mujoco" not in sys.modules:
    os.environ.setdefault("MUJOCO_GL", "egl")  # read once, when mujoco is first imported

import jax
import numpy as np

from rql_lite.agent import TrainState, act
from rql_lite.provenance import silence_float32_bounds_warning

silence_float32_bounds_warning()  # OGBench's envs repeat it at every reset; see the docstring

DEFAULT_FPS = 20  # OGBench manipulation envs step at 20 Hz (control timestep 0.05 s)
DEFAULT_RENDER_SIZE = 200  # OGBench's default render width and height


# --------------------------------------------------------------------------- rendering


def ensure_headless_gl() -> str:
    """Make MuJoCo's offscreen renderer usable on a headless Linux machine; return the backend.

    ``MUJOCO_GL`` is read when ``mujoco`` is first imported. If that happened with it unset
    (e.g. another module imported ``ogbench`` first) on Linux without a display, MuJoCo
    would try GLFW and fail; in that case its context class is switched to EGL. An explicit
    ``MUJOCO_GL`` choice is always respected.
    """
    if platform.system() != "Linux":
        return "default"
    import mujoco  # noqa: F401

    module = sys.modules.get("mujoco.rendering.classic.gl_context") or sys.modules.get("mujoco.gl_context")
    if module is None:
        return os.environ.get("MUJOCO_GL", "")
    chosen = getattr(module, "_MUJOCO_GL", os.environ.get("MUJOCO_GL", ""))
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if chosen in ("", "enable", "enabled", "on", "true", "1") and not has_display:
        if os.environ.get("PYOPENGL_PLATFORM", "egl").lower() != "egl":
            raise RuntimeError(
                "rendering needs MUJOCO_GL=egl on a headless machine, but PYOPENGL_PLATFORM="
                f"{os.environ['PYOPENGL_PLATFORM']!r} was set; unset it or set both before starting Python")
        from mujoco.egl import GLContext

        module.GLContext = GLContext
        return "egl"
    return chosen or "glfw"


def _render_help(err: BaseException) -> str:
    return (
        f"could not render with MuJoCo (MUJOCO_GL={os.environ.get('MUJOCO_GL', '<unset>')}): "
        f"{err.__class__.__name__}: {err}. On headless Linux run with MUJOCO_GL=egl (set before mujoco "
        "is imported) and install the EGL/Mesa libraries: apt-get install -y libegl1 libegl-mesa0 "
        "libgl1-mesa-dri libopengl0 (on NVIDIA machines the driver provides EGL)."
    )


def _render(env) -> np.ndarray:
    try:
        frame = env.render()
    except Exception as err:  # GL errors come as many types (FatalError, AttributeError, ...)
        raise RuntimeError(_render_help(err)) from err
    if frame is None:
        raise RuntimeError("env.render() returned None; make the env with make_eval_env(task, render=True)")
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise RuntimeError(f"env.render() returned shape {frame.shape}; expected an RGB image (H, W, 3)")
    return frame.astype(np.uint8, copy=False)


# --------------------------------------------------------------------------- env


def make_eval_env(task: str, render: bool = False, width: int = DEFAULT_RENDER_SIZE,
                  height: int = DEFAULT_RENDER_SIZE, **env_kwargs):
    """The OGBench env for ``task`` (e.g. ``"cube-single-play-singletask-task2-v0"``), no dataset.

    ``ogbench.make_env_and_datasets(task, env_only=True)`` strips the dataset type from the
    name and builds the single-task env with gymnasium (its time limit included). With
    ``render=True`` the frame size is passed as ``width``/``height``; OGBench's manipulation
    envs accept ``render_mode`` but ignore it (``env.render()`` always returns an RGB array;
    passing ``render_mode='rgb_array'`` only makes gymnasium warn), and its locomotion envs
    default to ``render_mode='rgb_array'``, so none is passed.
    """
    import ogbench

    if render:
        ensure_headless_gl()
        env_kwargs = {"width": int(width), "height": int(height), **env_kwargs}
    return ogbench.make_env_and_datasets(task, env_only=True, **env_kwargs)


def _check_dims(env, state: TrainState) -> None:
    cfg = state.config
    obs_shape = getattr(env.observation_space, "shape", None)
    act_shape = getattr(env.action_space, "shape", None)
    name = getattr(getattr(env, "spec", None), "id", type(env).__name__)
    if obs_shape is not None and tuple(obs_shape) != (cfg.obs_dim,):
        raise ValueError(
            f"env {name} has observations of shape {tuple(obs_shape)} (dim {int(np.prod(obs_shape))}) but the agent "
            f"expects obs_dim={cfg.obs_dim}: the agent was trained for another task; evaluate it on its own task")
    if act_shape is not None and tuple(act_shape) != (cfg.action_dim,):
        raise ValueError(
            f"env {name} has actions of shape {tuple(act_shape)} but the agent emits action_dim={cfg.action_dim}: "
            "the agent was trained for another task; evaluate it on its own task")


def episode_seed(seed: int, episode: int) -> int:
    """The ``env.reset`` seed of episode ``episode`` of an evaluation with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(episode)]).generate_state(1)[0])


# --------------------------------------------------------------------------- evaluation


def evaluate(env, state: TrainState, num_episodes: int, seed: int = 0, video_episodes: int = 0,
             video_every: int = 1, max_steps: int | None = None) -> dict[str, Any]:
    """Roll out ``state``'s EMA policy for ``num_episodes`` episodes.

    Args:
      env: an OGBench env (``make_eval_env``), or a task name to make one.
      state: a single (not seed-stacked) ``TrainState``; actions come from
        ``state.ema_policy_params`` through ``rql_lite.agent.act`` (jitted).
      num_episodes: episodes to run (>= 0).
      seed: everything random derives from it: episode ``i`` resets with
        ``episode_seed(seed, i)`` and draws its policy noise from
        ``fold_in(fold_in(PRNGKey(seed), i), chunk_index)``. Same seed, same results.
      video_episodes: record frames for the first this many episodes (the env must render).
      video_every: keep every this-many-th step's frame.
      max_steps: cap on steps per episode (``None``: the env's own time limit).

    The policy is queried every ``h`` steps; its chunk of ``h`` actions runs open-loop,
    cut short if the episode ends inside it.

    Returns a dict: ``success_rate`` (mean of ``successes``; 0.0 for no episodes),
    ``successes`` (0/1 per episode: ``info["success"]`` at its last step), ``returns``,
    ``episode_lengths``, and ``frames``: one ``(T, H, W, 3)`` uint8 array per recorded
    episode with ``T = 1 + length // video_every`` (the reset frame, then the frame after
    every ``video_every``-th step).
    """
    if isinstance(env, str):
        env = make_eval_env(env, render=video_episodes > 0)
    for name, value, low in (("num_episodes", num_episodes, 0), ("video_episodes", video_episodes, 0),
                             ("video_every", video_every, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if max_steps is not None and (not isinstance(max_steps, (int, np.integer)) or max_steps < 1):
        raise ValueError(f"max_steps must be None or an integer >= 1, got {max_steps!r}")
    if np.ndim(state.step) != 0:
        raise ValueError(f"state holds stacked seeds (step has shape {np.shape(state.step)}); "
                         "pass one seed's state, e.g. rql_lite.train.unstack(states, i)")
    _check_dims(env, state)
    if video_episodes:
        ensure_headless_gl()

    cfg = state.config
    base_key = jax.random.PRNGKey(int(seed))
    successes, returns, lengths, videos = [], [], [], []
    for episode in range(int(num_episodes)):
        record = episode < video_episodes
        obs, info = env.reset(seed=episode_seed(seed, episode))
        obs = np.asarray(obs)
        if obs.shape != (cfg.obs_dim,):
            raise ValueError(f"env.reset returned an observation of shape {obs.shape} but the agent expects "
                             f"obs_dim={cfg.obs_dim}: the agent was trained for another task")
        frames = [_render(env)] if record else []
        episode_key = jax.random.fold_in(base_key, episode)
        total, steps, chunk_index, done = 0.0, 0, 0, False
        while not done:
            chunk = np.asarray(act(state, obs, jax.random.fold_in(episode_key, chunk_index)))
            chunk_index += 1
            if not np.isfinite(chunk).all():
                raise FloatingPointError(
                    f"the policy produced non-finite actions at step {steps} of episode {episode}; "
                    "the EMA policy parameters hold NaN/inf (training diverged?)")
            for action in chunk:  # (h, d): open-loop execution of the chunk
                obs, reward, terminated, truncated, info = env.step(action)
                steps += 1
                total += float(reward)
                if record and steps % video_every == 0:
                    frames.append(_render(env))
                if terminated or truncated or (max_steps is not None and steps >= max_steps):
                    done = True
                    break
        successes.append(int(bool(info.get("success", False))))
        returns.append(total)
        lengths.append(steps)
        if record:
            videos.append(np.stack(frames))
    return {
        "success_rate": float(np.mean(successes)) if successes else 0.0,
        "successes": successes,
        "returns": returns,
        "episode_lengths": lengths,
        "frames": videos,
    }


# --------------------------------------------------------------------------- videos


VIDEO_FORMATS = ".mp4 (ffmpeg), any other ffmpeg container (.webm, .mov, ...), .gif (Pillow), .npz (raw frames)"


def _as_frames(frames) -> np.ndarray:
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("no frames to write")
        frames = np.stack([np.asarray(f) for f in frames])
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must have shape (T, H, W, 3) with T >= 1, got {frames.shape}")
    if frames.dtype != np.uint8:
        if np.issubdtype(frames.dtype, np.floating) and frames.size and float(frames.max()) <= 1.0:
            frames = frames * 255.0
        frames = np.clip(np.round(frames), 0, 255).astype(np.uint8)
    return frames


def ffmpeg_available() -> bool:
    """Whether mediapy can encode videos; points it at imageio-ffmpeg's binary if none is on PATH."""
    import mediapy

    if not mediapy.video_is_available():
        try:
            import imageio_ffmpeg

            mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())
        except (ImportError, RuntimeError):  # not installed, or no binary for this platform
            return False
    return bool(mediapy.video_is_available())


def write_video(frames: np.ndarray | Sequence[np.ndarray], path: str, fps: float = DEFAULT_FPS) -> str:
    """Write ``(T, H, W, 3)`` uint8 frames to ``path`` atomically; return ``path``.

    The format follows the extension: ``.gif`` via Pillow, ``.npz`` as
    ``np.savez_compressed(frames=...)``, anything else (``.mp4``, ...) via
    ``mediapy.write_video``, which needs the ``ffmpeg`` program. The file is written
    to a temporary name in the same directory and moved into place, so a reader never
    sees a half-written video. Frame sizes are padded to even numbers for ffmpeg's
    H.264 encoder.
    """
    frames = _as_frames(frames)
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    ext = os.path.splitext(base)[1].lower()
    if not ext:
        raise ValueError(f"{path!r} has no extension; use one of {VIDEO_FORMATS}")
    if ext not in (".gif", ".npz") and not ffmpeg_available():
        raise RuntimeError(
            f"writing {ext} videos needs the ffmpeg program, which was not found on PATH. Install it "
            "(Debian/Ubuntu: apt-get install -y ffmpeg; macOS: brew install ffmpeg; conda: conda install ffmpeg) "
            "or point mediapy at a binary with mediapy.set_ffmpeg(path). Without ffmpeg, write a .gif "
            "or .npz instead (e.g. the same path with the extension changed).")
    os.makedirs(directory, exist_ok=True)
    # Same directory (os.replace is atomic within a filesystem), same extension (ffmpeg and
    # Pillow pick the format from it); created by the writer itself, so it gets normal permissions.
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{ext}")
    try:
        if ext == ".npz":
            np.savez_compressed(tmp, frames=frames, fps=np.float64(fps))
        elif ext == ".gif":
            from PIL import Image

            images = [Image.fromarray(f) for f in frames]
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                           duration=max(1, round(1000.0 / fps)), loop=0)
        else:
            import mediapy

            pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
            if pad_h or pad_w:  # yuv420p needs even sizes
                frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            mediapy.write_video(tmp, frames, fps=fps)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def show_video(frames, fps: float = DEFAULT_FPS, title: str | None = None, width: int | None = None) -> None:
    """Show ``(T, H, W, 3)`` frames inline in a notebook with mediapy (an H.264 video in the page)."""
    import mediapy

    if not ffmpeg_available():
        raise RuntimeError("showing a video needs ffmpeg; pip install imageio-ffmpeg (or install ffmpeg)")
    mediapy.show_video(_as_frames(frames), fps=fps, title=title, width=width)
