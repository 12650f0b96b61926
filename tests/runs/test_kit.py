"""The offline kit (``rql_lite.runs.kit``): trimmed wheels that pip installs, and, end to end, the kit
installed with ``--no-index`` into a fresh environment that holds only a GPU image's packages, where
``scripts/gpu_node.sh`` then generates a dataset, benchmarks, trains two agents in segments, evaluates,
exports and films (``python -m rql_lite node``)."""
import base64
import csv
import hashlib
import importlib.metadata
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile

import pytest

from rql_lite.runs import kit

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_BYTES = 16 * 2**20


def fake_wheel(folder, name="demo", version="1.0"):
    """A small wheel: a package with a kept module, a dropped subpackage and a test file."""
    path = os.path.join(folder, f"{name}-{version}-py3-none-any.whl")
    files = {f"{name}/__init__.py": b"X = 1\n", f"{name}/keep/core.py": b"Y = 2\n",
             f"{name}/keep/core_test.py": b"assert True\n", f"{name}/big/assets.bin": b"\0" * 5000,
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    with zipfile.ZipFile(path, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
        z.writestr(f"{name}-{version}.dist-info/RECORD", "")
    return path


def test_a_trimmed_wheel_keeps_what_it_is_told_with_a_true_record_and_installs(tmp_path):
    src = fake_wheel(str(tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    info = kit.trim_wheel(src, str(out), keep=("demo/__init__.py", "demo/keep/"), drop_patterns=(r"_test\.py$",))
    assert info["wheel"] == "demo-1.0-1kit-py3-none-any.whl"
    assert (info["kept_files"], info["dropped_files"]) == (4, 2)  # 2 modules, METADATA, WHEEL; assets, test
    assert info["dropped_folders"] == {"demo/big": 5000, "demo/keep": len(b"assert True\n")}
    with zipfile.ZipFile(out / info["wheel"]) as z:
        rows = list(csv.reader(io.StringIO(z.read("demo-1.0.dist-info/RECORD").decode())))
        for name, digest, size in rows:
            if digest:  # RECORD lists itself without a hash
                data = z.read(name)
                want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert digest == f"sha256={want}" and int(size) == len(data)
        assert sorted(r[0] for r in rows) == sorted(z.namelist())
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(target),
                    str(out / info["wheel"])], check=True)
    assert (target / "demo" / "keep" / "core.py").is_file() and not (target / "demo" / "big").exists()


def test_platform_tags_and_rank():
    assert kit.platform_tags(20)[-1] == "manylinux_2_20_x86_64" and "manylinux2014_x86_64" in kit.platform_tags(17)
    assert kit._platform_rank("manylinux_2_27_x86_64.manylinux_2_28_x86_64", 28) == 28
    assert kit._platform_rank("manylinux_2_31_x86_64", 28) == -1  # needs a newer glibc than the node's
    assert kit._platform_rank("any", 28) == 0


def test_the_wheelhouse_command_asks_for_pyprojects_runtime_requirements():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    expected = project["dependencies"] + project["optional-dependencies"]["ogbench"]
    command = kit.wheelhouse_command(os.path.join(REPO, "pyproject.toml"), "wh", "3.11", 31, "0.6.2")
    assert command[:8] == ["python3", "-m", "pip", "download", "--dest", "wh", "--only-binary=:all:", "--python-version"]
    assert [command[i + 1] for i, w in enumerate(command) if w == "--platform"] == kit.platform_tags(31)
    assert command[-len(expected) - 1:] == expected + ["jax==0.6.2"]


def test_make_kit_refuses_a_used_folder_and_a_bad_python(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(ValueError, match="not an empty folder"):
        kit.make_kit(str(tmp_path), download_dir=str(tmp_path))
    with pytest.raises(ValueError, match="give the node's Python as 3.X"):
        kit.make_kit(str(tmp_path / "new"), python_version="3")


def files_under(folder):
    return sorted(os.path.join(d, f) for d, _, names in os.walk(folder) for f in names)


@pytest.mark.slow
def test_the_kit_runs_the_pipeline_in_a_gpu_images_package_set(tmp_path):
    """Make the kit for this Python from PyPI; a fresh virtual environment with only the image's packages
    (at this environment's versions; the GPU image's own are newer); install the kit offline; run the
    node at smoke size: data, bench, two agents in two segments each, records, policy, GIF video (no
    ffmpeg in such an image); again (nothing to train, the bench kept, one archive); and with a budget
    spent before training (nothing trained, said so)."""
    version = "%d.%d" % sys.version_info[:2]
    manifest = kit.make_kit(str(tmp_path / "kit"), python_version=version, log=lambda *_: None)
    assert manifest["total_bytes"] < kit.MAX_KIT_BYTES
    assert {w["name"] for w in manifest["wheels"]} == set(kit.KIT_WHEELS)

    venv = tmp_path / "image"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in kit.IMAGE_PACKAGES] + [
        f"jaxlib=={importlib.metadata.version('jaxlib')}", f"ml_dtypes=={importlib.metadata.version('ml_dtypes')}"]
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins], check=True)
    for missing in ("ogbench", "mujoco", "gymnasium"):  # not in the image
        assert subprocess.run([python, "-I", "-c", f"import {missing}"], capture_output=True, cwd=tmp_path).returncode

    def node(*args):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
        env.update(HOME=str(tmp_path), JAX_PLATFORMS="cpu", MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"),
                   PIP_CONFIG_FILE=os.devnull)
        return subprocess.run(["bash", os.path.join(REPO, "scripts", "gpu_node.sh"), "--python", python,
                               "--site", str(tmp_path / "site"), *args], capture_output=True, text=True, env=env,
                              cwd=REPO, timeout=900)

    tiny = ["--profile", "smoke", "--tasks", "cube-single-play-singletask-task1-v0",
            "cube-single-play-singletask-task2-v0", "--seeds", "0", "1", "--steps", "40", "--eval-every", "20",
            "--save-every", "20", "--eval-episodes", "1", "--max-eval-steps", "20", "--dataset-episodes", "2",
            "--episode-length", "100", "--set", "policy_hidden=16", "value_hidden=16", "num_values=2",
            "batch_size=16", "--segment-minutes", "0.0001"]
    out, work = tmp_path / "out", tmp_path / "work"
    first = node("--kit", str(tmp_path / "kit"), "--out", str(out), "--work", str(work), "--agents", "rql", "tfql",
                 *tiny)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert "install: the kit" in first.stdout and "done: every run is finished" in first.stdout
    for agent in ("rql", "tfql"):
        copied = out / "runs" / f"cube-single-{agent}-smoke"
        for task in ("task1", "task2"):
            for seed in (0, 1):
                record = json.loads((copied / "records" / f"cube-single-play-singletask-{task}-v0" /
                                     f"seed{seed}.json").read_text())
                assert record["finished"] and record["steps"] == 40 and record["agent"] == agent
    log = (out / "gpu_node.log").read_text()
    segments = re.findall(r"^\[node \+\d+s\] segment \d+ \((\w+)\) ended", log, flags=re.M)
    assert segments.count("rql") >= 2 and segments.count("tfql") >= 2, log[-3000:]
    (bench,) = out.glob("bench-*.json")
    assert json.loads(bench.read_text())["smoke"]["updates_per_s"] > 0
    (video,) = out.glob("video-*")
    assert video.suffix == ".gif" and video.read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    (policy,) = out.glob("policy-*.msgpack")
    assert not [f for f in files_under(out) if "checkpoint" in f]
    assert all(os.path.getsize(f) < MAX_BYTES for f in files_under(out))

    again = node("--kit", str(tmp_path / "kit"), "--out", str(out), "--work", str(work), "--agents", "rql", "tfql",
                 "--archive", *tiny)
    assert "is in" in again.stdout and "already" in again.stdout  # the kit is not installed twice
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert not re.search(r"\] segment \d+ \(", again.stdout) and "exists (delete it to measure again)" in again.stdout
    assert json.loads((out / "summary.json").read_text())["segments_this_invocation"] == 0
    assert (out / "runs.tar.gz").is_file() and not (out / "runs").exists() and len(files_under(out)) <= 8
    with tarfile.open(out / "runs.tar.gz") as tar:
        assert any(n.endswith("records/cube-single-play-singletask-task2-v0/seed1.json") for n in tar.getnames())

    out2 = tmp_path / "out2"
    budget = node("--kit", str(tmp_path / "kit"), "--no-bench", "--out", str(out2), "--work", str(tmp_path / "work2"),
                  "--total-minutes", "0.00001", *tiny)
    assert budget.returncode == 0, budget.stdout[-3000:] + budget.stderr[-3000:]
    assert "leaves no room for another segment" in budget.stdout and "UNFINISHED" in budget.stdout
    summary = json.loads((out2 / "summary.json").read_text())
    assert not summary["all_finished"] and summary["stopped_by_total_minutes"] and summary["video"] is None
