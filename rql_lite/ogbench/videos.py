"""Videos of rollouts: write frames to a file, or show them in a notebook.

``write_video`` picks the format from the file extension. ``.mp4`` (and any other ffmpeg
format) needs an ``ffmpeg`` program: the one on PATH, else the binary that the
``imageio-ffmpeg`` package ships (a dependency of ``rql_lite[ogbench]``); ``.gif`` (Pillow) and
``.npz`` (the raw uint8 frames) need nothing beyond the venv. Frames come from
``rql_lite.ogbench.evaluate`` (``video_episodes``).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from rql_lite import checks
from rql_lite.files import atomic_path

DEFAULT_FPS = 20  # OGBench manipulation envs step at 20 Hz (control timestep 0.05 s)
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
    """Write ``(T, H, W, 3)`` uint8 frames to ``path`` atomically (``rql_lite.files.atomic_path``);
    return ``path``.

    The format follows the extension: ``.gif`` via Pillow, ``.npz`` as
    ``np.savez_compressed(frames=...)``, anything else (``.mp4``, ...) via
    ``mediapy.write_video``, which needs the ``ffmpeg`` program. Frame sizes are padded to even
    numbers for ffmpeg's H.264 encoder.
    """
    frames = _as_frames(frames)
    checks.check_number(fps, "fps", above=0.0)
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if not ext:
        raise ValueError(f"{path!r} has no extension; use one of {VIDEO_FORMATS}")
    if ext not in (".gif", ".npz") and not ffmpeg_available():
        raise RuntimeError(
            f"writing {ext} videos needs the ffmpeg program, which was not found on PATH. Install it "
            "(Debian/Ubuntu: apt-get install -y ffmpeg; macOS: brew install ffmpeg; conda: conda install ffmpeg) "
            "or point mediapy at a binary with mediapy.set_ffmpeg(path). Without ffmpeg, write a .gif "
            "or .npz instead (e.g. the same path with the extension changed).")
    # The temporary name keeps the extension: ffmpeg and Pillow pick the format from it.
    with atomic_path(path) as tmp:
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
    return path


def show_video(frames, fps: float = DEFAULT_FPS, title: str | None = None, width: int | None = None) -> None:
    """Show ``(T, H, W, 3)`` frames inline in a notebook with mediapy (an H.264 video in the page)."""
    import mediapy

    if not ffmpeg_available():
        raise RuntimeError("showing a video needs ffmpeg; pip install imageio-ffmpeg (or install ffmpeg)")
    mediapy.show_video(_as_frames(frames), fps=fps, title=title, width=width)
