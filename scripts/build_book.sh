#!/usr/bin/env bash
# The main job: build the book, executing every chapter at full size (RQL_PROFILE=full).
# On a machine without a GPU, the OGBench chapter trains at a CPU-feasible size and shows
# the GPU-scale results from the run records under results/.
#
# Rebuilds execute only what changed. jupyter-cache (execute_notebooks: cache in _config.yml)
# keys a chapter on its code cells alone, so everything else the chapters read goes into one
# key: the profile, the library, pyproject.toml and the committed records under results/.
# A new key empties the cache (every chapter runs again); the key lives inside the cache
# folder, so a CI cache of _build/.jupyter_cache carries it along.
set -euo pipefail
cd "$(dirname "$0")/.."
# RQL_BOOK_BUILD: the chapters show no progress bars (they would land in the pages as widgets).
export RQL_PROFILE="${RQL_PROFILE:-full}" MUJOCO_GL="${MUJOCO_GL:-egl}" RQL_BOOK_BUILD=1
start=$(date +%s)

cache=_build/.jupyter_cache
# The key hashes every file of the library, pyproject.toml and results/ that git sees (tracked or
# new, not ignored), as it is on disk. Outside a git checkout the build stops here.
key=$(git ls-files -co --exclude-standard rql_lite pyproject.toml results | python -c '
import hashlib, os, sys
key = hashlib.sha256(os.environ["RQL_PROFILE"].encode())
for path in sorted(sys.stdin.read().splitlines()):
    key.update(path.encode() + (hashlib.sha256(open(path, "rb").read()).digest() if os.path.exists(path) else b"-"))
print(key.hexdigest()[:16])')
if [ "$(cat "$cache/rql-key" 2>/dev/null)" != "$key" ]; then
    echo "execution cache: new key $key (library, records or profile changed), every chapter runs"
    rm -rf "$cache" && mkdir -p "$cache" && echo "$key" > "$cache/rql-key"
fi

# Sphinx re-reads only the pages that changed, unless the last build failed or had another key
# (then all pages: a cleared cache must reach every page, and -W must see every warning).
fresh=--all
[ "$(cat _build/.built-key 2>/dev/null)" = "$key" ] && fresh=
rm -f _build/.built-key
rm -rf _build/html/reports  # myst-nb's reports of chapters that failed to execute: this build's only
if ! jupyter-book build . $fresh -W -n --keep-going; then
    # Name each chapter that failed to execute, its error and the cell (a cell that ran past the
    # execute timeout of _config.yml is a CellTimeoutError).
    python scripts/execution_failures.py _build/html/reports || true
    exit 1
fi
echo "$key" > _build/.built-key
echo "book built in $(( $(date +%s) - start )) s: _build/html/index.html"
