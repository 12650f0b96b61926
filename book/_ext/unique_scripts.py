"""Sphinx extension: drop repeated identical <script> entries from every page.

sphinx-thebe 0.3.1 registers its inline configuration script once per read phase, and
Sphinx 7 keeps both copies; the second ``const THEBE_JS_URL`` declaration is a
SyntaxError in every page's console. Identical entries are redundant by definition,
so keeping the first of each is safe whatever added them.
"""


def _unique_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # An inline script's filename is None in one copy and "" in the other: the same script.
        filename = getattr(script, "filename", script) or ""
        key = (str(filename), tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    # Late priority: run after the theme and extensions have added their scripts.
    app.connect("html-page-context", _unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
