"""Sphinx extension: code cells and their outputs wrap at the content column's edge.

A long line of code or of printed output otherwise makes its block scroll sideways, and a reader
misses what lies to the right. Wrapped lines keep their indentation's meaning readable because the
wrap happens only where a line is longer than the column. tests/browser/test_book_hygiene.py checks
every page for a block wider than its column.
"""
import os

CSS = """/* rql-book: wrap code and outputs at the column's edge instead of scrolling sideways. */
.highlight pre, div.cell_output pre, div.output pre, pre.literal-block {
  white-space: pre-wrap;
  overflow-wrap: anywhere;
}
"""
NAME = "rql-wrap.css"


def _write_css(app):
    if app.builder.format != "html":
        return
    folder = os.path.join(app.outdir, "_static")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, NAME), "w") as f:
        f.write(CSS)


def setup(app):
    app.connect("builder-inited", _write_css)
    app.add_css_file(NAME)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
