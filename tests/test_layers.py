"""The package's layers, checked from its code: no upward import, no cycle, a core that stays small.

The import graph is read with ``ast`` from every module of ``rql_lite`` (module-level and
function-local imports, ``import x``, ``from x import y``, relative imports). Each module belongs to
a layer (``LAYERS``); a layer may import only the layers in ``MAY_IMPORT``. An import that breaks
the rule, or a cycle between modules, fails the test with the file, line and edge. The checker is
itself tested on a copy of the package with an upward import and a cycle planted in it.

Importing a submodule runs its package's ``__init__`` too; those implicit edges are not drawn
(they never cross a layer: a package and its modules are one layer).
"""
import ast
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "rql_lite")

CORE = ("agent", "analysis", "checks", "configs", "data", "flow", "losses", "networks", "train")
CORE_PACKAGES = ("baselines",)  # the core's one subpackage: the other flow-RL methods' losses, one module each
SUBPACKAGES = ("teaching", "ogbench", "runs", "bench")
MAY_IMPORT = {
    "core": {"core"},
    "files": set(),  # nothing of the package
    "teaching": {"core", "teaching"},
    "ogbench": {"core", "files", "ogbench"},
    "runs": {"core", "files", "ogbench", "runs"},
    "bench": {"core", "files", "ogbench", "runs", "teaching", "bench"},
    "cli": {"core", "files", "teaching", "ogbench", "runs", "bench", "cli"},
}
# What the core may import from outside the package besides the standard library. tqdm draws
# train()'s progress bar, imported only when one is asked for.
CORE_THIRD_PARTY = {"jax", "flax", "optax", "numpy", "tqdm"}
HEAVY = ("ogbench", "mujoco", "gymnasium", "dm_control", "matplotlib")


def layer_of(module: str) -> str:
    """The layer of a module of ``rql_lite`` (dotted name)."""
    parts = module.split(".")
    if module == "rql_lite" or (len(parts) == 2 and parts[1] in CORE) or parts[1] in CORE_PACKAGES:
        return "core"
    if parts[1] in ("cli", "__main__"):
        return "cli"
    if parts[1] == "files":
        return "files"
    if parts[1] in SUBPACKAGES:
        return parts[1]
    raise ValueError(f"{module} belongs to no layer: add it to tests/test_layers.py's CORE or SUBPACKAGES")


def modules_of(package_dir: str) -> dict[str, str]:
    """``{dotted module name: file path}`` of every module under ``package_dir`` (the ``rql_lite`` folder)."""
    top = os.path.basename(package_dir.rstrip(os.sep))
    found = {}
    for folder, dirs, names in os.walk(package_dir):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), package_dir)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                found[".".join([top, *rel])] = os.path.join(folder, name)
    return found


def _is_package(module: str, modules: dict[str, str]) -> bool:
    return modules[module].endswith("__init__.py")


def imports_of(module: str, path: str, modules: dict[str, str]):
    """Yield ``(target, line, local, external)`` for every import in ``path``: ``target`` the module
    of the package it reaches (``None`` for another package's, named in ``external``), ``local``
    whether it sits inside a function or class."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    local_lines = {n.lineno for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                        ast.ClassDef))
                   for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom)) and n is not f}
    package = module if _is_package(module, modules) else module.rsplit(".", 1)[0]

    def resolve(name):
        """The longest module of the package that ``name`` starts with."""
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in modules:
                return ".".join(parts[:end])
        return None

    for node in ast.walk(tree):
        local = node.lineno in local_lines if isinstance(node, (ast.Import, ast.ImportFrom)) else False
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name)
                yield target, node.lineno, local, None if target else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                target = resolve(f"{source}.{alias.name}") if f"{source}.{alias.name}" in modules else resolve(source)
                yield target, node.lineno, local, None if target else source.split(".")[0]


def import_graph(package_dir: str):
    """``(modules, edges, external)``: ``edges`` is a list of ``(source, target, file, line, local)``
    between modules of the package; ``external[module]`` the other packages it imports."""
    modules = modules_of(package_dir)
    edges, external = [], {}
    for module, path in sorted(modules.items()):
        for target, line, local, other in imports_of(module, path, modules):
            if target is not None and target != module:
                edges.append((module, target, path, line, local))
            elif other is not None:
                external.setdefault(module, set()).add(other)
    return modules, edges, external


def find_cycle(modules, edges) -> list[str] | None:
    """One cycle of the import graph as a list of modules (first == last), or ``None``."""
    graph = {m: sorted({t for s, t, *_ in edges if s == m}) for m in modules}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in graph[m]:
            if state.get(t) == "open":
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def problems(package_dir: str) -> list[str]:
    """Every broken rule, one line each: upward imports (file, line, the edge, the layers), the core's
    imports from outside the allowed list, and a cycle."""
    modules, edges, external = import_graph(package_dir)
    found = []
    for source, target, path, line, local in edges:
        a, b = layer_of(source), layer_of(target)
        if b not in MAY_IMPORT[a]:
            where = "inside a function" if local else "at module level"
            found.append(f"{os.path.relpath(path, os.path.dirname(package_dir))}:{line} ({where}): {source} imports "
                         f"{target}; the {a} layer may import {sorted(MAY_IMPORT[a]) or 'nothing of the package'}, "
                         f"not {b}")
    for module, others in sorted(external.items()):
        if layer_of(module) == "core":
            extra = sorted(o for o in others if o not in CORE_THIRD_PARTY and o not in sys.stdlib_module_names
                           and o != "__future__")
            if extra:
                found.append(f"{module} (core) imports {extra}; the core imports only {sorted(CORE_THIRD_PARTY)} "
                             f"and the standard library")
    cycle = find_cycle(modules, edges)
    if cycle:
        found.append("import cycle: " + " -> ".join(cycle))
    return found


# --------------------------------------------------------------------------- the package


def test_every_module_has_a_layer():
    for module in modules_of(PACKAGE):
        layer_of(module)  # raises for a module without one


def test_no_upward_import_no_cycle_and_a_small_core():
    found = problems(PACKAGE)
    assert not found, "\n".join(found)


def test_nothing_imports_the_command_line():
    _, edges, _ = import_graph(PACKAGE)
    assert {s for s, t, *_ in edges if t == "rql_lite.cli"} <= {"rql_lite.__main__"}


def test_the_graph_sees_every_kind_of_import():
    """The edges the checker must see, one of each form, from the package itself."""
    _, edges, _ = import_graph(PACKAGE)
    pairs = {(s, t) for s, t, *_ in edges}
    assert ("rql_lite.agent", "rql_lite.losses") in pairs  # from rql_lite import losses
    assert ("rql_lite.runs.experiment", "rql_lite.runs.spec") in pairs  # from rql_lite.runs.spec import RunSpec
    assert ("rql_lite", "rql_lite.agent") in pairs  # the package's __init__
    assert ("rql_lite.ogbench", "rql_lite.ogbench.evaluate") in pairs  # a subpackage's __init__


# --------------------------------------------------------------------------- the checker itself


def _copy(tmp_path):
    copy = tmp_path / "rql_lite"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _plant(path, code):
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n\n" + textwrap.dedent(code))


def test_a_planted_upward_import_inside_a_function_is_named(tmp_path):
    copy = _copy(tmp_path)
    assert problems(str(copy)) == []
    _plant(copy / "flow.py", """
        def _report_rows():
            from rql_lite.runs import report

            return report.NOT_RUN
        """)
    found = problems(str(copy))
    assert "rql_lite/flow.py:" in found[0] and "inside a function" in found[0], found
    assert "rql_lite.flow imports rql_lite.runs.report" in found[0] and "not runs" in found[0], found
    # report imports the agent, which imports flow (directly, and through the baselines): the planted
    # import closes a cycle too; which path the search reports first depends on the graph's order.
    assert len(found) == 2 and found[1].startswith("import cycle: rql_lite.agent -> "), found
    assert found[1].endswith("-> rql_lite.flow -> rql_lite.runs.report -> rql_lite.agent"), found


@pytest.mark.parametrize("code, edge", [
    ("import rql_lite.ogbench.datasets\n", "rql_lite.teaching.toys imports rql_lite.ogbench.datasets"),
    ("from ..runs import records\n", "rql_lite.teaching.toys imports rql_lite.runs.records"),
    ("from rql_lite import cli\n", "rql_lite.teaching.toys imports rql_lite.cli"),
    ("from rql_lite.files import sha256_of\n", "rql_lite.teaching.toys imports rql_lite.files"),
])
def test_each_form_of_import_is_caught(tmp_path, code, edge):
    copy = _copy(tmp_path)
    _plant(copy / "teaching" / "toys.py", code)
    found = problems(str(copy))
    assert any(edge in line for line in found), found


def test_a_planted_cycle_is_named(tmp_path):
    copy = _copy(tmp_path)
    _plant(copy / "data.py", """
        def _trainer():
            from rql_lite import train  # train imports data: a cycle inside the core

            return train
        """)
    found = problems(str(copy))
    assert len(found) == 1 and found[0].startswith("import cycle: "), found
    assert "rql_lite.data" in found[0] and "rql_lite.train" in found[0], found


def test_the_core_may_not_import_other_packages(tmp_path):
    copy = _copy(tmp_path)
    _plant(copy / "analysis.py", "import matplotlib.pyplot as plt\n")
    found = problems(str(copy))
    assert found == ["rql_lite.analysis (core) imports ['matplotlib']; the core imports only "
                     "['flax', 'jax', 'numpy', 'optax', 'tqdm'] and the standard library"], found


# --------------------------------------------------------------------------- what importing loads


def _loaded_after(code: str) -> set[str]:
    """The top-level names in ``sys.modules`` after ``code`` runs in a fresh interpreter."""
    script = code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, JAX_PLATFORMS="cpu"), cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return set(result.stdout.split())


def test_importing_the_core_loads_no_simulator_and_no_plotting():
    core = ", ".join(CORE)
    loaded = _loaded_after(f"import rql_lite\nfrom rql_lite import {core}")
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"importing the core loaded {heavy}"
    above = sorted(m for m in loaded if m.split(".")[:2] in (["rql_lite", s] for s in SUBPACKAGES + ("files", "cli")))
    assert not above, f"importing the core loaded the layers above it: {above}"


def test_checking_a_run_spec_loads_no_simulator():
    loaded = _loaded_after(textwrap.dedent("""
        from rql_lite.runs.spec import RunSpec
        spec = RunSpec(task=("cube-double-play-singletask-task1-v0", "cube-double-play-singletask-task2-v0"),
                       seeds=(0, 1), overrides={"alpha": 3.0}).resolved()
        assert spec.multi_task and spec.steps == 200
        try:
            RunSpec(task="cube-dubble-play-singletask-task2-v0").resolved()
        except ValueError as err:
            assert "cube-double-play-singletask-task2-v0" in str(err)
        """))
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"checking a RunSpec loaded {heavy}"
