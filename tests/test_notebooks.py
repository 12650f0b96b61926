"""Every page of the book follows the chapter conventions (notebooks/CONVENTIONS.md).

Structure only: executing the notebooks is nbmake's job (scripts/test.sh).
"""
import json
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def toc_files():
    with open(os.path.join(ROOT, "_toc.yml")) as f:
        return re.findall(r"file:\s*(\S+)", f.read())


def notebooks():
    return [f for f in toc_files() if os.path.exists(os.path.join(ROOT, f + ".ipynb"))]


def load(name):
    with open(os.path.join(ROOT, name + ".ipynb")) as f:
        return json.load(f)


def test_every_chapter_notebook_is_in_the_table_of_contents():
    chapters = sorted(f[:-6] for f in os.listdir(os.path.join(ROOT, "notebooks")) if f.endswith(".ipynb"))
    listed = [f for f in toc_files() if f.startswith("notebooks/")]
    assert listed == [f"notebooks/{c}" for c in chapters]
    assert len(chapters) == 9
    for f in toc_files():
        assert os.path.exists(os.path.join(ROOT, f + ".ipynb")) or os.path.exists(os.path.join(ROOT, f + ".md")), f


@pytest.mark.parametrize("name", notebooks())
def test_notebook_conventions(name):
    nb = load(name)
    cells = nb["cells"]
    first = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "code" and '"google.colab" in sys.modules' in first, "first cell: Colab setup"
    assert any(c["cell_type"] == "markdown" and "".join(c["source"]).lstrip().startswith("# ") for c in cells[:3]), \
        "a title near the top"
    profile = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and 'os.environ.get("RQL_PROFILE"' in
               "".join(c["source"])]
    assert profile and profile[0] <= 6, "the profile cell is near the top"
    # Committed without outputs: the book and the tests execute them.
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells if c["cell_type"] == "code")
    # Short code cells: the lesson is in the prose.
    longest = max(len("".join(c["source"]).splitlines()) for c in cells if c["cell_type"] == "code")
    assert longest <= 60, f"a code cell of {longest} lines"
