"""Shared by the browser tests (their fixtures are registered in conftest.py): the built book (``RQL_BOOK_HTML``, default ``_build/html``), served on
localhost and opened from disk, and one headless Chromium with no network but the local server.

Uses Debian's ``chromium`` and ``chromium-driver`` through selenium (no browser download). Without
them the tests are skipped, unless ``RQL_REQUIRE_BROWSER=1`` (CI sets it), which makes them fail instead.
"""
import functools
import http.server
import os
import shutil
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HTML_DIR = os.environ.get("RQL_BOOK_HTML", os.path.join(ROOT, "_build", "html"))
def toc_pages():
    import re

    with open(os.path.join(ROOT, "_toc.yml")) as f:
        return [f"{name}.html" for name in re.findall(r"(?:root|file):\s*(\S+)", f.read())]


CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                "--window-size=1280,1600")
# No network but the local server: every other request goes to a proxy on the discard port, where nothing
# listens (loopback addresses bypass a proxy in Chromium), and no host name resolves. The book must work
# offline; test_the_network_is_blocked checks that this really blocks.
OFFLINE_FLAGS = ("--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")


def _missing(reason):
    if os.environ.get("RQL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (RQL_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


def _need_book():
    if not os.path.isfile(os.path.join(HTML_DIR, "book", "intro.html")):
        _missing(f"no built book at {HTML_DIR}; run scripts/test.sh (or set RQL_BOOK_HTML)")


@pytest.fixture(scope="session")
def http_url():
    """The book served over HTTP on localhost."""
    _need_book()
    handler = functools.partial(_QuietHandler, directory=HTML_DIR)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def file_url():
    """The book opened from disk, as the README tells a reader to (``file://``, origin ``null``)."""
    _need_book()
    return "file://" + os.path.abspath(HTML_DIR)


@pytest.fixture(params=["http", "file"])
def base_url(request):
    """Each test that takes it runs twice: over HTTP and from disk."""
    return request.getfixturevalue(f"{request.param}_url")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        _missing("Debian's chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS + OFFLINE_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


