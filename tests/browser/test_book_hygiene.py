"""What a reader must not meet on a page of the built book, measured in the browser.

Every page of the table of contents is opened from disk (``file://``, as the README tells a reader)
in a window of 1280 px, and fails on:

* a printed temporary-directory path (``/tmp/...``, ``/var/folders/...``, ``tmpXXXXXXXX``);
* a code cell, an output or a table wider than the content column: a block that scrolls sideways or
  reaches past the column's edge, measured from the laid-out page;
* a literal backtick in prose (text outside code): Markdown's code quotes that reached the reader,
  usually through a glued string;
* a figure whose layout check failed: ``rql_lite.teaching.plots.show`` checks each figure's own layout
  in the notebook (legends inside their axes, no backticks in its texts) and writes a problem to
  stderr, which the page then shows;
* a live figure that does not draw: every ``.rql-live`` box must hold a drawn Vega view.

``test_the_check_finds_what_it_should`` plants each kind of defect into a small page laid out like the book's and
checks that every one is reported: the check can fail.
"""

import os

import pytest

from browser_support import toc_pages

PAGES = toc_pages()

# The page's problems, as short sentences. The content column is the article element of the theme;
# what a reader scrolls sideways, or what sticks out of the column, is too wide.
PROBLEMS = r"""
const done = arguments[arguments.length - 1];
const wait = arguments[0];
const problems = [];
const column = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
const col = column.getBoundingClientRect();
const text = (e) => (e.innerText || e.textContent || "").trim().replace(/\s+/g, " ").slice(0, 80);

// 1. temporary-directory paths in anything the page shows
const temp = /(^|[\s'"(=:])(\/tmp\/|\/var\/tmp\/|\/var\/folders\/|\/private\/var\/|\/dev\/shm\/)\S*|\btmp[a-z0-9_]{8}\b|\\AppData\\Local\\Temp\\/i;
const body = document.body.innerText;
const m = body.match(temp);
if (m) problems.push("a temporary path is printed: " + JSON.stringify(body.substr(Math.max(0, m.index - 30), 90)));

// 2. code cells, outputs and tables wider than the column
const blocks = column.querySelectorAll("pre, table, .cell_output, .output, div.highlight, [style*='overflow']");
for (const e of blocks) {
  if (e.closest(".rql-live") || e.offsetParent === null) continue;      // live figures are sized by Vega
  const r = e.getBoundingClientRect();
  const scrolls = e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== "visible";
  const sticksOut = r.right > col.right + 1 || r.left < col.left - 1;
  if (scrolls || sticksOut) {
    problems.push(`a ${e.tagName.toLowerCase()}${e.className ? "." + String(e.className).split(" ")[0] : ""} ` +
                  `wider than the content column (${Math.max(e.scrollWidth, Math.round(r.width))} px in ` +
                  `${Math.round(col.width)} px): ${JSON.stringify(text(e))}`);
  }
}

// 3. literal backticks in prose (text outside code, math and scripts)
const walker = document.createTreeWalker(column, NodeFilter.SHOW_TEXT);
const skip = "code, pre, kbd, samp, script, style, mjx-container, .highlight, .cell_input, .rql-live";
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  if (n.nodeValue.includes("`") && !(n.parentElement && n.parentElement.closest(skip))) {
    problems.push("a literal backtick in prose: " + JSON.stringify(n.nodeValue.trim().slice(0, 80)));
  }
}

// 4. figures whose layout check (rql_lite.teaching.plots.show) reported a problem
const failed = new Set();  // an output is often nested in another: each line once
for (const e of column.querySelectorAll(".output, .cell_output")) {
  for (const line of (e.innerText || "").split("\n")) {
    if (line.includes("figure layout check")) failed.add(line.trim());
  }
}
for (const line of failed) problems.push("a figure failed its layout check: " + line);

// 5. live figures that did not draw (waits for them: Vega draws after the page loads)
const lives = Array.from(column.querySelectorAll(".rql-live"));
const t0 = Date.now();
(function check() {
  const pending = lives.filter((e) => !(e.dataset.ready === "1" && e.querySelector("svg")));
  if (pending.length && Date.now() - t0 < wait) { setTimeout(check, 200); return; }
  for (const e of pending) problems.push(`the live figure ${e.id} did not draw: ${JSON.stringify(text(e))}`);
  done(problems);
})();
"""


def page_problems(browser, url, wait_ms=30_000):
    """The problems of the page at ``url``, as sentences (empty: none)."""
    browser.get(url)
    return browser.execute_async_script(PROBLEMS, wait_ms)


@pytest.mark.parametrize("page", PAGES)
def test_page_has_nothing_in_the_readers_way(file_url, browser, page):
    problems = page_problems(browser, f"{file_url}/{page}")
    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


PLANTED = {
    "temporary path": '<div class="cell_output docutils container"><div class="output stream highlight-myst-ansi '
                      'notranslate"><div class="highlight"><pre><span></span>run folder /tmp/rql-book-runs-x8f2k1/'
                      'ch6-full-cpu</pre></div></div></div>',
    "wide cell": '<div class="cell_input docutils container"><div class="highlight-ipython3 notranslate">'
                 '<div class="highlight"><pre><span></span>results = {name: train(config, data, seeds, steps) '
                 'for name, config in sorted(configs.items(), key=lambda item: item[0]) if name not in done}  '
                 '# one line far wider than the column</pre></div></div></div>',
    "backtick": "<p>Results come from the <span>`bench`</span> records.</p>",
    "figure layout": '<div class="cell_output docutils container"><div class="output stderr highlight-myst-ansi '
                     'notranslate"><div class="highlight"><pre><span></span>figure layout check: \'Speed\': a legend '
                     "outside its axes</pre></div></div></div>",
    "live figure": None,  # filled in below: a live figure on a page without Vega
}
EXPECTED = {"temporary path": "a temporary path is printed", "wide cell": "wider than the content column",
            "backtick": "a literal backtick in prose", "figure layout": "a figure failed its layout check",
            "live figure": "the live figure rql-live-planted did not draw"}


# A small page laid out as the book's theme lays out a chapter: a content column of 672 px, code blocks that
# scroll sideways when their lines are too long. No build is needed, so this check of the check is cheap.
SMALL_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; font: 16px sans-serif; }}
article.bd-article {{ width: 672px; margin: 0 auto; }}
pre {{ overflow-x: auto; white-space: pre; }}
</style></head><body><main><article class="bd-article">
<h1>A clean page</h1><p>Prose with <code>code</code> in it, and a short cell:</p>
<div class="cell_input docutils container"><div class="highlight"><pre>x = 1 + 1</pre></div></div>
<div class="cell_output docutils container"><div class="output stream"><pre>2</pre></div></div>
{planted}
</article></main></body></html>"""


def test_the_check_finds_what_it_should(browser, tmp_path):
    """A small clean page passes; the same page with one defect of each kind planted into its column
    reports that defect and only it: the check can fail."""
    import numpy as np

    from rql_lite.teaching.live import live_flow_time

    def problems_of(name, planted):
        path = tmp_path / f"{name.replace(' ', '-')}.html"
        path.write_text(SMALL_PAGE.format(planted=planted))
        return page_problems(browser, f"file://{path}", wait_ms=3000)

    assert problems_of("clean", "") == []
    velocity = lambda x, t: -x  # noqa: E731  (any field will do: the figure must simply not draw here)
    planted = dict(PLANTED, **{"live figure": live_flow_time(velocity, np.zeros((3, 2), np.float32), ks=(1, 2),
                                                              default_k=2, name="planted").to_html()})
    for kind, snippet in planted.items():
        problems = problems_of(kind, snippet)
        assert any(EXPECTED[kind] in p for p in problems), (kind, problems)
        assert len(problems) == 1, (kind, problems)  # and only that one


def test_a_live_figure_draws_from_disk_with_the_books_bundle(browser, tmp_path):
    """The bundle as the book serves it (book/_ext/vega_offline.py: a classic script, not a module),
    loaded from disk by a page that holds one live figure: the figure must draw. Chromium refuses a
    module script from a file:// page, so this fails if the bundle goes back to being one."""
    import importlib.util
    import sys

    import numpy as np
    import vl_convert as vlc

    from rql_lite.teaching.live import live_flow_time

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location("vega_offline", os.path.join(root, "book", "_ext", "vega_offline.py"))
    vega_offline = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("vega_offline", vega_offline)
    spec.loader.exec_module(vega_offline)
    (tmp_path / "vega-bundle.js").write_text(vega_offline.classic_bundle(vlc.javascript_bundle()))
    figure = live_flow_time(lambda x, t: -x, np.zeros((3, 2), np.float32), ks=(1, 2), default_k=2, name="disk")
    page = SMALL_PAGE.replace("</style></head>", '</style><script src="vega-bundle.js"></script></head>')
    path = tmp_path / "page.html"
    path.write_text(page.format(planted=figure.to_html()))
    assert page_problems(browser, f"file://{path}", wait_ms=20_000) == []
