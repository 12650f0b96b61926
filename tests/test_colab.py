"""The chapters' first cell on Colab (``scripts/colab_setup.py``), with ``google.colab`` faked.

Fast tests: each step of the setup with pip, the GPU and Colab's modules stood in for. The slow test
(CI runs it) makes a virtual environment holding Colab's package set (``tests/colab_versions.txt``),
runs every chapter's first cell in it as Colab would (the clone skipped, the install real), checks
that pip keeps Colab's jax, jaxlib, flax, numpy and ipywidgets, and executes chapters 1-3 and 6 at
smoke size there. The same check is shown to fail on a cell changed to reinstall jax.
"""
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import colab_setup  # noqa: E402

VERSIONS_FILE = ROOT / "tests" / "colab_versions.txt"
# What pip must leave as Colab has them; the rest of Colab's set may move, and the test says which.
KEPT = ("jax", "jaxlib", "flax", "numpy", "ipywidgets")
FAKE_PIP_LIST = "\n".join(["absl-py==2.3.1", "flax==0.11.2", "jax==0.7.2", "jax-cuda12-pjrt==0.7.2",
                           "jax-cuda12-plugin==0.7.2", "jaxlib==0.7.2", "jaxtyping==0.3.2", "torch==2.8.0"]) + "\n"


def first_cell(page):
    with open(ROOT / page) as f:
        return "".join(json.load(f)["cells"][0]["source"])


def pages():
    with open(ROOT / "_toc.yml") as f:
        names = re.findall(r"file:\s*(\S+)", f.read())
    return [n + ".ipynb" for n in names if (ROOT / (n + ".ipynb")).exists()]


def fake_colab():
    """``google.colab`` with an ``output`` module that records ``enable_custom_widget_manager`` calls."""
    calls = []
    colab = types.ModuleType("google.colab")
    output = types.ModuleType("google.colab.output")
    output.enable_custom_widget_manager = lambda: calls.append("enable_custom_widget_manager")
    colab.output = output
    return {"google.colab": colab, "google.colab.output": output}, calls


# --- each step -------------------------------------------------------------------------------------

def fake_pip(monkeypatch, pip_list):
    commands = []

    def run(cmd, *args, **kwargs):
        commands.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 0, stdout=pip_list if "list" in cmd else "", stderr="")

    monkeypatch.setattr(colab_setup.subprocess, "run", run)
    return commands


def test_install_pins_colabs_jax_family(monkeypatch, tmp_path):
    commands = fake_pip(monkeypatch, FAKE_PIP_LIST)
    monkeypatch.setattr(colab_setup, "has_nvidia_gpu", lambda: True)
    kept, around = colab_setup.install("/content/rql-book", str(tmp_path / "c.txt"))
    assert around is None, "labmaze has a wheel (the stand-in pip says so): the plain install"
    assert kept == ["jax-cuda12-pjrt==0.7.2", "jax-cuda12-plugin==0.7.2", "jax==0.7.2", "jaxlib==0.7.2"]
    assert (tmp_path / "c.txt").read_text().split() == kept
    install = commands[-1]
    assert install[install.index("-c") + 1] == str(tmp_path / "c.txt")
    assert install[-1] == "/content/rql-book[notebooks]", "no gpu extra where JAX is already installed"


def test_install_adds_the_gpu_extra_only_without_jax_and_with_a_gpu(monkeypatch, tmp_path):
    for gpu, extras in ((True, "notebooks,gpu"), (False, "notebooks")):
        commands = fake_pip(monkeypatch, "numpy==2.1.3\n")
        monkeypatch.setattr(colab_setup, "has_nvidia_gpu", lambda: gpu)
        assert colab_setup.install("/c", str(tmp_path / "c.txt")) == ([], None)
        assert commands[-1][-1] == f"/c[{extras}]"


def test_install_goes_around_labmaze_where_it_has_no_wheel(monkeypatch, tmp_path):
    """Colab's Python 3.13: no labmaze wheel; ogbench and dm_control go in without their dependencies."""
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copy(ROOT / "pyproject.toml", clone / "pyproject.toml")
    requires = {"ogbench": ["dm_control>=1.0.20", "gymnasium", "mujoco>=3.1.6"],
                "dm_control": ["absl-py>=0.7.0", "labmaze", "lxml", "mujoco>=3.3", "h5py; extra == \"hdf5\""]}
    commands = []

    def run(cmd, *args, **kwargs):
        commands.append(list(cmd))
        if "--only-binary" in cmd:  # labmaze: no wheel for this Python
            return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="No matching distribution")
        if "--report" in cmd:
            report = {"install": [{"metadata": {"requires_dist": requires[cmd[-1]]}}]}
            return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps(report), stderr="")
        return subprocess.CompletedProcess(cmd, 0, stdout=FAKE_PIP_LIST if "list" in cmd else "", stderr="")

    monkeypatch.setattr(colab_setup.subprocess, "run", run)
    kept, around = colab_setup.install(str(clone), str(tmp_path / "c.txt"))
    assert "jax==0.7.2" in kept and "labmaze" in around
    installs = [c for c in commands if "install" in c and "--dry-run" not in c]
    assert len(installs) == 2
    first, second = installs
    assert first[first.index("-c") + 1] == str(tmp_path / "c.txt") and second[second.index("-c") + 1] == str(tmp_path / "c.txt")
    assert str(clone) in first and not any("labmaze" in a or a.startswith(("ogbench", "dm_control")) for a in first)
    assert {"absl-py>=0.7.0", "lxml", "gymnasium", "matplotlib>=3.7"} <= set(first), first
    assert not any("extra ==" in a for a in first)
    assert second[-3:] == ["--no-deps", "ogbench", "dm_control"]


@pytest.mark.parametrize("version, enabled", [("8.1.9", True), ("7.7.1", False)])
def test_widgets_enable_colabs_manager_only_for_ipywidgets_8(monkeypatch, version, enabled):
    modules, calls = fake_colab()
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: version)
    line = colab_setup.enable_widgets()
    assert calls == (["enable_custom_widget_manager"] if enabled else [])
    assert version in line


def test_nvidia_egl_vendor_file(tmp_path):
    vendor = tmp_path / "egl_vendor.d"
    assert "no GPU" in colab_setup.nvidia_egl(str(vendor), gpu=False) and not vendor.exists()

    def fails(name):
        raise OSError(f"{name}: cannot open shared object file")
    assert "does not load" in colab_setup.nvidia_egl(str(vendor), gpu=True, load=fails) and not vendor.exists()

    loaded = []
    assert "wrote" in colab_setup.nvidia_egl(str(vendor), gpu=True, load=loaded.append)
    assert loaded == ["libEGL_nvidia.so.0"]
    written = json.loads((vendor / "10_nvidia.json").read_text())
    assert written["ICD"]["library_path"] == "libEGL_nvidia.so.0" and written["file_format_version"]
    (vendor / "10_nvidia.json").write_text("{}")
    assert "present" in colab_setup.nvidia_egl(str(vendor), gpu=True, load=loaded.append)
    assert (vendor / "10_nvidia.json").read_text() == "{}", "an existing vendor file is left alone"


def test_gpu_line():
    assert colab_setup.gpu_line("gpu") is None and colab_setup.gpu_line("tpu") is None
    line = colab_setup.gpu_line("cpu")
    assert "\n" not in line and "GPU" in line and "Runtime" in line


# --- the whole cell, as a page runs it ------------------------------------------------------------

def colab_copy(tmp_path):
    """The repository's scripts/ and a page folder, where the cell expects its clone."""
    clone = tmp_path / "rql-book"
    (clone / "notebooks").mkdir(parents=True)
    (clone / "book").mkdir()
    shutil.copytree(ROOT / "scripts", clone / "scripts")
    return clone


def on_colab(source, clone):
    """The cell with its clone moved to ``clone`` (so it is not cloned again)."""
    assert source.count('"/content/rql-book"') == 1
    return source.replace('"/content/rql-book"', json.dumps(str(clone)))


@pytest.mark.parametrize("page", ["notebooks/01_flow_matching.ipynb", "notebooks/03_expanded_mdp.ipynb",
                                  "book/speed.ipynb"])
def test_first_cell_on_a_faked_colab(monkeypatch, tmp_path, capsys, page):
    import jax  # first: JAX, once it sees google.colab, imports Colab's own modules

    clone = colab_copy(tmp_path)
    modules, calls = fake_colab()
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "colab_setup", colab_setup)  # the cell imports it from the clone
    commands = fake_pip(monkeypatch, FAKE_PIP_LIST)
    monkeypatch.setattr(colab_setup, "CONSTRAINTS", str(tmp_path / "constraints.txt"))
    monkeypatch.setattr(colab_setup, "nvidia_egl", lambda: "NVIDIA EGL: (stood in)")
    entered = []
    monkeypatch.setattr(os, "chdir", entered.append)
    source = first_cell(page)
    exec(compile(on_colab(source, clone), page, "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert not any(c[:2] == ["git", "clone"] for c in commands), "the clone is there: not cloned again"
    assert any("install" in c for c in commands)
    assert entered == [str(clone / os.path.dirname(page))]
    assert calls == ["enable_custom_widget_manager"], "ipywidgets 8 here: Colab's widget manager enabled"
    assert f"computes on the {jax.default_backend().upper()}" in out, "the cell prints the backend"
    trains = 'trains=True' in source
    assert ("No GPU attached" in out) == trains, "the training chapters warn on a CPU, the others do not"


def test_every_chapter_trains_flag():
    """Every page runs the shared setup; the reference pages train nothing, so they never warn about the GPU."""
    for page in pages():
        source = first_cell(page)
        assert "colab_setup.setup(CLONE" in source, page
        if page.startswith("book/"):
            assert "trains=False" in source, page


# --- Colab's package set in a fresh environment (slow) --------------------------------------------

# Runs one first cell inside the Colab environment's Python: google.colab faked, the cell's clone
# moved to a copy of this repository (so not cloned), every pip install either real or a dry run.
# Arguments: cell file, report file, "real" or "dry".
DRIVER = r"""
import json, os, subprocess, sys, types
cell, report, mode = sys.argv[1:4]
import jax  # first, as on Colab
calls = []
colab = types.ModuleType("google.colab"); output = types.ModuleType("google.colab.output")
output.enable_custom_widget_manager = lambda: calls.append("enable_custom_widget_manager")
colab.output = output
sys.modules.update({"google.colab": colab, "google.colab.output": output})
real_run = subprocess.run
installs = []
def run(cmd, *args, **kwargs):
    cmd = list(cmd)
    if "install" in cmd and mode == "dry" and "--dry-run" not in cmd:  # the setup's own dry runs stay as they are
        out = f"{report}.pip{len(installs)}.json"
        installs.append(out)
        cmd += ["--dry-run", "--report", out]
    return real_run(cmd, *args, **kwargs)
subprocess.run = run
os.chdir = lambda path: None
exec(compile(open(cell).read(), cell, "exec"), {"__name__": "__main__"})
would = {}
for path in installs:
    with open(path) as f:
        for item in json.load(f)["install"]:
            would[item["metadata"]["name"].lower().replace("_", "-")] = item["metadata"]["version"]
json.dump({"widget_manager_calls": calls, "would_install": would}, open(report, "w"))
"""

# Executes notebooks in the Colab environment as the book build does (smoke size).
EXECUTE = r"""
import os, sys, time, nbformat
from nbclient import NotebookClient
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    tic = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": os.path.dirname(path)}}).execute()
    print(f"{os.path.basename(path)}: {time.perf_counter() - tic:.0f} s", flush=True)
"""

CHAPTERS = ("notebooks/01_flow_matching.ipynb", "notebooks/02_reversing_a_flow.ipynb",
            "notebooks/03_expanded_mdp.ipynb", "notebooks/06_ogbench.ipynb")


def colab_requirements():
    """``(name, version)`` of Colab's pinned packages, and every requirement line of the file."""
    lines = [line.split("#")[0].strip() for line in VERSIONS_FILE.read_text().splitlines()]
    lines = [line for line in lines if line]
    pins = dict(line.split("==") for line in lines if "==" in line)
    return pins, lines


def freeze(python):
    out = subprocess.run([python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
                         capture_output=True, text=True, check=True).stdout
    return {name.lower().replace("_", "-"): version for name, version in re.findall(r"(?m)^(\S+)==(\S+)$", out)}


def moved(before, after):
    """``{name: (before, after)}`` for Colab's pinned packages that ``after`` changes."""
    return {name: (before.get(name), version) for name, version in after.items()
            if name in before and before[name] != version}


def colab_python():
    """Colab's Python (3.13) where this machine has one (``RQL_COLAB_PYTHON`` or ``python3.13``), else this one."""
    candidate = os.environ.get("RQL_COLAB_PYTHON") or shutil.which("python3.13")
    if candidate:
        done = subprocess.run([candidate, "-c", "import venv, sys; print(sys.version_info[:2])"],
                              capture_output=True, text=True)
        if done.returncode == 0:
            return candidate
    return sys.executable


def test_moved_names_the_package_and_versions():
    assert moved({"jax": "0.7.2", "numpy": "2.1.3"}, {"jax": "0.7.1", "scipy": "1.16"}) == {"jax": ("0.7.2", "0.7.1")}
    assert moved({"jax": "0.7.2"}, {"jax": "0.7.2"}) == {}


def source_copy(tmp_path):
    """What the cell's clone holds, as far as installing and running the chapters needs."""
    clone = tmp_path / "rql-book"
    clone.mkdir()
    for name in ("pyproject.toml", "README.md", "_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, clone / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".ipynb_checkpoints")
    for name in ("rql_lite", "scripts", "notebooks", "book", "results"):
        shutil.copytree(ROOT / name, clone / name, ignore=ignore)
    return clone


@pytest.mark.slow
def test_chapters_in_colabs_package_set(tmp_path):
    timings = {}
    tic = time.perf_counter()
    python = colab_python()
    venv = tmp_path / "colab-venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    pins, requirements = colab_requirements()
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + requirements, check=True, timeout=1200)
    before = freeze(py)
    assert {name: before.get(name) for name in pins} == pins, "the environment holds Colab's versions"
    timings["colab set"] = time.perf_counter() - tic

    clone = source_copy(tmp_path)
    env = dict(os.environ, JAX_PLATFORMS="cpu", RQL_PROFILE="smoke", PYTHONHASHSEED="0")
    env.pop("VIRTUAL_ENV", None)
    # Every page's first cell; identical cells (up to the folder and the training flag) run once.
    cells = {}
    for page in pages():
        cells.setdefault(on_colab(first_cell(page), clone), page)
    tic = time.perf_counter()
    for n, (source, page) in enumerate(cells.items()):
        cell_file, report_file = tmp_path / f"cell{n}.py", tmp_path / f"cell{n}.json"
        cell_file.write_text(source)
        done = subprocess.run([py, "-c", DRIVER, str(cell_file), str(report_file), "real"], capture_output=True,
                              text=True, timeout=1200, env=env, cwd=tmp_path)
        assert done.returncode == 0, f"{page}'s first cell: {done.stdout}{done.stderr}"
        assert "Traceback" not in done.stdout + done.stderr
        assert "computes on the CPU" in done.stdout, done.stdout
        assert ("No GPU attached" in done.stdout) == ("trains=True" in source), done.stdout
        # Colab's ipywidgets 7 renders by itself: no custom widget manager then.
        report = json.loads(report_file.read_text())
        assert report["widget_manager_calls"] == ([] if pins["ipywidgets"].startswith("7.") else
                                                  ["enable_custom_widget_manager"])
    after = freeze(py)
    timings["first cells"] = time.perf_counter() - tic
    assert "rql-lite" in after
    changes = moved(before, after)
    print("Colab's packages moved by the install:", changes or "none")
    assert not {k: v for k, v in changes.items() if k in KEPT}, f"pip moved Colab's {changes}"

    # The check fails on a cell changed to reinstall jax (a dry run: nothing is installed).
    reinstall = on_colab(first_cell(CHAPTERS[0]), clone).replace(
        "    colab_setup.setup(",
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", '
        '"jax==0.7.1"], check=True)\n    colab_setup.setup(')
    assert reinstall != on_colab(first_cell(CHAPTERS[0]), clone)
    (tmp_path / "bad.py").write_text(reinstall)
    done = subprocess.run([py, "-c", DRIVER, str(tmp_path / "bad.py"), str(tmp_path / "bad.json"), "dry"],
                          capture_output=True, text=True, timeout=1200, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    bad = moved(before, json.loads((tmp_path / "bad.json").read_text())["would_install"])
    assert "jax" in bad, f"a cell that reinstalls jax passes the check: {bad}"

    # Chapters 1-3 and 6 at smoke size, from a scratch copy (the sources stay without outputs).
    tic = time.perf_counter()
    done = subprocess.run([py, "-c", EXECUTE] + [str(clone / c) for c in CHAPTERS], capture_output=True,
                          text=True, timeout=1800, env=env, cwd=clone)
    assert done.returncode == 0, done.stdout + done.stderr[-5000:]
    timings["chapters"] = time.perf_counter() - tic
    print(done.stdout)
    print("seconds:", {k: round(v) for k, v in timings.items()}, "python", subprocess.run(
        [py, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True).stdout.strip())
