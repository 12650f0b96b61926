"""A stuck cell fails in minutes, with its chapter and cell named; the widget chapters run repeatedly.

The book build's per-cell limit (``_config.yml``), nbmake's in ``scripts/test.sh``, the report of a
failed build (``scripts/execution_failures.py``) and ``scripts/repeat_widget_chapters.py``, which
executes the chapters that build ipywidgets several times in a row and names a cell that never returns.
"""
import json
import os
import re
import subprocess
import sys

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import execution_failures  # noqa: E402
import repeat_widget_chapters  # noqa: E402

REPEAT = os.path.join(ROOT, "scripts", "repeat_widget_chapters.py")


def test_cell_limits_are_minutes():
    with open(os.path.join(ROOT, "_config.yml")) as f:
        timeout = int(re.search(r"(?m)^\s+timeout:\s*(\d+)", f.read()).group(1))
    assert 60 <= timeout <= 600, "a stuck cell must fail the build in minutes"
    with open(os.path.join(ROOT, "scripts", "test.sh")) as f:
        nbmake = int(re.search(r"--nbmake-timeout=(\d+)", f.read()).group(1))
    assert 60 <= nbmake <= 600
    # A chapter with a longer limit says so in its metadata, and only a training chapter may.
    for folder in ("notebooks", "book"):
        for name in os.listdir(os.path.join(ROOT, folder)):
            if name.endswith(".ipynb"):
                with open(os.path.join(ROOT, folder, name)) as f:
                    own = json.load(f)["metadata"].get("mystnb", {}).get("execution_timeout")
                assert own is None or name == "06_ogbench.ipynb", name


def write_notebook(path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def book(tmp_path, *pages):
    """A book root holding ``pages`` (``(relative path, sources)``) and a table of contents."""
    (tmp_path / "notebooks").mkdir()
    toc = ["format: jb-book", "root: notebooks/" + pages[0][0][len("notebooks/"):-6], "chapters:"]
    for page, sources in pages:
        write_notebook(tmp_path / page, *sources)
        toc.append(f"- file: {page[:-6]}")
    (tmp_path / "_toc.yml").write_text("\n".join(toc) + "\n")
    (tmp_path / "_config.yml").write_text("title: t\n")
    return tmp_path


def repeat(*args):
    return subprocess.run([sys.executable, REPEAT, *args], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))


def test_a_stuck_cell_is_named_with_the_kernels_stacks(tmp_path):
    root = book(tmp_path, ("notebooks/stuck.ipynb", ["x = 1", "import time\ntime.sleep(120)  # never done in time"]))
    done = repeat("--root", str(root), "--times", "1", "--cell-timeout", "8", "notebooks/stuck.ipynb")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "HUNG at cell 1 ('import time')" in done.stdout, done.stdout
    assert "notebooks/stuck.ipynb" in done.stdout
    assert "still running the cell's code" in done.stdout, "the stacks show the cell at work"
    assert "1 hung, 0 failed" in done.stdout.splitlines()[-1]


def test_widget_chapters_found_and_repeated(tmp_path):
    widget_page = ["from rql_lite.teaching import widgets  # noqa: F401", "import ipywidgets\n"
                   "s = ipywidgets.FloatSlider(value=0.5)\ns.observe(lambda change: None, 'value')\ns"]
    root = book(tmp_path, ("notebooks/plain.ipynb", ["1 + 1"]), ("notebooks/widget.ipynb", widget_page))
    assert repeat_widget_chapters.widget_chapters(str(root)) == ["notebooks/widget.ipynb"]
    out = tmp_path / "runs.json"
    done = repeat("--root", str(root), "--times", "3", "--cell-timeout", "120", "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [r["status"] for r in runs] == ["ok"] * 3 and {r["chapter"] for r in runs} == {"notebooks/widget.ipynb"}
    assert "3 executions (3 rounds x 1 chapters)" in done.stdout and "0 hung, 0 failed" in done.stdout


def test_the_books_widget_chapters_are_found():
    found = repeat_widget_chapters.widget_chapters()
    assert "notebooks/01_flow_matching.ipynb" in found and "notebooks/02_reversing_a_flow.ipynb" in found


@pytest.mark.parametrize("bad", [["--times", "0"], ["--cell-timeout", "0"], ["no/such.ipynb"]])
def test_bad_arguments(bad):
    done = repeat(*bad)
    assert done.returncode == 2 and "error" in done.stderr


def test_failed_build_names_chapter_and_cell(tmp_path):
    """The report a build leaves for a chapter whose cell ran out of time, as nbclient words it."""
    from nbclient.exceptions import CellTimeoutError

    cell = nbformat.v4.new_code_cell("viz.flow_time_widget(state)\nmore()")
    err = CellTimeoutError.error_from_timeout_and_cell("Cell execution timed out", 600, cell)
    report = tmp_path / "reports" / "notebooks" / "01_flow_matching.err.log"
    report.parent.mkdir(parents=True)
    report.write_text(f"Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                      f"nbclient.exceptions.CellTimeoutError: {err}\n")
    lines = execution_failures.failures(str(tmp_path / "reports"))
    assert lines[0].startswith("chapter notebooks/01_flow_matching failed to execute: "
                               "nbclient.exceptions.CellTimeoutError: A cell timed out"), lines
    assert "600 seconds" in lines[0]
    assert "viz.flow_time_widget(state)" in lines[1]
    assert execution_failures.failures(str(tmp_path / "none")) == []
