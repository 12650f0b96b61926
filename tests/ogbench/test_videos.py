"""rql_lite.ogbench.videos: frames to .gif, .npz and .mp4, written atomically; clear errors."""
import os

import numpy as np
import pytest

from rql_lite.ogbench.videos import ffmpeg_available, write_video


def frames(t=3, h=32, w=48):
    """A moving gradient: every frame differs, none is black."""
    grid = np.add.outer(np.arange(h), np.arange(w))
    return np.stack([(grid * 3 + 40 * i) % 256 for i in range(t)])[..., None].repeat(3, -1).astype(np.uint8)


def test_every_format_is_written_whole_and_leaves_no_temporary(tmp_path):
    video = frames()
    gif = write_video(video, str(tmp_path / "v" / "ep.gif"), fps=5)
    from PIL import Image

    with Image.open(gif) as im:
        assert im.size == (48, 32) and im.n_frames == video.shape[0]
    npz = write_video(video, str(tmp_path / "ep.npz"))
    np.testing.assert_array_equal(np.load(npz)["frames"], video)
    assert ffmpeg_available()  # imageio-ffmpeg, a dependency, ships the binary
    mp4 = write_video(video[:, :-1], str(tmp_path / "ep.mp4"))  # odd height: padded for H.264
    assert open(mp4, "rb").read()[4:8] == b"ftyp"
    assert sorted(os.listdir(tmp_path)) == ["ep.mp4", "ep.npz", "v"]
    assert os.listdir(tmp_path / "v") == ["ep.gif"]  # no temporary files left behind
    as_floats = write_video(video / 255.0, str(tmp_path / "f.npz"))  # floats in [0, 1] are scaled
    np.testing.assert_array_equal(np.load(as_floats)["frames"], video)


def test_write_video_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        write_video(np.zeros((3, 8, 8)), str(tmp_path / "a.gif"))
    with pytest.raises(ValueError, match="extension"):
        write_video(frames(), str(tmp_path / "noext"))
    import mediapy

    monkeypatch.setattr(mediapy, "video_is_available", lambda: False)
    with pytest.raises(RuntimeError, match="apt-get install -y ffmpeg"):
        write_video(frames(), str(tmp_path / "a.mp4"))
    assert os.listdir(tmp_path) == []
