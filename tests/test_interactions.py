"""A page must not promise an interaction that its static HTML cannot give.

Words such as "drag", "slider", "widget" or "click" in a chapter's Markdown are a promise. The
static book keeps it in two ways only: a live figure (``rql_lite.teaching.live``, kernel-free HTML
and JavaScript in the page) shown by a code cell next to the paragraph, or a paragraph that says
that a kernel is needed (it names a kernel, Jupyter or Colab). Anything else fails here.
"""
import json
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROMISE = re.compile(r"\b(drag\w*|slider\w*|widget\w*|click\w*|interactive\w*|toggle the|move the slider)\b",
                     re.IGNORECASE)
KERNEL = re.compile(r"\b(kernel|jupyter|colab)\b", re.IGNORECASE)
LIVE = re.compile(r"\blive_\w+\(")      # a kernel-free live figure of rql_lite.teaching.live
NEIGHBOURS = 2                          # code cells this close to the paragraph count as "next to it"


def pages():
    with open(os.path.join(ROOT, "_toc.yml")) as f:
        files = re.findall(r"file:\s*(\S+)", f.read())
    return [f for f in files if os.path.exists(os.path.join(ROOT, f + ".ipynb"))]


def unkept_promises(cells):
    """``(index, words)`` of Markdown cells that promise an interaction and neither mention a kernel
    nor sit next to a live figure."""
    bad = []
    for i, cell in enumerate(cells):
        text = "".join(cell["source"])
        if cell["cell_type"] != "markdown":
            continue
        words = PROMISE.findall(text)
        if not words or KERNEL.search(text):
            continue
        near = cells[max(0, i - NEIGHBOURS): i + NEIGHBOURS + 1]
        if any(c["cell_type"] == "code" and LIVE.search("".join(c["source"])) for c in near):
            continue
        bad.append((i, sorted({w.lower() for w in words})))
    return bad


def md(text):
    return {"cell_type": "markdown", "source": [text]}


def code(text):
    return {"cell_type": "code", "source": [text]}


def test_the_check_itself():
    assert unkept_promises([md("Drag the slider to see every flow step.")]) == [(0, ["drag", "slider"])]
    assert unkept_promises([md("The slider needs a running kernel (Jupyter or Colab).")]) == []
    assert unkept_promises([md("Drag the point."), code("viz.live_reverse_path(velocity, data)")]) == []
    assert unkept_promises([md("Drag the point."), code("viz.reverse_path_widget(velocity, data)")]) != []
    assert unkept_promises([md("A widely used method.")]) == []


@pytest.mark.parametrize("name", pages())
def test_every_promised_interaction_is_kept_on_the_static_page(name):
    with open(os.path.join(ROOT, name + ".ipynb")) as f:
        cells = json.load(f)["cells"]
    bad = unkept_promises(cells)
    assert not bad, (f"{name}: Markdown cells {bad} promise an interaction with no live figure next to them "
                     "and no word that a kernel (Jupyter, Colab) is needed")
