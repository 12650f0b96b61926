#!/usr/bin/env bash
# The horizon study's runs (section 6.1), one after another, each resumed where it stopped; a run whose records
# are all finished is skipped. Usage:
#   bash scripts/horizon_study.sh [--list] [--max-minutes M]
# --list prints each run and whether it is done; --max-minutes ends every run cleanly after M minutes (a
# segment: run the script again to continue). On a machine of two cores, pin a second copy of a run with
# `taskset` rather than start two unpinned. The records land under results/ and are committed as they finish.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE="--steps 40000 --dataset generated --profile full --eval-every 5000 --eval-episodes 30 --save-every 5000
      --episode-length 1000 --data-dir ~/.rql_lite/datasets"
NETS="num_values=2 policy_hidden=256,256,256 value_hidden=256,256,256"
SCENE="--task scene-play-singletask-task1-v0"
MAZE_SIZE="--steps 20000 --dataset generated --profile full --eval-every 5000 --eval-episodes 20 --save-every 5000"
MAZE_PILOT="--tasks pointmaze-medium-navigate-singletask-task3-v0 pointmaze-medium-navigate-singletask-task1-v0 --seeds 0"

# OUT | train arguments (the --set list last). Scene at 4 seeds first, then the K-sweep, then the maze pilots.
RUNS=(
  "results/ogbench-cpu/scene-task1/rql-seeds23|--agent rql --seeds 2 3 $SCENE $SIZE --set $NETS"
  "results/ogbench-cpu/scene-task1/tfql-seeds23|--agent tfql --seeds 2 3 $SCENE $SIZE --set $NETS"
  "results/ogbench-cpu/scene-task1/ifql-seeds23|--agent ifql --seeds 2 3 $SCENE $SIZE --set $NETS"
  "results/horizon/scene-ksweep/tfql-K1|--agent tfql --seeds 0 1 $SCENE $SIZE --set $NETS flow_steps=1"
  "results/horizon/scene-ksweep/rql-K1|--agent rql --seeds 0 1 $SCENE $SIZE --set $NETS flow_steps=1"
  "results/horizon/scene-ksweep/tfql-K1-seed2|--agent tfql --seeds 2 $SCENE $SIZE --set $NETS flow_steps=1"
  "results/horizon/scene-ksweep/rql-K1-seed2|--agent rql --seeds 2 $SCENE $SIZE --set $NETS flow_steps=1"
  "results/horizon/scene-ksweep/tfql-K3|--agent tfql --seeds 0 1 2 $SCENE $SIZE --set $NETS flow_steps=3"
  "results/horizon/scene-ksweep/rql-K3|--agent rql --seeds 0 1 2 $SCENE $SIZE --set $NETS flow_steps=3"
  "results/horizon/scene-ksweep/tfql-K30|--agent tfql --seeds 0 1 2 $SCENE $SIZE --set $NETS flow_steps=30"
  "results/horizon/scene-ksweep/rql-K30|--agent rql --seeds 0 1 2 $SCENE $SIZE --set $NETS flow_steps=30"
  "results/horizon/pointmaze-pilot/medium-rql-h1-alpha0.1|$MAZE_PILOT --agent rql $MAZE_SIZE --set $NETS"
  "results/horizon/pointmaze-pilot/medium-rql-h1-alpha1|$MAZE_PILOT --agent rql $MAZE_SIZE --set $NETS alpha=1"
  "results/horizon/pointmaze-pilot/medium-rql-h5-alpha0.1|$MAZE_PILOT --agent rql $MAZE_SIZE --set $NETS horizon=5"
)

list=0; extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --list) list=1; shift ;;
    --max-minutes) extra=(--max-minutes "$2"); shift 2 ;;
    *) echo "unknown argument $1 (expected --list or --max-minutes M)" >&2; exit 2 ;;
  esac
done

done_run() {  # every record of the run directory finished
  local out=$1
  [ -f "$out/run.json" ] || return 1
  python - "$out" <<'EOF'
import glob, json, sys
paths = glob.glob(f"{sys.argv[1]}/records/**/seed*.json", recursive=True)
sys.exit(0 if paths and all(json.load(open(p))["finished"] for p in paths) else 1)
EOF
}

for entry in "${RUNS[@]}"; do
  out=${entry%%|*}; args=${entry#*|}
  if done_run "$out"; then
    [ $list -eq 1 ] && echo "done     $out"
    continue
  fi
  if [ $list -eq 1 ]; then echo "to run   $out"; continue; fi
  resume=(); [ -f "$out/run.json" ] && resume=(--resume)
  # shellcheck disable=SC2086  # the arguments are words on purpose
  python -m rql_lite train $args --out "$out" "${resume[@]}" "${extra[@]}" --no-progress
done
