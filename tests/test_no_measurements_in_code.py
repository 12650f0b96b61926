"""Measured numbers go stale: they live in the bench records (results/bench/) and the pages that read
them, not in the package's comments, docstrings or messages ("4 vmapped runs at 0.80x", "measured
60-170 MB", "~0.2 s per run"). Bounds and settings ("at most 64", "16 MiB") are not measurements."""
import io
import os
import re
import tokenize

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rql_lite")

MEASUREMENT = re.compile("|".join([
    r"\b\d+\.\d+x\b",                                               # a ratio: 0.80x, 1.00x
    r"~\s*\d[\d.]*\s*x\b|\b\d+x (?:faster|slower)",                 # ~10x, 2x faster
    r"~\s*\d[\d.]*(?:\s*-\s*\d[\d.]*)?\s*(?:[kMG]i?B|%|ms|s|seconds?|minutes?|min)\b",  # ~0.55 GB, ~10%, ~0.2 s
    r"\b\d[\d.]*\s*-\s*\d[\d.]*\s*[kMG]i?B\b",                      # 60-170 MB
    r"\babout \d[\d.]*\s*[kMG]i?B\b",                               # about 75 MB
    r"\bmeasured\b[^.\n]*\d",                                       # measured ... 0.55
    r"\d[\d.]*\s*(?:ms|s) per\b",                                   # 0.2 s per run
]))


def texts(path):
    """``(line, text)`` of every comment and string literal of a Python file."""
    with open(path, encoding="utf-8") as f:
        for token in tokenize.generate_tokens(io.StringIO(f.read()).readline):
            if token.type in (tokenize.COMMENT, tokenize.STRING) or token.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
                yield token.start[0], token.string


def sources():
    return sorted(os.path.relpath(os.path.join(folder, name), PACKAGE)
                  for folder, _, names in os.walk(PACKAGE) for name in names if name.endswith(".py"))


def test_the_pattern_catches_what_it_should():
    for text in ("4 vmapped runs at 0.80x one run's", "measured 60-170 MB", "an update is ~0.2 s per run",
                 "(~0.55 GB measured)", "~10x faster than eager", "2 measured ~10% fewer", "about 75 MB"):
        assert MEASUREMENT.search(text), text
    for text in ("at most 64 envs", "under 16 MiB", "f'{ratio:.2f}x'", "4x512 value heads", "1M steps"):
        assert not MEASUREMENT.search(text), text


@pytest.mark.parametrize("name", sources())
def test_no_measured_number_in_the_package(name):
    found = [(line, MEASUREMENT.search(text).group(0)) for line, text in texts(os.path.join(PACKAGE, name))
             if MEASUREMENT.search(text)]
    assert not found, f"rql_lite/{name} quotes measurements (line, text): {found}; put them in a bench record"
