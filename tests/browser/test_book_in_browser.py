"""The built book as a reader sees it, in headless Chromium.

Serves the built HTML (``RQL_BOOK_HTML``, default ``_build/html``; ``scripts/test.sh`` builds it
first) on localhost and loads every page of the table of contents. On each page: MathJax rendered
its math without errors, every image loaded, no error or stderr output is shown and the console
holds no error from the book's own files. The introduction, chapter 2 and chapter 7 must also
show a minimum of formulas and figures.

Uses Debian's ``chromium`` and ``chromium-driver`` through selenium (no browser download). Without
them the test is skipped, unless ``RQL_REQUIRE_BROWSER=1`` (CI sets it), which makes it fail instead.
"""
import functools
import http.server
import os
import shutil
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HTML_DIR = os.environ.get("RQL_BOOK_HTML", os.path.join(ROOT, "_build", "html"))
MINIMUMS = {
    "book/intro.html": dict(min_math=5, min_images=0),
    "notebooks/02_reversing_a_flow.html": dict(min_math=5, min_images=5),
    "notebooks/07_reproduction.html": dict(min_math=3, min_images=1),
}


def toc_pages():
    import re

    with open(os.path.join(ROOT, "_toc.yml")) as f:
        return [f"{name}.html" for name in re.findall(r"(?:root|file):\s*(\S+)", f.read())]


PAGES = {page: MINIMUMS.get(page, dict(min_math=0, min_images=0)) for page in toc_pages()}
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                "--window-size=1280,1600")


def _missing(reason):
    if os.environ.get("RQL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (RQL_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def base_url():
    if not os.path.isfile(os.path.join(HTML_DIR, "book", "intro.html")):
        _missing(f"no built book at {HTML_DIR}; run scripts/test.sh (or set RQL_BOOK_HTML)")
    handler = functools.partial(_QuietHandler, directory=HTML_DIR)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        _missing("Debian's chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) { done("MathJax did not load"); return; }
MathJax.startup.promise.then(() => done("ok")).catch((e) => done("MathJax failed: " + e));
"""

WAIT_FOR_IMAGES = """
const done = arguments[arguments.length - 1];
Promise.all(Array.from(document.images).map((img) => img.complete ? null :
    new Promise((r) => { img.onload = img.onerror = r; }))).then(() => done(
    Array.from(document.images).map((img) => [img.getAttribute("src"), img.complete, img.naturalWidth])));
"""


@pytest.mark.parametrize("page", list(PAGES))
def test_page_renders_math_images_and_no_errors(base_url, browser, page):
    expect = PAGES[page]
    browser.get(f"{base_url}/{page}")
    mathjax = browser.execute_async_script(WAIT_FOR_MATHJAX)
    if expect["min_math"] or mathjax != "MathJax did not load":  # Sphinx adds MathJax only where there is math
        assert mathjax == "ok", mathjax
        math = browser.execute_script("return document.querySelectorAll('mjx-container').length")
        assert math >= expect["min_math"], f"only {math} rendered formulas"
        assert browser.execute_script("return document.querySelectorAll('mjx-merror').length") == 0, "a formula failed"
        # The math came from the book itself, not from a CDN.
        sources = browser.execute_script("return Array.from(document.scripts).map((s) => s.src).filter((s) => s)")
        assert any(s.startswith(base_url) and "mathjax" in s for s in sources), sources

    if page.startswith("notebooks/"):  # a chapter opens in Colab from its own page
        colab = browser.execute_script(
            "return Array.from(document.querySelectorAll('a')).map((a) => a.href)"
            ".filter((h) => h.startsWith('https://colab.research.google.com/github/'))")
        assert any(h.endswith(page.replace(".html", ".ipynb")) for h in colab), "no Colab launch button"

    images = browser.execute_async_script(WAIT_FOR_IMAGES)
    figures = [src for src, _, _ in images if src and "_images/" in src]
    assert len(figures) >= expect["min_images"], f"{len(figures)} figures on the page"
    broken = [src for src, complete, width in images if not (complete and width > 0)]
    assert not broken, f"images that did not load: {broken}"

    errors = browser.execute_script(
        "return Array.from(document.querySelectorAll('.output.traceback, .output.error, .output.stderr'))"
        ".map((e) => e.innerText.slice(0, 200))")
    assert not errors, f"error or stderr output on the page: {errors}"
    body = browser.execute_script("return document.body.innerText")
    assert "Traceback (most recent call last)" not in body
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE" and base_url in e["message"]]
    assert not severe, f"console errors from the book's own files: {severe}"
