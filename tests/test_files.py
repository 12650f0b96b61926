"""rql_lite.files: the one atomic writer, and the stale-temporary cleanup that recognises its files."""
import json
import os
import subprocess

import numpy as np
import pytest

from rql_lite import files


def test_one_temporary_pattern_keeps_the_extension_and_is_recognised():
    assert files.temporary_path("out/run.json", pid=42) == "out/run.json.tmp-42.json"
    assert files.temporary_path("a/video.mp4", pid=7).endswith(".mp4")
    assert files.is_temporary(files.temporary_path("checkpoint.msgpack"))
    assert files.is_temporary("checkpoint.msgpack.tmp-123")  # what older versions left
    assert not files.is_temporary("checkpoint.msgpack.prev") and not files.is_temporary("seed0.json")


def test_writes_replace_whole_files_and_keep_the_previous_one_when_asked(tmp_path):
    path = str(tmp_path / "sub" / "a.json")
    files.write_json_atomic(path, {"b": 1, "a": [1, 2]})
    assert open(path).read() == json.dumps({"a": [1, 2], "b": 1}, indent=2, sort_keys=True) + "\n"
    files.write_bytes_atomic(path, b"second", keep_previous=True)
    assert open(path, "rb").read() == b"second" and open(path + files.PREVIOUS_SUFFIX).read().startswith("{")
    assert sorted(os.listdir(tmp_path / "sub")) == ["a.json", "a.json.prev"]


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "data.npz"
    path.write_bytes(b"previous contents")
    with pytest.raises(KeyboardInterrupt):
        with files.atomic_path(str(path)) as tmp:
            np.savez(tmp, x=np.zeros(3))
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["data.npz"] and path.read_bytes() == b"previous contents"


def test_stale_temporaries_of_every_writer_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "records" / "task").mkdir(parents=True)
    keep = ["run.json", "checkpoint.msgpack", "checkpoint.msgpack.prev", "records/task/seed0.json"]
    stale = [files.temporary_path(name, pid=99) for name in ("run.json", "checkpoint.msgpack", "records/seed1.json",
                                                                 "records/task/seed0.json", "videos.mp4")]
    for name in keep + stale:
        (tmp_path / name).write_text("x")
    removed = files.remove_stale_temporaries(str(tmp_path))
    assert removed == sorted(str(tmp_path / name) for name in stale)
    assert sorted(os.path.relpath(os.path.join(d, n), tmp_path) for d, _, ns in os.walk(tmp_path) for n in ns) == \
        sorted(keep)


def test_sha256_of_several_files_is_one_digest_in_order(tmp_path):
    (tmp_path / "a").write_bytes(b"ab")
    (tmp_path / "b").write_bytes(b"c")
    (tmp_path / "c").write_bytes(b"abc")
    digest = files.sha256_of([str(tmp_path / "a"), str(tmp_path / "b")])
    assert digest == files.sha256_of([str(tmp_path / "c")]) != files.sha256_of([str(tmp_path / "b"), str(tmp_path / "a")])


def test_git_commit_is_dirty_for_code_changes_not_for_records_under_results(tmp_path, monkeypatch):
    monkeypatch.delenv("RQL_GIT_COMMIT", raising=False)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q", str(tmp_path)], check=True)
    (tmp_path / "rql_lite").mkdir()
    (tmp_path / "results" / "run").mkdir(parents=True)
    (tmp_path / "rql_lite" / "a.py").write_text("x = 1\n")
    (tmp_path / "results" / "run" / "seed0.json").write_text("{}\n")
    subprocess.run(git + ["add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(git + ["commit", "-qm", "c"], cwd=tmp_path, check=True)
    where = str(tmp_path / "rql_lite")
    clean = files.git_commit(where)
    assert clean and len(clean) == 40
    (tmp_path / "results" / "run" / "seed0.json").write_text('{"steps": 20}\n')  # a run writing its record
    assert files.git_commit(where) == clean
    (tmp_path / "rql_lite" / "a.py").write_text("x = 2\n")
    assert files.git_commit(where) == clean + "+dirty"
