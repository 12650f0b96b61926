#!/usr/bin/env bash
# The main job: build the book, executing every chapter at full size (RQL_PROFILE=full).
# On a machine without a GPU, the OGBench chapter trains at a CPU-feasible size and shows
# the GPU-scale results from the run records under results/.
set -euo pipefail
cd "$(dirname "$0")/.."
export RQL_PROFILE="${RQL_PROFILE:-full}" MUJOCO_GL="${MUJOCO_GL:-egl}"
start=$(date +%s)
jupyter-book build . --all -W -n --keep-going
echo "book built in $(( $(date +%s) - start )) s: _build/html/index.html"
