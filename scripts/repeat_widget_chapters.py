#!/usr/bin/env python
"""Execute the chapters that build ipywidgets several times in a row, as the book build does, and
report any cell that never returns.

    python scripts/repeat_widget_chapters.py                  # 10 rounds of every widget chapter, smoke size
    python scripts/repeat_widget_chapters.py --times 2 --cell-timeout 120 notebooks/01_flow_matching.ipynb

Each execution is the build's: a fresh kernel (this Python's ``python3`` kernel), nbclient running the
chapter's cells one after another with a per-cell time limit, ``RQL_PROFILE`` (default ``smoke``) and
``RQL_BOOK_BUILD=1`` in the environment, from a scratch copy of the book's pages (the sources stay
without outputs). A widget chapter is a page whose code imports ``rql_lite.teaching.widgets``.

A cell that runs past ``--cell-timeout`` is reported by chapter, cell number and first line, with the
Python stacks of every thread of its kernel at that moment (faulthandler, registered on SIGUSR1 by an
IPython startup file in a private IPYTHONDIR): a kernel thread inside the chapter's code means the cell
was still working; a kernel whose main thread waits in its event loop had nothing left to do, so the
request or its reply was lost between kernel and client. The last line is the summary, with the
versions of the packages on that path. Exit status: 0 when every execution finished, 1 otherwise.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIDGETS_MODULE = "rql_lite.teaching.widgets"
# ``import rql_lite.teaching.widgets``, ``from rql_lite.teaching.widgets import ...``, ``from rql_lite.teaching import widgets``
WIDGETS_IMPORT = r"rql_lite\.teaching\.widgets\b|from\s+rql_lite\.teaching\s+import\s+(?:\(?[\w\s,]*,\s*)?widgets\b"
PACKAGES = ("ipykernel", "jupyter_client", "nbclient", "ipywidgets", "pyzmq", "tornado", "ipython")
STARTUP = """\
import faulthandler, os, signal
_rql_stacks = open(os.environ["RQL_KERNEL_STACKS"], "a")
faulthandler.register(signal.SIGUSR1, file=_rql_stacks, all_threads=True)
"""


def widget_chapters(root: str = ROOT) -> list[str]:
    """The book's pages (``_toc.yml`` order) whose code cells import the widgets module."""
    import re

    with open(os.path.join(root, "_toc.yml")) as f:
        pages = [p + ".ipynb" for p in re.findall(r"file:\s*(\S+)", f.read())]
    found = []
    for page in pages:
        path = os.path.join(root, page)
        if os.path.exists(path):
            with open(path) as f:
                cells = json.load(f)["cells"]
            if any(c["cell_type"] == "code" and re.search(WIDGETS_IMPORT, "".join(c["source"])) for c in cells):
                found.append(page)
    return found


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def first_line(source: str) -> str:
    lines = [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return (lines[0] if lines else source.strip()[:80])[:100]


def diagnose(stacks: str) -> str:
    """One sentence on where the kernel's main thread was when the cell ran out of time."""
    if not stacks.strip():
        return "no stack dump came back from the kernel"
    main = stacks[stacks.find("Current thread"):] if "Current thread" in stacks else stacks
    frames = [line.strip() for line in main.splitlines()[1:] if line.strip().startswith("File ")]
    if any("ipykernel_" in f or "<ipython-input" in f for f in frames):
        return "its main thread was still running the cell's code (see the stacks)"
    if frames and ("selectors.py" in frames[0] or "select" in frames[0]):
        return ("its main thread sat idle in the event loop: the request or its reply was lost between kernel and "
                "client")
    return "its main thread was elsewhere (see the stacks)"


def execute_once(path: str, cell_timeout: float, stacks_file: str) -> dict:
    """Execute one notebook in a fresh kernel; return ``{"status", "seconds", "cell", "line", "stacks"}``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    nb = nbformat.read(path, as_version=4)
    state = {"cell": None}

    class Client(NotebookClient):
        async def _async_handle_timeout(self, timeout, cell=None):  # before the kernel is shut down
            pid = getattr(getattr(self.km, "provisioner", None), "pid", None)
            if pid is None:
                pid = getattr(getattr(getattr(self.km, "provisioner", None), "process", None), "pid", None)
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGUSR1)
                    time.sleep(1.0)
                except OSError:
                    pass
            return await super()._async_handle_timeout(timeout, cell)

    client = Client(nb, timeout=int(cell_timeout), kernel_name="python3",
                    resources={"metadata": {"path": os.path.dirname(path)}})
    client.on_cell_execute = lambda cell, cell_index: state.update(cell=cell_index)
    open(stacks_file, "w").close()
    tic = time.perf_counter()
    result = {"status": "ok", "cell": None, "line": None, "stacks": ""}
    try:
        client.execute()
    except CellTimeoutError:
        result["status"] = "timeout"
    except CellExecutionError as err:
        result["status"] = "error"
        result["error"] = str(err).strip().splitlines()[-1][:300]
    except Exception as err:  # the kernel died, could not start, ...
        result["status"] = "error"
        result["error"] = f"{type(err).__name__}: {str(err)[:300]}"
    result["seconds"] = round(time.perf_counter() - tic, 1)
    if result["status"] != "ok" and state["cell"] is not None:
        result["cell"] = state["cell"]
        result["line"] = first_line(nb.cells[state["cell"]].source)
        with open(stacks_file) as f:
            result["stacks"] = f.read()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*",
                        help="notebooks, relative to --root (default: every page that builds widgets)")
    parser.add_argument("--times", type=int, default=10, help="rounds over the chapters (default 10)")
    parser.add_argument("--cell-timeout", type=float, default=300.0,
                        help="seconds a cell may run before it counts as hung (default 300)")
    parser.add_argument("--profile", default="smoke", choices=("smoke", "full"))
    parser.add_argument("--json", help="also write the executions and the summary to this file")
    parser.add_argument("--root", default=ROOT, help="the book's root (default: this repository)")
    args = parser.parse_args(argv)
    if args.times < 1:
        parser.error(f"--times must be at least 1, got {args.times}")
    if args.cell_timeout <= 0:
        parser.error(f"--cell-timeout must be positive, got {args.cell_timeout}")
    root = os.path.abspath(args.root)
    chapters = [os.path.relpath(os.path.join(root, c), root) for c in args.chapters] or widget_chapters(root)
    for chapter in chapters:
        if not os.path.isfile(os.path.join(root, chapter)):
            parser.error(f"no notebook {chapter}")
    if not chapters:
        parser.error("no page of the book imports " + WIDGETS_MODULE)

    work = tempfile.mkdtemp(prefix="rql-repeat-widgets-")
    try:
        for name in ("_config.yml", "_toc.yml", "book", "notebooks"):
            source = os.path.join(root, name)
            if not os.path.exists(source):
                continue
            (shutil.copytree if os.path.isdir(source) else shutil.copy)(source, os.path.join(work, name))
        ipython_dir = os.path.join(work, "ipython")
        os.makedirs(os.path.join(ipython_dir, "profile_default", "startup"))
        with open(os.path.join(ipython_dir, "profile_default", "startup", "00-stacks.py"), "w") as f:
            f.write(STARTUP)
        stacks_file = os.path.join(work, "kernel-stacks.txt")
        os.environ.update(RQL_PROFILE=args.profile, RQL_BOOK_BUILD="1", IPYTHONDIR=ipython_dir,
                          RQL_KERNEL_STACKS=stacks_file)
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        os.environ.setdefault("MUJOCO_GL", "egl")
        found = versions()
        print(f"{args.times} rounds of {', '.join(chapters)} at {args.profile} size, cell limit "
              f"{args.cell_timeout:g} s; " + ", ".join(f"{k} {v}" for k, v in found.items()), flush=True)
        runs, tic = [], time.perf_counter()
        for round_ in range(1, args.times + 1):
            for chapter in chapters:
                result = execute_once(os.path.join(work, chapter), args.cell_timeout, stacks_file)
                result.update(round=round_, chapter=chapter)
                runs.append(result)
                line = f"round {round_} {chapter}: {result['status']} in {result['seconds']:.1f} s"
                if result["status"] == "timeout":
                    line += (f"; HUNG at cell {result['cell']} ({result['line']!r}) after {args.cell_timeout:g} s: "
                             f"{diagnose(result['stacks'])}; the kernel's threads then:\n"
                             f"{result['stacks'] or '  (no stack dump)'}")
                elif result["status"] == "error":
                    where = f" at cell {result['cell']} ({result['line']!r})" if result["cell"] is not None else ""
                    line += f"{where}: {result.get('error', '')}"
                print(line, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    hung = sum(r["status"] == "timeout" for r in runs)
    failed = sum(r["status"] == "error" for r in runs)
    medians = {c: statistics.median(r["seconds"] for r in runs if r["chapter"] == c and r["status"] == "ok")
               for c in chapters if any(r["chapter"] == c and r["status"] == "ok" for r in runs)}
    summary = (f"SUMMARY: {len(runs)} executions ({args.times} rounds x {len(chapters)} chapters) in "
               f"{time.perf_counter() - tic:.0f} s: {hung} hung, {failed} failed; median s per chapter "
               + ", ".join(f"{os.path.basename(c)} {m:.1f}" for c, m in medians.items())
               + "; " + ", ".join(f"{k} {v}" for k, v in found.items()))
    print(summary, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "versions": found, "runs": runs, "cell_timeout_s": args.cell_timeout,
                       "profile": args.profile, "python": sys.version.split()[0]}, f, indent=1)
    return 0 if hung == failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
