"""Sphinx extension: Vega, Vega-Lite and Vega-Embed served from the book's own ``_static/``.

The live figures of chapters 1-3 (``rql_lite.teaching.live``) are Vega-Lite charts embedded
with ``vegaEmbed``. The scripts come from the ``vl-convert-python`` wheel (PyPI), which
ships the three libraries and bundles them into one file with
``vl_convert.javascript_bundle()``; its version, pinned in pyproject.toml, pins theirs. At
build time the bundle and the licences are written to ``_static/vega/`` of the output, and
only the pages that hold a live figure load it. Nothing comes from a CDN.

The bundle is served as a *classic* script, not an ES module: a page opened from disk
(``file://``, as the README suggests) has the origin ``null``, and Chromium refuses module
scripts from it (CORS), while classic scripts load from disk and over HTTP alike. The bundle has
no ``import`` or ``export`` of its own (its default snippet assigns ``window.vegaEmbed``,
``window.vega`` and ``window.vegaLite``), so it runs unchanged inside a function, which keeps its
top-level names out of the page's global scope, in strict mode as a module would run.
"""
import os

BUNDLE = "vega/vega-bundle.js"
MARKER = 'class="rql-live"'

# The bundle holds Vega, Vega-Lite and Vega-Embed (BSD-3-Clause, University of Washington
# Interactive Data Lab) and the modules they import (d3 modules and others, ISC/BSD/MIT);
# vl-convert itself is BSD-3-Clause (Jon Mease).
NOTICE = """Vega {vega}, Vega-Lite {vegalite} and Vega-Embed {embed}, bundled by vl-convert-python {vlc}
(vl_convert.javascript_bundle), as served by this book in _static/{bundle}.

Vega, Vega-Lite and Vega-Embed: Copyright (c) 2015-2025, University of Washington Interactive
Data Lab. All rights reserved. Licensed under the BSD 3-Clause License (text below).
The bundle also contains modules of D3 (ISC License, Copyright 2010-2023 Mike Bostock) and other
small dependencies of Vega under the ISC, BSD or MIT licences, as listed in each package's
metadata on the npm registry.

vl-convert: Copyright 2023 Jon Mease, BSD 3-Clause License.

BSD 3-Clause License

Redistribution and use in source and binary forms, with or without modification, are permitted
provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this list of conditions
   and the following disclaimer.
2. Redistributions in binary form must reproduce the above copyright notice, this list of
   conditions and the following disclaimer in the documentation and/or other materials provided
   with the distribution.
3. Neither the name of the copyright holder nor the names of its contributors may be used to
   endorse or promote products derived from this software without specific prior written
   permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR
IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND
FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR
CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE,
DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER
IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT
OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.

ISC License (D3 modules)

Permission to use, copy, modify, and/or distribute this software for any purpose with or without
fee is hereby granted, provided that the above copyright notice and this permission notice appear
in all copies.

THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES WITH REGARD TO THIS
SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE
AUTHOR BE LIABLE FOR ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN ACTION OF CONTRACT,
NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF OR IN CONNECTION WITH THE USE OR PERFORMANCE OF
THIS SOFTWARE.
"""


def classic_bundle(bundle: str) -> str:
    """vl_convert's bundle as a classic script: wrapped in a function, in strict mode. Refuses a bundle
    with module imports or exports, which a classic script cannot hold."""
    if any(line.lstrip().startswith(("import ", "export ")) for line in bundle.splitlines()):
        raise RuntimeError("vl_convert's bundle has module imports or exports: it cannot be served as a classic "
                           "script, which a page opened from disk needs")
    return '(function () {\n"use strict";\n' + bundle + "\n})();\n"


def _write_bundle(app):
    if app.builder.format != "html":
        return
    from importlib.metadata import version

    import vl_convert as vlc

    folder = os.path.join(app.outdir, "_static", "vega")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vega-bundle.js"), "w") as f:
        f.write(classic_bundle(vlc.javascript_bundle()))
    with open(os.path.join(folder, "LICENSES.txt"), "w") as f:
        f.write(NOTICE.format(vega=vlc.get_vega_version(), vegalite=vlc.get_vegalite_versions()[-1],
                              embed=vlc.get_vega_embed_version(), vlc=version("vl-convert-python"), bundle=BUNDLE))


def _add_to_pages_with_live_figures(app, pagename, templatename, context, doctree):
    if MARKER in context.get("body", ""):
        # A classic script in the page's head: it runs before the body is parsed, so window.vegaEmbed
        # exists when each figure's own inline script runs (from disk and over HTTP alike).
        app.add_js_file(BUNDLE)


def setup(app):
    app.connect("builder-inited", _write_bundle)
    app.connect("html-page-context", _add_to_pages_with_live_figures)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
