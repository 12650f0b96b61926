"""What the first cell of every chapter does on Colab, after cloning the book's repository.

    import colab_setup
    colab_setup.setup(CLONE, "notebooks", trains=True)

1. ``install``: ``pip install CLONE[notebooks]`` with Colab's own jax, jaxlib and CUDA plugin pinned
   (``pip -c``, the versions from ``pip list``): pip may add packages but never replaces those, because
   moving one of them without the others is how a runtime loses its GPU. Colab's flax, numpy and
   ipywidgets satisfy rql_lite's bounds, so pip keeps them too (``tests/test_colab.py`` checks all
   five against Colab's versions, ``tests/colab_versions.txt``). The ``gpu`` extra (JAX's CUDA wheels)
   only where there is a GPU and no JAX yet. Where labmaze has no wheel for the Python (Colab's 3.13),
   OGBench's dm_control goes in without it (``install``'s docstring says why that is safe).
2. ``enable_widgets``: Colab renders ipywidgets 7 (what it ships) natively; ipywidgets 8 needs its
   custom widget manager, enabled here when pip installed 8.
3. ``nvidia_egl``: on a GPU runtime, NVIDIA's EGL vendor file for glvnd, which Colab's image lacks, so
   that MuJoCo renders on the GPU (Colab's own MuJoCo notebooks do the same). Which GL backend MuJoCo
   then uses (EGL, else OSMesa, else none, said in one line) is ``rql_lite``'s choice
   (``rql_lite.ogbench.env_workers.choose_gl``).
4. Enter the page's folder in the clone (the chapters read ``../results`` and write nothing else).
5. ``gpu_line``: in a chapter that trains, one line when no GPU is attached.

Standard library only: it runs before rql_lite and its dependencies are installed.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys

# Colab's packages that the install pins (the jax family; a moved one loses the GPU).
PINNED = re.compile(r"(?im)^(?:jax|jaxlib|jax[-_]cuda\d+[-_](?:plugin|pjrt))==\S+$")
CONSTRAINTS = "/tmp/rql-colab-constraints.txt"
EGL_VENDOR_DIR = "/usr/share/glvnd/egl_vendor.d"
NVIDIA_EGL_LIBRARY = "libEGL_nvidia.so.0"
NVIDIA_VENDOR_FILE = "10_nvidia.json"
NVIDIA_VENDOR_JSON = '{\n  "file_format_version": "1.0.0",\n  "ICD": {"library_path": "%s"}\n}\n' % NVIDIA_EGL_LIBRARY


def has_nvidia_gpu() -> bool:
    """Whether ``nvidia-smi`` exists and answers (a Colab GPU runtime)."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pinned(freeze: str) -> list[str]:
    """The ``name==version`` lines of ``pip list --format=freeze`` that the install keeps as they are."""
    return sorted(PINNED.findall(freeze))


def requirements_of(name: str, pip: list[str]) -> list[str]:
    """The unconditional requirements of ``name``'s newest release, from PyPI's metadata (no download)."""
    done = subprocess.run(pip + ["install", "--dry-run", "--no-deps", "--ignore-installed", "-q", "--report", "-", name],
                          capture_output=True, text=True, check=True)
    report = json.loads(done.stdout[done.stdout.index("{"):])
    return [r for r in report["install"][0]["metadata"].get("requires_dist", []) if "extra ==" not in r]


def has_wheel(name: str, pip: list[str]) -> bool:
    """Whether pip finds a wheel of ``name`` for this Python (else it would build it from source)."""
    done = subprocess.run(pip + ["install", "--dry-run", "--no-deps", "-q", "--only-binary", ":all:", name],
                          capture_output=True, text=True)
    return done.returncode == 0


def without(requirements: list[str], names: set[str]) -> list[str]:
    """``requirements`` less those naming a package in ``names``."""
    def name(r):
        return re.split(r"[\s\[<>=!~;(]", r, maxsplit=1)[0].lower().replace("_", "-")
    return [r for r in requirements if name(r) not in names]


def install(clone: str, constraints: str | None = None) -> tuple[list[str], str | None]:
    """``pip install CLONE[notebooks]`` keeping Colab's jax family; returns the pins it used and, when
    it had to go around a package, one sentence saying so. The pins go to ``constraints`` (default:
    the module's ``CONSTRAINTS``, read at call time, which tests move).

    labmaze: OGBench needs dm_control, which requires labmaze, a package only dm_control's locomotion
    mazes import (OGBench never does). labmaze has wheels up to Python 3.12 and otherwise builds only
    with bazel, so on Colab's Python 3.13 the plain install fails. Where pip finds no labmaze wheel,
    ogbench and dm_control are installed without their dependencies and everything they need but
    labmaze beside them (their requirements as PyPI lists them).
    """
    constraints = constraints or CONSTRAINTS
    pip = [sys.executable, "-m", "pip"]
    freeze = subprocess.run(pip + ["list", "--format=freeze"], capture_output=True, text=True).stdout
    keep = pinned(freeze)
    with open(constraints, "w") as f:
        f.write("\n".join(keep) + "\n")
    extras = "notebooks,gpu" if not keep and has_nvidia_gpu() else "notebooks"
    if has_wheel("labmaze", pip):
        subprocess.run(pip + ["install", "-q", "-c", constraints, f"{clone}[{extras}]"], check=True)
        return keep, None
    try:
        import tomllib
    except ImportError:  # Python < 3.11 has labmaze wheels, so never comes here
        raise
    with open(os.path.join(clone, "pyproject.toml"), "rb") as f:
        optional = tomllib.load(f)["project"]["optional-dependencies"]
    around = {"ogbench", "dm-control", "labmaze"}
    needs = (without(optional["notebooks"], {"rql-lite"}) + without(optional["ogbench"], around)
             + without(requirements_of("ogbench", pip) + requirements_of("dm_control", pip), around))
    base = f"{clone}[gpu]" if "gpu" in extras else clone
    subprocess.run(pip + ["install", "-q", "-c", constraints, base, *needs], check=True)
    subprocess.run(pip + ["install", "-q", "-c", constraints, "--no-deps", "ogbench", "dm_control"], check=True)
    return keep, (f"no labmaze wheel for Python {sys.version_info.major}.{sys.version_info.minor}: ogbench and "
                  "dm_control installed without it (only dm_control's locomotion mazes use it)")


def enable_widgets() -> str:
    """Enable Colab's custom widget manager where ipywidgets 8 is installed; say which ipywidgets renders."""
    import importlib.metadata

    version = importlib.metadata.version("ipywidgets")
    if int(version.split(".")[0]) >= 8:
        from google.colab import output

        output.enable_custom_widget_manager()
        return f"ipywidgets {version} (Colab's custom widget manager enabled)"
    return f"ipywidgets {version} (rendered by Colab itself)"


def nvidia_egl(vendor_dir: str = EGL_VENDOR_DIR, gpu: bool | None = None, load=ctypes.CDLL) -> str:
    """Write NVIDIA's EGL vendor file where a GPU is attached and the file is missing; say what was done.

    glvnd's libEGL finds the NVIDIA driver's EGL only through ``10_nvidia.json`` in ``vendor_dir``;
    without it MuJoCo's EGL falls back to Mesa's software renderer or fails. The file is written only
    where ``libEGL_nvidia.so.0`` loads (``load``), since it would point at nothing otherwise.
    """
    if not (has_nvidia_gpu() if gpu is None else gpu):
        return "no GPU: MuJoCo renders in software"
    path = os.path.join(vendor_dir, NVIDIA_VENDOR_FILE)
    if os.path.exists(path):
        return f"NVIDIA EGL: {path} present"
    try:
        load(NVIDIA_EGL_LIBRARY)
    except OSError as err:
        return f"NVIDIA EGL: {NVIDIA_EGL_LIBRARY} does not load ({err}); MuJoCo renders in software"
    try:
        os.makedirs(vendor_dir, exist_ok=True)
        with open(path, "w") as f:
            f.write(NVIDIA_VENDOR_JSON)
    except OSError as err:
        return f"NVIDIA EGL: could not write {path} ({err}); MuJoCo renders in software"
    return f"NVIDIA EGL: wrote {path}"


def gpu_line(backend: str) -> str | None:
    """The one line a chapter that trains prints when JAX computes on the CPU; ``None`` otherwise."""
    if backend != "cpu":
        return None
    return ("No GPU attached: JAX computes on the CPU, so training here is slower (chapter 6 drops to its CPU "
            "size). For a GPU: Runtime > Change runtime type > T4 GPU, then run the chapter again.")


def setup(clone: str, folder: str, trains: bool = False) -> None:
    """Install, enable widgets, set up EGL, enter ``clone/folder``; one line on what it found."""
    kept, around = install(clone)
    widgets = enable_widgets()
    egl = nvidia_egl()
    os.chdir(os.path.join(clone, folder))
    print(f"rql_lite installed from {clone}; kept {', '.join(kept) or 'no JAX (installed one)'}; {widgets}; {egl}")
    if around:
        print(around)
    if trains:
        import jax

        line = gpu_line(jax.default_backend())
        if line:
            print(line)
