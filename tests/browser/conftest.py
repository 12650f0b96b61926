"""Fixtures of the browser tests (browser_support.py): the built book over HTTP and from disk, and Chromium."""
from browser_support import base_url, browser, file_url, http_url  # noqa: F401
