#!/usr/bin/env bash
# The test command:
#   1. unit and property tests (pytest, CPU), one worker per core (pytest-xdist);
#   2. every page of the book that is a notebook, executed at smoke size under nbmake, one per core;
#   3. the book built from those executed notebooks, warnings as errors;
#   4. the built book in headless Chromium (skipped without Debian's chromium and
#      chromium-driver, unless RQL_REQUIRE_BROWSER=1, as CI sets it).
# Notebooks run from a scratch copy, so the committed sources stay free of outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
# RQL_BOOK_BUILD: the chapters show no progress bars (they would land in the pages as widgets).
export RQL_PROFILE=smoke JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}" MUJOCO_GL="${MUJOCO_GL:-egl}" PYTHONHASHSEED=0 RQL_BOOK_BUILD=1

start=$(date +%s)
python -m pytest tests -q --ignore=tests/browser -n auto --dist worksteal
echo "unit tests: $(( $(date +%s) - start )) s on $(nproc) CPU cores"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r _config.yml _toc.yml book notebooks "$work/"

start=$(date +%s)
# A cell that runs past 5 minutes fails its notebook (named, with the cell) instead of stalling the run.
python -m pytest --nbmake --nbmake-timeout=300 --overwrite -p no:cacheprovider -q --durations=0 -n auto --dist worksteal \
    "$work/notebooks" "$work/book"
echo "smoke notebook suite: $(( $(date +%s) - start )) s on $(nproc) CPU cores"

# The book from the executed notebooks: execution off, warnings are errors.
sed 's/execute_notebooks: *[a-z]*/execute_notebooks: "off"/' _config.yml > "$work/_config.yml"
jupyter-book build "$work" -W -n --keep-going
# Into _build, beside the main job's execution cache (_build/.jupyter_cache), which stays.
mkdir -p _build && find _build -mindepth 1 -maxdepth 1 ! -name .jupyter_cache -exec rm -rf {} +
cp -r "$work/_build/." _build/
echo "book built: _build/html/index.html"

RQL_BOOK_HTML=_build/html python -m pytest tests/browser -q
