"""The offline kit: the smallest wheel set that runs OGBench's manipulation environments on a GPU image.

A short GPU allocation often comes as a fixed image without a package index: JAX with CUDA,
flax, optax, numpy and the scientific stack, but no MuJoCo, dm_control, gymnasium or OGBench,
and a cap on what can be carried in (64 MiB here, the project included). The wheels those need
weigh several times that cap as published, and most of it is never loaded by OGBench's
manipulation environments (dm_control's locomotion and suite assets, MuJoCo's interactive viewer
"studio", an ffmpeg binary; ``manifest.json`` records each size). ``make_kit`` downloads the pinned wheels for the node's
Python, drops what the manipulation environments never import (``TRIM``), rewrites each
trimmed wheel with a correct ``RECORD`` and a ``+kit`` build tag, and writes ``manifest.json``
saying what came from where and what was dropped.

Make it where pip reaches PyPI::

    python -m rql_lite kit --out kit --python-version 3.12

and install it on the node with nothing but pip (no index; the image's packages stay)::

    python3 -m pip install --no-index --no-deps --target rql-site kit/*.whl
    export PYTHONPATH=$PWD/rql-site

(``scripts/gpu_node.sh`` does exactly that, then runs ``python -m rql_lite node``.) Videos on the
node are written as GIF with Pillow, which the image has: ffmpeg is not in the kit.

The kit relies on the image for the packages in ``IMAGE_PACKAGES``; ``check_image`` says which
of them an environment lacks. This module uses only the standard library (it runs where the
kit is made, which may have no JAX).
"""
from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

# The wheels of the kit, pinned: the versions the project's tests run with. mujoco 4 is split into
# mujoco (Python), mujoco-core (the compiled library) and mujoco-studio (an interactive viewer,
# left out: nothing imports it unless asked to).
KIT_WHEELS = {
    "ogbench": "1.2.2",
    "mujoco": "4.0.1",
    "mujoco-core": "4.0.1",
    "dm-control": "1.0.52",
    "dm-env": "1.6",
    "glfw": "2.11.0",
    "pyopengl": "3.1.10",
    "gymnasium": "1.4.0",
    "farama-notifications": "0.0.6",
}

# What the kit's wheels import that the GPU image already has (its package list, DEVELOPERS.md and
# the device tool's KINDS.md), besides the project's own needs (jax, flax, optax, numpy, msgpack, tqdm).
IMAGE_PACKAGES = ("jax", "flax", "optax", "numpy", "msgpack", "tqdm", "absl-py", "lxml", "scipy", "pyparsing",
                  "protobuf", "requests", "setuptools", "pillow", "pyyaml", "etils", "cloudpickle",
                  "typing-extensions", "rich")

# What is kept of a trimmed wheel: only these top-level paths (and the .dist-info), minus tests.
# dm_control: the modules OGBench's manipulation environments import (mjcf builds the scenes,
# mujoco/_render/rl/utils run and draw them), seen in sys.modules after making, stepping and
# rendering cube, scene and puzzle environments; tests/test_kit.py runs the pipeline on the kit.
TRIM = {
    "dm-control": {
        "keep": ("dm_control/__init__.py", "dm_control/_render/", "dm_control/mjcf/", "dm_control/mujoco/",
                 "dm_control/rl/", "dm_control/utils/"),
        "drop_patterns": (r"_test\.py$", r"/testing/", r"/test_assets/"),
        "why": "OGBench's manipulation envs import only dm_control.mjcf, .mujoco, ._render, .rl and .utils; "
               "the suite, locomotion (48 MB of assets), composer, manipulation, entities, viewer, blender, "
               "autowrap and third_party packages and every test file and test asset are dropped",
    },
}

MAX_KIT_BYTES = 40 * 2**20
BUILD_TAG = "1kit"  # wheel build tag of a trimmed wheel (a digit first, as the wheel spec asks)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def platform_tags(glibc_minor: int) -> list[str]:
    """pip's ``--platform`` values for x86-64 Linux with glibc 2.``glibc_minor`` (pip matches each exactly)."""
    tags = ["manylinux2014_x86_64", "manylinux1_x86_64"]
    tags += [f"manylinux_2_{i}_x86_64" for i in range(17, glibc_minor + 1)]
    return tags


def _platform_rank(platform: str, glibc_minor: int) -> int:
    """How specific a wheel's platform tag is for glibc 2.``glibc_minor`` (-1: it does not fit)."""
    best = -1
    for tag in platform.split("."):
        if tag == "any":
            best = max(best, 0)
        elif tag in ("manylinux1_x86_64", "manylinux2014_x86_64"):
            best = max(best, 1)
        else:
            m = re.fullmatch(r"manylinux_2_(\d+)_x86_64", tag)
            if m and int(m.group(1)) <= glibc_minor:
                best = max(best, int(m.group(1)))
    return best


def download_command(dest: str, python_version: str, glibc_minor: int, wheels: dict | None = None) -> list[str]:
    """The ``pip download`` command that fetches the kit's wheels, unmodified, into ``dest``."""
    wheels = KIT_WHEELS if wheels is None else wheels
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", dest,
           "--python-version", python_version, "--implementation", "cp", "--disable-pip-version-check"]
    for tag in platform_tags(glibc_minor):
        cmd += ["--platform", tag]
    return cmd + [f"{name}=={version}" for name, version in wheels.items()]


def _wheel_parts(filename: str) -> dict:
    """``name-version(-build)?-python-abi-platform.whl`` split into its fields."""
    stem = filename[:-len(".whl")]
    parts = stem.split("-")
    if len(parts) == 5:
        name, version, python, abi, plat = parts
        build = None
    elif len(parts) == 6:
        name, version, build, python, abi, plat = parts
    else:
        raise ValueError(f"{filename} is not a wheel file name")
    return {"name": name, "version": version, "build": build, "python": python, "abi": abi, "platform": plat}


def _record_line(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def trim_wheel(src: str, dest_dir: str, keep: tuple[str, ...], drop_patterns: tuple[str, ...] = ()) -> dict:
    """Write ``src`` again into ``dest_dir`` with only the paths under ``keep`` (and its ``.dist-info``),
    minus those matching ``drop_patterns``; a fresh ``RECORD`` and the ``BUILD_TAG`` build tag.

    Returns what was kept and dropped (file counts and uncompressed bytes, dropped top-level folders).
    """
    parts = _wheel_parts(os.path.basename(src))
    out_name = "-".join([parts["name"], parts["version"], BUILD_TAG, parts["python"], parts["abi"],
                         parts["platform"]]) + ".whl"
    out_path = os.path.join(dest_dir, out_name)
    dropped_dirs: dict[str, int] = {}
    kept = dropped = kept_bytes = dropped_bytes = 0
    with zipfile.ZipFile(src) as zin:
        infos = zin.infolist()
        dist_info = next(i.filename.split("/")[0] for i in infos if i.filename.split("/")[0].endswith(".dist-info"))
        record_name = f"{dist_info}/RECORD"
        rows = []
        tmp = out_path + ".partial"
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zout:
            for info in infos:
                name = info.filename
                if name == record_name or name.endswith("/"):
                    continue
                in_dist_info = name.startswith(dist_info + "/")
                wanted = in_dist_info or (any(name == k or (k.endswith("/") and name.startswith(k)) for k in keep)
                                          and not any(re.search(p, name) for p in drop_patterns))
                if not wanted:
                    dropped += 1
                    dropped_bytes += info.file_size
                    top = "/".join(name.split("/")[:2])
                    dropped_dirs[top] = dropped_dirs.get(top, 0) + info.file_size
                    continue
                data = zin.read(info)
                zout.writestr(info, data)
                rows.append(_record_line(name, data))
                kept += 1
                kept_bytes += len(data)
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerows(rows + [[record_name, "", ""]])
            zout.writestr(record_name, buf.getvalue())
        os.replace(tmp, out_path)
    return {"wheel": out_name, "kept_files": kept, "kept_bytes": kept_bytes, "dropped_files": dropped,
            "dropped_bytes": dropped_bytes,
            "dropped_folders": {k: v for k, v in sorted(dropped_dirs.items(), key=lambda kv: -kv[1])}}


def make_kit(out: str, python_version: str = "3.12", glibc_minor: int = 28, download_dir: str | None = None,
             max_bytes: int = MAX_KIT_BYTES, log=print) -> dict:
    """Download, trim and write the kit into ``out`` (created; must be empty or absent); return the manifest.

    ``download_dir``: wheels already downloaded there are used as they are (pip skips what it has).
    Raises ``ValueError`` when the kit would exceed ``max_bytes`` (nothing is left in ``out``).
    """
    if not re.fullmatch(r"3\.\d+", python_version):
        raise ValueError(f"--python-version {python_version!r}: give the node's Python as 3.X, e.g. 3.12")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ValueError(f"--out {out} exists and is not an empty folder; choose a new folder")
    cache = download_dir or tempfile.mkdtemp(prefix="rql-kit-download-")
    os.makedirs(cache, exist_ok=True)
    cmd = download_command(cache, python_version, glibc_minor)
    log(f"kit: downloading {len(KIT_WHEELS)} wheels for CPython {python_version}, glibc 2.{glibc_minor}")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ValueError(f"pip download failed (is PyPI reachable?):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    staging = out.rstrip("/") + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        manifest = _stage_kit(staging, cache, python_version, glibc_minor, max_bytes, log)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if os.path.isdir(out):
        os.rmdir(out)
    os.replace(staging, out)
    log(f"kit: {len(manifest['wheels'])} wheels, {manifest['total_bytes'] / 2**20:.1f} MiB (published wheels: "
        f"{manifest['downloaded_total_bytes'] / 2**20:.1f} MiB) in {out}")
    return manifest


def _stage_kit(staging: str, cache: str, python_version: str, glibc_minor: int, max_bytes: int, log) -> dict:
    wheels = []
    for name, version in KIT_WHEELS.items():
        found = [f for f in os.listdir(cache) if f.endswith(".whl")
                 and _norm(_wheel_parts(f)["name"]) == _norm(name) and _wheel_parts(f)["version"] == version
                 and _platform_rank(_wheel_parts(f)["platform"], glibc_minor) >= 0]
        if not found:
            raise ValueError(f"no wheel of {name}=={version} for glibc 2.{glibc_minor} in {cache}")
        # A reused download folder may hold the same wheel for several platforms: take the newest that fits.
        found.sort(key=lambda f: _platform_rank(_wheel_parts(f)["platform"], glibc_minor), reverse=True)
        src = os.path.join(cache, found[0])
        entry = {"name": name, "version": version, "downloaded": found[0], "downloaded_bytes": os.path.getsize(src),
                 "downloaded_sha256": _sha256(src)}
        if _norm(name) in TRIM:
            rule = TRIM[_norm(name)]
            entry["trim"] = {"keep": list(rule["keep"]), "drop_patterns": list(rule["drop_patterns"]),
                             "why": rule["why"], **trim_wheel(src, staging, rule["keep"], rule["drop_patterns"])}
            path = os.path.join(staging, entry["trim"]["wheel"])
        else:
            path = os.path.join(staging, found[0])
            shutil.copy2(src, path)
        entry.update(wheel=os.path.basename(path), bytes=os.path.getsize(path), sha256=_sha256(path))
        wheels.append(entry)
        log(f"  {entry['wheel']}: {entry['bytes'] / 2**20:.2f} MiB"
            + (f" (trimmed from {entry['downloaded_bytes'] / 2**20:.2f} MiB)" if "trim" in entry else ""))
    total = sum(w["bytes"] for w in wheels)
    manifest = {
        "schema": "rql_lite-kit-v1", "python_version": python_version, "platforms": platform_tags(glibc_minor),
        "wheels": wheels, "total_bytes": total,
        "downloaded_total_bytes": sum(w["downloaded_bytes"] for w in wheels),
        "image_packages": list(IMAGE_PACKAGES),
        "install": "python3 -m pip install --no-index --no-deps --target DIR *.whl; export PYTHONPATH=DIR",
        "left_out": {"mujoco-studio": "MuJoCo's interactive viewer (mujoco 4 asks for it; nothing here imports it)",
                     "dm-tree, labmaze": "asked for by dm_control/dm-env, never imported by the manipulation envs",
                     "imageio-ffmpeg, mediapy": "videos on the node are GIFs written with Pillow"},
    }
    if total > max_bytes:
        raise ValueError(f"the kit would be {total / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB limit")
    with open(os.path.join(staging, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return manifest


def runtime_requirements(pyproject: str) -> list[str]:
    """The project's runtime requirements: ``[project].dependencies`` and the ``ogbench`` extra of ``pyproject``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise ValueError("reading pyproject.toml needs Python >= 3.11 (tomllib)") from None
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    return [r for r in [*project["dependencies"], *project["optional-dependencies"]["ogbench"]]
            if not _norm(r).startswith("rql-lite")]


def wheelhouse_command(pyproject: str, dest: str, python_version: str, glibc_minor: int,
                       jax_version: str | None = None) -> list[str]:
    """A full, untrimmed wheelhouse instead of the kit, for a node whose image lacks more than the kit adds:
    ``pip download`` of every runtime requirement (``jax_version`` pins the node's jax, so that the flax
    and optax chosen fit it; the jax wheels themselves are never installed over the node's)."""
    cmd = ["python3", "-m", "pip", "download", "--dest", dest, "--only-binary=:all:", "--python-version",
           python_version]
    for tag in platform_tags(glibc_minor):
        cmd += ["--platform", tag]
    return cmd + runtime_requirements(pyproject) + ([f"jax=={jax_version}"] if jax_version else [])


def check_image(packages=IMAGE_PACKAGES) -> list[str]:
    """The packages of ``packages`` not installed in this Python (what the kit expects from the image)."""
    missing = []
    for name in packages:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing
