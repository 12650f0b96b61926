#!/usr/bin/env bash
# gpu_node.sh: train on a fresh, offline GPU node with one command, and leave small files to bring back.
#
# For short GPU allocations: a cluster job with a time limit on a compute node without internet, or a
# rented machine that is gone afterwards (one GPU, ~16 cores, a CUDA-enabled JAX already installed, no
# internet, <= 10 minutes per command, a few files of < 16 MiB brought back). Given this checkout, it
#   1. installs the remaining dependencies offline from a wheelhouse (pip --no-index), with the
#      installed jax, jaxlib and jax-cuda* versions pinned so that pip cannot replace the CUDA JAX;
#   2. generates the dataset with every core (python -m rql_lite generate --workers $(nproc)), into the
#      folder that `train --dataset generated` reads;
#   3. runs the benchmark (python -m rql_lite bench), its JSON into --out;
#   4. trains the tasks x seeds of each agent (rql, tfql: one run directory each, under --work) in
#      segments: one `train --max-minutes N` process per segment, each like a cluster job, resumed with
#      --resume until every record says "finished": true, or until --total-minutes would be exceeded
#      (then the runs stay resumable: run the same command again);
#   5. copies each run's run.json and records/ into --out, exports one (agent, task, seed)'s EMA policy
#      (export --policy-only) and films one rollout of it (mp4), checks that every file in --out is
#      under 16 MiB, and prints a summary (also --out/summary.json; the whole log is --out/gpu_node.log).
# Run it again with the same arguments and it continues (finished runs train no more).
#
# rql_lite itself runs from this checkout (PYTHONPATH), not installed: `pip install -e .` would need the
# build backend (setuptools >= 77) offline too, and would write into the checkout; PYTHONPATH needs nothing.
#
# The wheelhouse, made on a machine with internet (same Python version as the node; Linux x86_64):
#   bash scripts/gpu_node.sh --print-download-command --node-python 3.11 --node-glibc 2.35 \
#       --node-jax 0.6.2 --wheelhouse wheelhouse
# prints the command; for that node it is
#   python3 -m pip download --dest wheelhouse --only-binary=:all: --python-version 3.11 \
#       --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 ... --platform manylinux_2_35_x86_64 \
#       'jax>=0.4.27' 'flax>=0.10' ... 'imageio-ffmpeg>=0.5' 'jax==0.6.2'
# with one --platform per glibc 2.17 ... 2.35 (pip does not widen manylinux_2_X tags by itself) and the
# requirements of pyproject.toml ([project].dependencies and the ogbench extra; --print-requirements prints
# them). --node-jax pins the node's jax, so that the flax and optax chosen work with it (the jax and jaxlib
# wheels it adds to the wheelhouse are never installed over the node's: they are pinned there).
#
# Example, the paper's cube-double tasks, both agents, 4 seeds, in commands of at most 10 minutes:
#   bash scripts/gpu_node.sh --wheelhouse wheelhouse --out out --work runs/gpu-node --archive --total-minutes 7 \
#       --tasks cube-double-play-singletask-task{1,2,3,4,5}-v0 --seeds 0 1 2 3 --agents rql tfql
# and the same command again, until the summary says that every run is finished (--total-minutes 7 leaves
# time for the export and video within 10 minutes; --archive makes --out six files).
# CPU check at smoke size: add --profile smoke (see --help).
set -euo pipefail

SCRIPT_NAME=scripts/gpu_node.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MAX_FILE_BYTES=$((16 * 1024 * 1024))
MAX_FILES=8
ORIGINAL_ARGS=("$@")

usage() {
  cat <<EOF
usage: bash $SCRIPT_NAME --out DIR --tasks TASK [TASK ...] (--wheelhouse DIR | --skip-install) [options]
       bash $SCRIPT_NAME --print-requirements
       bash $SCRIPT_NAME --print-download-command [--node-python 3.X] [--node-glibc 2.N] [--node-jax V] [--wheelhouse DIR]

Train RQL/TFQL on an offline GPU node in one command: offline install, dataset generation with every
core, benchmark, training in resumable segments, and a small --out folder to bring back (records, bench
JSON, one EMA policy, one rollout video, summary.json, gpu_node.log; every file under 16 MiB).
Running the same command again continues where the last one stopped.

required:
  --out DIR               what to bring back (created); checkpoints never go here
  --tasks TASK [TASK ...] one or several tasks of one manipulation domain, trained in one program,
                          e.g. cube-double-play-singletask-task{1,2,3,4,5}-v0
  --wheelhouse DIR        wheels for the offline install (see --print-download-command), or
  --skip-install          when every dependency is already installed

training (passed to python -m rql_lite train):
  --agents A [A ...]      rql and/or tfql (default: rql); one run directory each, trained one after the other
  --seeds S [S ...]       default: 0
  --profile full|smoke    full: the paper's networks and 1M steps (default); smoke: the CPU check
  --steps, --eval-every, --eval-episodes, --save-every, --dataset-episodes, --episode-length,
  --max-eval-steps N      as in train (default: the profile's)
  --set NAME=VALUE ...    hyperparameter overrides, e.g. --set policy_hidden=16 batch_size=16
  --segment-minutes M     each train process ends cleanly before M minutes (default: 9); fractions allowed
  --total-minutes M       start no segment that could end later than M minutes after this command started
                          (the last one is shortened to fit); afterwards the export and video take a minute
                          or two more. Default: no limit

places:
  --work DIR              run directories (checkpoints), logs of the install, JAX's compilation cache
                          (default: gpu-node-work beside --out); not brought back
  --data-dir DIR          dataset cache, as train's --data-dir (default: ~/.rql_lite/datasets)
  --python PY             the Python with the CUDA JAX (default: python3)
  --workers N             processes generating the dataset (default: nproc = $(nproc))

output:
  --bench-args "ARGS"     arguments for python -m rql_lite bench, one string (default: full "--configs paper
                          --min-seconds 5", with bench's runs sweep where it has one; smoke "--configs smoke
                          --seeds 1 --min-seconds 1 --runs", i.e. no sweep)
  --no-bench              skip the benchmark (a bench JSON already in --out is kept and not re-measured)
  --video-agent A, --video-task T, --video-seed S
                          the run whose EMA policy is exported and filmed (default: the first of each)
  --archive               pack --out/runs/ into --out/runs.tar.gz (fewer files to bring back)

the wheelhouse (on a machine with internet):
  --print-requirements    print the runtime requirements read from pyproject.toml (one per line) and exit
  --print-download-command
                          print the pip download command that makes the wheelhouse, and exit; with
                          --node-python 3.X (default: this python3's), --node-glibc 2.N (the node's
                          \`ldd --version\`, default 2.28), --node-jax V (the node's jax version: pins flax
                          and optax to ones that work with it; recommended), --wheelhouse DIR (default: wheelhouse)

environment: JAX_PLATFORMS is left alone (set it to cpu for a CPU check); MUJOCO_GL defaults to egl;
JAX_COMPILATION_CACHE_DIR defaults to WORK/jax-cache (segments after the first compile faster); pip reads
its PIP_* variables (e.g. PIP_BREAK_SYSTEM_PACKAGES=1 for a system Python).
Exit status: 0 when done or stopped by --total-minutes (summary.json says which); 2 for a bad option
(nothing is created; the checks only train itself can make, e.g. of --set names, run right after the
install, before any data is generated or any training starts); 1 when a step fails (the message names it).
EOF
}

die_usage() {  # one line, nothing created
  echo "error: $*" >&2
  exit 2
}

# ------------------------------------------------------------------ arguments
OUT="" WORK="" WHEELHOUSE="" SKIP_INSTALL=0 PROFILE=full PY=python3 DATA_DIR="" WORKERS=$(nproc)
SEGMENT_MINUTES=9 TOTAL_MINUTES="" NO_BENCH=0 BENCH_ARGS="" BENCH_ARGS_SET=0 ARCHIVE=0
VIDEO_AGENT="" VIDEO_TASK="" VIDEO_SEED="" MODE=run NODE_PYTHON="" NODE_GLIBC=2.28 NODE_JAX=""
TASKS=() AGENTS=() SEEDS=() SETS=()
declare -A PASS=()  # train options passed through: name -> value
PASS_NAMES=(steps eval-every eval-episodes save-every dataset-episodes episode-length max-eval-steps)

need_value() {  # need_value OPTION NEXT...
  [[ $# -ge 2 && -n "$2" && "$2" != --* ]] || die_usage "$1 needs a value (see: bash $SCRIPT_NAME --help)"
}

while [[ $# -gt 0 ]]; do
  arg=$1
  if [[ $arg == --*=* ]]; then  # --name=value
    set -- "${arg%%=*}" "${arg#*=}" "${@:2}"
    arg=$1
  fi
  case $arg in
    -h|--help) usage; exit 0 ;;
    --print-requirements) MODE=requirements; shift ;;
    --print-download-command) MODE=download; shift ;;
    --out) need_value "$@"; OUT=$2; shift 2 ;;
    --work) need_value "$@"; WORK=$2; shift 2 ;;
    --wheelhouse) need_value "$@"; WHEELHOUSE=$2; shift 2 ;;
    --skip-install) SKIP_INSTALL=1; shift ;;
    --profile) need_value "$@"; PROFILE=$2; shift 2 ;;
    --python) need_value "$@"; PY=$2; shift 2 ;;
    --data-dir) need_value "$@"; DATA_DIR=$2; shift 2 ;;
    --workers) need_value "$@"; WORKERS=$2; shift 2 ;;
    --segment-minutes) need_value "$@"; SEGMENT_MINUTES=$2; shift 2 ;;
    --total-minutes) need_value "$@"; TOTAL_MINUTES=$2; shift 2 ;;
    --no-bench) NO_BENCH=1; shift ;;
    --bench-args) [[ $# -ge 2 ]] || die_usage "--bench-args needs a value (one quoted string)"
                  BENCH_ARGS=$2; BENCH_ARGS_SET=1; shift 2 ;;
    --archive) ARCHIVE=1; shift ;;
    --video-agent) need_value "$@"; VIDEO_AGENT=$2; shift 2 ;;
    --video-task) need_value "$@"; VIDEO_TASK=$2; shift 2 ;;
    --video-seed) need_value "$@"; VIDEO_SEED=$2; shift 2 ;;
    --node-python) need_value "$@"; NODE_PYTHON=$2; shift 2 ;;
    --node-glibc) need_value "$@"; NODE_GLIBC=$2; shift 2 ;;
    --node-jax) need_value "$@"; NODE_JAX=$2; shift 2 ;;
    --tasks|--agents|--seeds|--set)  # one or more values, as separate words or one quoted string
      name=$1; shift; values=()
      while [[ $# -gt 0 && $1 != --* ]]; do read -ra words <<< "$1"; values+=("${words[@]}"); shift; done
      [[ ${#values[@]} -gt 0 ]] || die_usage "$name needs at least one value (see: bash $SCRIPT_NAME --help)"
      case $name in
        --tasks) TASKS+=("${values[@]}") ;; --agents) AGENTS+=("${values[@]}") ;;
        --seeds) SEEDS+=("${values[@]}") ;; --set) SETS+=("${values[@]}") ;;
      esac ;;
    --*)
      name=${1#--}
      if [[ " ${PASS_NAMES[*]} " == *" $name "* ]]; then
        need_value "$@"; PASS[$name]=$2; shift 2
      else
        die_usage "unknown option $1 (see: bash $SCRIPT_NAME --help)"
      fi ;;
    *) die_usage "unexpected argument '$1'; options start with -- (see: bash $SCRIPT_NAME --help)" ;;
  esac
done

command -v "$PY" > /dev/null 2>&1 || die_usage "--python $PY: no such program; give the Python that has the CUDA JAX"

# The runtime requirements: [project].dependencies plus the ogbench extra of pyproject.toml.
requirements() {
  "$PY" - "$REPO/pyproject.toml" <<'PYEOF'
import sys
try:
    import tomllib
except ModuleNotFoundError:
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        sys.exit("error: reading pyproject.toml needs Python >= 3.11 (tomllib) or the tomli package; "
                 "pass --python with a newer Python")
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
for requirement in [*project["dependencies"], *project["optional-dependencies"]["ogbench"]]:
    if not requirement.replace("-", "_").startswith("rql_lite"):
        print(requirement)
PYEOF
}

if [[ $MODE == requirements ]]; then
  requirements
  exit 0
fi
if [[ $MODE == download ]]; then
  [[ -n $NODE_PYTHON ]] || NODE_PYTHON=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [[ $NODE_PYTHON =~ ^3\.[0-9]+$ ]] || die_usage "--node-python $NODE_PYTHON: give the node's Python as 3.X, e.g. 3.11"
  [[ $NODE_GLIBC =~ ^2\.([0-9]+)$ ]] || die_usage "--node-glibc $NODE_GLIBC: give the node's glibc as 2.N (ldd --version), e.g. 2.35"
  minor=${BASH_REMATCH[1]}
  (( minor >= 17 )) || die_usage "--node-glibc $NODE_GLIBC: JAX needs glibc 2.17 or newer"
  [[ -z $NODE_JAX || $NODE_JAX =~ ^[0-9]+(\.[0-9]+)*$ ]] || die_usage "--node-jax $NODE_JAX: give a version like 0.6.2 (the node's pip show jax)"
  reqs=$(requirements)
  line="$PY -m pip download --dest ${WHEELHOUSE:-wheelhouse} --only-binary=:all: --python-version $NODE_PYTHON"
  line+=" --platform manylinux2014_x86_64"
  for ((i = 17; i <= minor; i++)); do line+=" --platform manylinux_2_${i}_x86_64"; done
  while read -r requirement; do line+=" '$requirement'"; done <<< "$reqs"
  if [[ -n $NODE_JAX ]]; then
    line+=" 'jax==$NODE_JAX'"
  else
    echo "# pass --node-jax with the node's jax version to pin flax and optax to ones that fit it" >&2
  fi
  echo "$line"
  exit 0
fi

# ------------------------------------------------------------------ validation: before anything runs
[[ -n $OUT ]] || die_usage "--out DIR is required: the folder to bring back (see: bash $SCRIPT_NAME --help)"
[[ ${#TASKS[@]} -gt 0 ]] || die_usage "--tasks is required, e.g. --tasks cube-double-play-singletask-task2-v0"
if [[ $SKIP_INSTALL == 0 ]]; then
  [[ -n $WHEELHOUSE ]] || die_usage "--wheelhouse DIR is required (or --skip-install when every dependency is installed)"
  [[ -d $WHEELHOUSE ]] || die_usage "--wheelhouse $WHEELHOUSE is not a directory; make it with --print-download-command"
elif [[ -n $WHEELHOUSE ]]; then
  die_usage "--wheelhouse and --skip-install exclude each other; drop one"
fi
[[ $PROFILE == full || $PROFILE == smoke ]] || die_usage "--profile $PROFILE: choose full or smoke"
[[ ${#AGENTS[@]} -gt 0 ]] || AGENTS=(rql)
[[ ${#SEEDS[@]} -gt 0 ]] || SEEDS=(0)
declare -A seen=()
for agent in "${AGENTS[@]}"; do
  [[ $agent == rql || $agent == tfql ]] || die_usage "--agents $agent: choose rql and/or tfql"
  [[ -z ${seen[agent:$agent]:-} ]] || die_usage "--agents $agent is given twice; give each agent once"
  seen[agent:$agent]=1
done
for seed in "${SEEDS[@]}"; do
  [[ $seed =~ ^[0-9]+$ ]] || die_usage "--seeds $seed: seeds are integers >= 0, e.g. --seeds 0 1 2 3"
  [[ -z ${seen[seed:$seed]:-} ]] || die_usage "--seeds $seed is given twice; give each seed once"
  seen[seed:$seed]=1
done
TASK_PATTERN='^((cube-(single|double|triple|quadruple)|scene|puzzle-(3x3|4x4))-play)-singletask-task[1-5]-v0$'
DATASET=""
for task in "${TASKS[@]}"; do
  [[ $task =~ $TASK_PATTERN ]] || die_usage "--tasks $task: not a task whose dataset can be generated offline; tasks look like cube-double-play-singletask-task2-v0 (cube-single/double/triple/quadruple, scene, puzzle-3x3/4x4; task1 to task5)"
  dataset="${BASH_REMATCH[1]}-v0"
  [[ -z $DATASET || $dataset == "$DATASET" ]] || die_usage "--tasks: $task is not of the domain of ${TASKS[0]}; give tasks of one domain (run the script once per domain)"
  [[ -z ${seen[task:$task]:-} ]] || die_usage "--tasks $task is given twice; give each task once"
  seen[task:$task]=1
  DATASET=$dataset
done
is_count() { [[ $1 =~ ^[0-9]+$ ]] && (( 10#$1 >= $2 )); }
for name in "${!PASS[@]}"; do
  minimum=1; if [[ $name == eval-episodes ]]; then minimum=0; fi
  is_count "${PASS[$name]}" "$minimum" || die_usage "--$name ${PASS[$name]}: must be an integer >= $minimum"
done
is_count "$WORKERS" 1 || die_usage "--workers $WORKERS: must be an integer >= 1 (default: nproc)"
is_minutes() { [[ $1 =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)$ ]] && awk -v m="$1" 'BEGIN { exit !(m > 0) }'; }
is_minutes "$SEGMENT_MINUTES" || die_usage "--segment-minutes $SEGMENT_MINUTES: must be a number of minutes > 0, e.g. 9 or 0.5"
[[ -z $TOTAL_MINUTES ]] || is_minutes "$TOTAL_MINUTES" || die_usage "--total-minutes $TOTAL_MINUTES: must be a number of minutes > 0, e.g. 7"
for pair in "${SETS[@]}"; do
  [[ $pair =~ ^[a-z_]+=[^=[:space:]]+$ ]] || die_usage "--set $pair: give NAME=VALUE pairs, e.g. --set alpha=3 policy_hidden=256,256"
done
VIDEO_AGENT=${VIDEO_AGENT:-${AGENTS[0]}} VIDEO_TASK=${VIDEO_TASK:-${TASKS[0]}} VIDEO_SEED=${VIDEO_SEED:-${SEEDS[0]}}
[[ " ${AGENTS[*]} " == *" $VIDEO_AGENT "* ]] || die_usage "--video-agent $VIDEO_AGENT is not in --agents (${AGENTS[*]})"
[[ " ${TASKS[*]} " == *" $VIDEO_TASK "* ]] || die_usage "--video-task $VIDEO_TASK is not in --tasks"
[[ " ${SEEDS[*]} " == *" $VIDEO_SEED "* ]] || die_usage "--video-seed $VIDEO_SEED is not in --seeds (${SEEDS[*]})"
if [[ $BENCH_ARGS_SET == 1 ]]; then
  [[ " $BENCH_ARGS " != *" --out "* && $BENCH_ARGS != *--out=* ]] || die_usage "--bench-args: leave out --out (the bench JSON goes into --out)"
elif [[ $PROFILE == full ]]; then
  BENCH_ARGS="--configs paper --min-seconds 5"
else
  BENCH_ARGS="--configs smoke --seeds 1 --min-seconds 1"  # + --runs (no sweep) where bench has the R sweep
fi
read -ra BENCH_WORDS <<< "$BENCH_ARGS"

OUT=$(realpath -m "$OUT")
WORK=$(realpath -m "${WORK:-$(dirname "$OUT")/gpu-node-work}")
[[ ! -e $OUT || -d $OUT ]] || die_usage "--out $OUT is a file; give a folder"
[[ ! -e $WORK || -d $WORK ]] || die_usage "--work $WORK is a file; give a folder"
[[ $WORK != "$OUT" && $WORK != "$OUT"/* ]] || die_usage "--work $WORK is inside --out; checkpoints must stay out of what is brought back (e.g. --work $(dirname "$OUT")/gpu-node-work)"
[[ -z $WHEELHOUSE ]] || WHEELHOUSE=$(realpath -m "$WHEELHOUSE")
[[ -z $DATA_DIR ]] || DATA_DIR=$(realpath -m "$DATA_DIR")
for dir in "$OUT" "$WORK"; do  # the nearest existing parent must be writable
  parent=$dir; while [[ ! -e $parent ]]; do parent=$(dirname "$parent"); done
  [[ -w $parent ]] || die_usage "cannot write $dir ($parent is not writable); choose another folder"
done

# ------------------------------------------------------------------ from here on, things happen
START=$(date +%s)
mkdir -p "$OUT" "$WORK"
LOG=$OUT/gpu_node.log
exec > >(trap '' TERM INT; exec tee -a "$LOG") 2>&1  # tee outlives a signal to the group, to log its end
say() { echo "[gpu_node +$(( $(date +%s) - START ))s] $*"; }
STEP=setup
on_error() {
  local code=$?
  say "FAILED in step \"$STEP\" (exit $code); see $LOG"
  exit 1
}
trap on_error ERR
trap 'say "stopped by a signal during \"$STEP\"; the runs keep what was saved: run the same command again to continue"; exit 143' TERM INT

cd "$REPO"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export MUJOCO_GL=${MUJOCO_GL:-egl}
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$WORK/jax-cache}
say "$(date -u +%FT%TZ) on $(hostname): bash $SCRIPT_NAME ${ORIGINAL_ARGS[*]}"
say "checkout $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'no git')), out $OUT, work $WORK, $(nproc) cores"
command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L | sed 's/^/[gpu_node] /' || true

# 1. install ------------------------------------------------------------------
STEP=install
if [[ $SKIP_INSTALL == 1 ]]; then
  say "install: skipped (--skip-install)"
else
  if ! "$PY" -m pip --version > /dev/null 2>&1; then
    say "FAILED: $PY has no pip; add it ($PY -m ensurepip) or install the requirements yourself and pass --skip-install"
    exit 1
  fi
  requirements > "$WORK/requirements.txt"
  # Pin whatever JAX is installed (jax, jaxlib, jax-cuda12-plugin/pjrt, ...): pip may add packages, never replace
  # these. `pip list --format=freeze` gives pip freeze's name==version lines, also for a jax installed from a URL.
  "$PY" -m pip list --format=freeze 2>/dev/null | grep -iE '^(jax|jaxlib|jax[-_]cuda[0-9]*[-_][a-z_-]+)==' \
    > "$WORK/constraints.txt" || true
  if [[ ! -s $WORK/constraints.txt ]]; then
    say "warning: no jax installed in $PY; pip will install a jax from the wheelhouse (a CPU one unless it holds jax[cuda12])"
  fi
  say "install: pip install --no-index --find-links $WHEELHOUSE -c constraints ($(paste -sd' ' "$WORK/constraints.txt")) -r requirements ($(paste -sd' ' "$WORK/requirements.txt"))"
  if "$PY" -m pip install --no-index --find-links "$WHEELHOUSE" -c "$WORK/constraints.txt" -r "$WORK/requirements.txt" \
      --disable-pip-version-check > "$WORK/pip-install.log" 2>&1; then
    grep -vE '^Requirement already satisfied' "$WORK/pip-install.log" || true  # the rest: what was installed
  else
    cat "$WORK/pip-install.log"
    say "FAILED: the offline install: $WHEELHOUSE lacks wheels that fit this Python and the pinned" \
        "$(paste -sd' ' "$WORK/constraints.txt") (pip's output above); make it with --print-download-command" \
        "--node-python $("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') --node-jax <this jax>"
    exit 1
  fi
  say "install: done"
fi

# The train arguments of each agent, checked by train's own parser before any work (e.g. --set names);
# the same Python prints jax's devices.
STEP="devices and train arguments"
common_train_args() {  # common_train_args AGENT RUN_DIR
  local args=(train --tasks "${TASKS[@]}" --agent "$1" --seeds "${SEEDS[@]}" --profile "$PROFILE" --out "$2"
              --dataset generated --workers "$WORKERS" --no-progress)
  if [[ -n $DATA_DIR ]]; then args+=(--data-dir "$DATA_DIR"); fi
  local name
  for name in "${PASS_NAMES[@]}"; do
    if [[ -n ${PASS[$name]:-} ]]; then args+=("--$name" "${PASS[$name]}"); fi
  done
  if [[ ${#SETS[@]} -gt 0 ]]; then args+=(--set "${SETS[@]}"); fi
  printf '%s\0' "${args[@]}"
}
run_dir() { echo "$WORK/runs/${DATASET%-play-v0}-$1-$PROFILE"; }
CHECK_PY=$(cat <<'PYEOF'
import sys

import jax

print(f"[gpu_node] jax {jax.__version__}, default backend {jax.default_backend()}, devices {jax.devices()}", flush=True)
from rql_lite.cli import build_parser, spec_from_args
from rql_lite.ogbench.datasets import generated_folder

argv, specs = sys.argv[1:], []
while argv:  # one train command line per agent, each ending with "::"
    end = argv.index("::")
    try:
        specs.append(spec_from_args(build_parser().parse_args(argv[:end])).resolved())
    except ValueError as err:
        sys.exit(f"error: {err}")
    argv = argv[end + 1:]
spec = specs[0]  # the agents differ in --agent and --out only: one dataset
print(generated_folder(spec.data_dir, spec.dataset_episodes, 0, spec.episode_length),
      spec.dataset_episodes or "-", spec.episode_length, spec.max_eval_steps or "-")
PYEOF
)
check_args=()
for agent in "${AGENTS[@]}"; do
  mapfile -d '' args < <(common_train_args "$agent" "$(run_dir "$agent")")
  check_args+=("${args[@]}" "::")
done
if ! CHECK=$("$PY" -c "$CHECK_PY" "${check_args[@]}"); then
  say "FAILED: python -m rql_lite train refuses these arguments (above); nothing was generated or trained"
  exit 2
fi
sed '$d' <<< "$CHECK"
read -r DATA_FOLDER DATA_EPISODES EPISODE_LENGTH MAX_EVAL_STEPS <<< "${CHECK##*$'\n'}"
say "train arguments checked; dataset folder $DATA_FOLDER"

# 2. dataset ------------------------------------------------------------------
STEP=dataset
if [[ -f $DATA_FOLDER/$DATASET.npz && -f $DATA_FOLDER/${DATASET}-val.npz ]]; then
  say "dataset: $DATA_FOLDER/$DATASET.npz exists"
else
  args=(generate "$DATASET" --out "$DATA_FOLDER" --episode-length "$EPISODE_LENGTH" --workers "$WORKERS")
  if [[ $DATA_EPISODES != - ]]; then args+=(--episodes "$DATA_EPISODES"); fi
  say "dataset: python -m rql_lite ${args[*]}"
  "$PY" -m rql_lite "${args[@]}"
fi

# 3. benchmark ------------------------------------------------------------------
STEP=bench
if [[ $NO_BENCH == 1 ]]; then
  say "bench: skipped (--no-bench)"
elif compgen -G "$OUT/bench-*.json" > /dev/null; then
  say "bench: $(compgen -G "$OUT/bench-*.json" | head -n1) exists (delete it to measure again)"
else
  if [[ $BENCH_ARGS_SET == 0 && $PROFILE == smoke && $("$PY" -m rql_lite bench --help) == *--runs* ]]; then
    BENCH_WORDS+=(--runs)  # a bare --runs skips the runs sweep: seconds at smoke size, not minutes
  fi
  say "bench: python -m rql_lite bench ${BENCH_WORDS[*]} --out $OUT"
  "$PY" -m rql_lite bench "${BENCH_WORDS[@]}" --out "$OUT"
fi

# 4. training in segments ----------------------------------------------------------------
# Prints "finished" or "unfinished", then one line per (task, seed).
run_status() {
  "$PY" - "$1" "${#TASKS[@]}" "${#SEEDS[@]}" <<'PYEOF'
import glob, json, os, sys
run, tasks, seeds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
paths = sorted(glob.glob(os.path.join(run, "records", "seed*.json")) +
               glob.glob(os.path.join(run, "records", "*", "seed*.json")))
records = [json.load(open(p)) for p in paths]
done = len(records) == tasks * seeds and all(r["finished"] for r in records)
print("finished" if done else "unfinished")
for r in records:
    rate = r["final_success_rate"]
    print(f"  {r['agent']} {r['task']} seed {r['seed']}: {r['steps']}/{r['target_steps']} steps, success rate "
          f"{'-' if rate is None else f'{rate:.3f}'} ({'finished' if r['finished'] else 'unfinished'}), "
          f"{r['wall_time_s']:.0f} s on {r['device']}")
PYEOF
}
elapsed_s() { echo $(( $(date +%s) - START )); }
SEGMENTS=0 BUDGET_HIT=0
declare -A AGENT_SEGMENTS=()
STEP=train
for agent in "${AGENTS[@]}"; do
  run=$(run_dir "$agent")
  AGENT_SEGMENTS[$agent]=0
  mapfile -d '' args < <(common_train_args "$agent" "$run")
  while true; do
    status=none
    if [[ -f $run/run.json ]]; then status=$(run_status "$run"); fi
    if [[ ${status%%$'
'*} == finished ]]; then
      say "train $agent: every record in $run is finished"
      break
    fi
    minutes=$SEGMENT_MINUTES
    if [[ -n $TOTAL_MINUTES ]]; then
      minutes=$(awk -v t="$TOTAL_MINUTES" -v e="$(elapsed_s)" -v s="$SEGMENT_MINUTES" \
        'BEGIN { r = t - e / 60; m = (r < s) ? r : s; if (r < 0.5 && r < s) print "none"; else print m }')
      if [[ $minutes == none ]]; then
        BUDGET_HIT=1
        say "train $agent: --total-minutes $TOTAL_MINUTES leaves no room for another segment; the run stays resumable"
        break
      fi
    fi
    resume=()
    if [[ -f $run/run.json ]]; then resume=(--resume); fi
    SEGMENTS=$((SEGMENTS + 1)) AGENT_SEGMENTS[$agent]=$((AGENT_SEGMENTS[$agent] + 1))
    say "segment $SEGMENTS ($agent, at most $minutes min): python -m rql_lite ${args[*]} --max-minutes $minutes ${resume[*]}"
    seg_start=$(date +%s)
    "$PY" -m rql_lite "${args[@]}" --max-minutes "$minutes" "${resume[@]}"
    say "segment $SEGMENTS ended after $(( $(date +%s) - seg_start )) s"
  done
  if [[ $BUDGET_HIT == 1 ]]; then break; fi
done

# 5. results into --out ------------------------------------------------------------
STEP="copy records"
rm -rf "$OUT/runs" "$OUT/runs.tar.gz"
for agent in "${AGENTS[@]}"; do
  run=$(run_dir "$agent")
  [[ -f $run/run.json ]] || continue
  dest=$OUT/runs/$(basename "$run")
  mkdir -p "$dest"
  cp "$run/run.json" "$dest/"
  if [[ -d $run/records ]]; then cp -r "$run/records" "$dest/"; fi
done

STEP="export policy"
video_run=$(run_dir "$VIDEO_AGENT")
tag="$VIDEO_AGENT-$VIDEO_TASK-seed$VIDEO_SEED"
POLICY=$OUT/policy-$tag.msgpack VIDEO=$OUT/video-$tag.mp4
rm -f "$OUT"/policy-*.msgpack "$OUT"/video-*.mp4
if [[ -f $video_run/checkpoint.msgpack ]]; then
  "$PY" -m rql_lite export --run "$video_run" --task "$VIDEO_TASK" --seed "$VIDEO_SEED" --policy-only --out "$POLICY"
  STEP=video
  "$PY" - "$POLICY" "$VIDEO_TASK" "$VIDEO_SEED" "$MAX_EVAL_STEPS" "$VIDEO" <<'PYEOF'
import sys
from rql_lite.runs.checkpoint import load_agent
from rql_lite.ogbench.evaluate import evaluate, make_eval_env
from rql_lite.ogbench.videos import write_video

policy, task, seed, max_steps, out = sys.argv[1:6]
state, meta = load_agent(policy)
max_steps = None if max_steps == "-" else int(max_steps)
result = evaluate(make_eval_env(task, render=True), state, 1, seed=int(seed), video_episodes=1, max_steps=max_steps)
write_video(result["frames"][0], out)
print(f"[gpu_node] video: {out}: one episode of {task} seed {seed} at step {meta['step']}, "
      f"{result['episode_lengths'][0]} steps, success {result['successes'][0]}")
PYEOF
else
  say "export and video: skipped, $video_run has no checkpoint yet (no segment has saved)"
  POLICY="" VIDEO=""
fi

if [[ $ARCHIVE == 1 && -d $OUT/runs ]]; then
  STEP=archive
  tar -czf "$OUT/runs.tar.gz" -C "$OUT" runs && rm -rf "$OUT/runs"
fi

# summary -------------------------------------------------------------------------
STEP=summary
WALL=$(elapsed_s)
run_args=()
for agent in "${AGENTS[@]}"; do run_args+=("$agent=$(run_dir "$agent")=${AGENT_SEGMENTS[$agent]:-0}"); done
SUMMARY=$("$PY" - "$OUT/summary.json" "$WALL" "$PROFILE" "${#TASKS[@]}" "${#SEEDS[@]}" "$POLICY" "$VIDEO" "$BUDGET_HIT" \
  "${run_args[@]}" <<'PYEOF'
import datetime, glob, json, os, sys

path, wall, profile, num_tasks, num_seeds, policy, video, budget_hit = sys.argv[1:9]
runs, lines = [], []
for item in sys.argv[9:]:
    agent, run, segments = item.split("=")
    paths = sorted(glob.glob(os.path.join(run, "records", "seed*.json")) +
                   glob.glob(os.path.join(run, "records", "*", "seed*.json")))
    records = [json.load(open(p)) for p in paths]
    finished = len(records) == int(num_tasks) * int(num_seeds) and all(r["finished"] for r in records)
    runs.append({"agent": agent, "run_dir": run, "finished": finished, "segments_this_invocation": int(segments),
                 "records": [{k: r[k] for k in ("task", "seed", "steps", "target_steps", "finished",
                                                "final_success_rate", "wall_time_s", "device")} for r in records]})
    lines.append(f"{agent}: {'finished' if finished else 'UNFINISHED'}, {segments} segment(s) now, {run}")
    for r in records:
        rate = "-" if r["final_success_rate"] is None else f"{r['final_success_rate']:.3f}"
        lines.append(f"  {r['task']} seed {r['seed']}: {r['steps']}/{r['target_steps']} steps, success rate {rate}, "
                     f"{r['wall_time_s']:.0f} s on {r['device']}")
    if not records:
        lines.append("  not started")
summary = {"all_finished": all(r["finished"] for r in runs), "stopped_by_total_minutes": budget_hit == "1",
           "segments_this_invocation": sum(r["segments_this_invocation"] for r in runs),
           "wall_time_s_this_invocation": int(wall), "profile": profile, "runs": runs,
           "policy": os.path.basename(policy) or None, "video": os.path.basename(video) or None,
           "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
with open(path, "w") as f:
    json.dump(summary, f, indent=1)
print("\n".join(f"[gpu_node]   {line}" for line in lines))
print("ALL_FINISHED" if summary["all_finished"] else "UNFINISHED")
PYEOF
)
echo
say "summary: $PROFILE profile, ${#TASKS[@]} task(s) x ${#SEEDS[@]} seed(s) per agent, $SEGMENTS segment(s) this time, $WALL s wall"
sed '$d' <<< "$SUMMARY"
say "bench: $(compgen -G "$OUT/bench-*.json" | head -n1 || true)"
say "policy: ${POLICY:-none}; video: ${VIDEO:-none}"
say "out: $OUT ($(find "$OUT" -type f | wc -l) files, $(du -sh "$OUT" | cut -f1)); checkpoints (not to bring back): $WORK/runs"
count=$(find "$OUT" -type f | wc -l)
(( count <= MAX_FILES )) || say "note: $count files in $OUT; where at most $MAX_FILES come back, pass --archive (runs/ as one file)"
if [[ ${SUMMARY##*$'\n'} == ALL_FINISHED ]]; then
  say "done: every run is finished"
else
  say "UNFINISHED: what was trained is saved in $WORK/runs; run the same command again to continue"
fi

# Every file in --out must come back: each under 16 MiB.
too_big=$(find "$OUT" -type f -size +$((MAX_FILE_BYTES - 1))c)
if [[ -n $too_big ]]; then
  while read -r f; do say "FAILED: $f is $(stat -c %s "$f") bytes, not under 16 MiB; it cannot be brought back"; done <<< "$too_big"
  exit 1
fi
