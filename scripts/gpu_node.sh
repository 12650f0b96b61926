#!/usr/bin/env bash
# gpu_node.sh: the offline install on a GPU node, then `python -m rql_lite node` (which does the rest:
# dataset, benchmark, training in segments, records, policy and video in --out; see its --help).
#
#   bash scripts/gpu_node.sh --kit kit --out out --tasks cube-double-play-singletask-task2-v0 \
#       --agents rql tfql --seeds 0 1 2 3 --fit-minutes 2 --total-minutes 8 --archive
#
# Install choices (one of them):
#   --kit DIR         the trimmed wheels of `python -m rql_lite kit` (OGBench, MuJoCo, dm_control's needed part,
#                     gymnasium: ~22 MiB), installed with pip --no-index --no-deps into --site beside the image's
#                     own packages, which stay as they are (jax, flax, optax, numpy, ...);
#   --wheelhouse DIR  a full wheelhouse (`python -m rql_lite kit --print-wheelhouse-command`), resolved by pip
#                     --no-index with the installed jax, jaxlib and jax-cuda* pinned, so pip cannot replace them;
#   --skip-install    everything is installed already.
# Also: --python PY (default python3), --site DIR (where --kit installs; default /tmp/rql-site-$USER).
# Everything else goes to `python -m rql_lite node`. rql_lite runs from this checkout (PYTHONPATH), not
# installed: pip install -e would need the build backend offline too.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=python3 KIT="" WHEELHOUSE="" SKIP=0 SITE="/tmp/rql-site-${USER:-$(id -u)}" ARGS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --kit|--wheelhouse|--python|--site)
      [[ $# -ge 2 && -n $2 && $2 != --* ]] || { echo "error: $1 needs a value (see: bash $0 --help)" >&2; exit 2; }
      case $1 in --kit) KIT=$2 ;; --wheelhouse) WHEELHOUSE=$2 ;; --python) PY=$2 ;; --site) SITE=$2 ;; esac
      shift 2 ;;
    --skip-install) SKIP=1; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; echo; ARGS+=(--help); shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
command -v "$PY" > /dev/null 2>&1 || { echo "error: --python $PY: no such program; give the Python with the CUDA JAX" >&2; exit 2; }
chosen=$(( (${#KIT} > 0) + (${#WHEELHOUSE} > 0) + SKIP ))
if [[ " ${ARGS[*]} " != *" --help "* ]]; then
  [[ $chosen -eq 1 ]] || { echo "error: give one of --kit DIR, --wheelhouse DIR or --skip-install (see: bash $0 --help)" >&2; exit 2; }
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

if [[ -n $KIT ]]; then
  [[ -f $KIT/manifest.json ]] || { echo "error: --kit $KIT holds no manifest.json; make it with python -m rql_lite kit" >&2; exit 2; }
  want=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["python_version"])' "$KIT/manifest.json")
  have=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [[ $want == "$have" ]] || { echo "error: --kit $KIT was made for Python $want, $PY is $have; make one with --python-version $have" >&2; exit 2; }
  if cmp -s "$KIT/manifest.json" "$SITE/.rql-kit-manifest.json"; then  # this kit is installed there already
    echo "[gpu_node] install: the kit ($KIT) is in $SITE already"
  else
    echo "[gpu_node] install: the kit ($KIT, $(ls "$KIT"/*.whl | wc -l) wheels) into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --disable-pip-version-check --target "$SITE" "$KIT"/*.whl
    cp "$KIT/manifest.json" "$SITE/.rql-kit-manifest.json"
  fi
  export PYTHONPATH="$REPO:$SITE${PYTHONPATH#"$REPO"}"
  missing=$("$PY" -c 'from rql_lite.runs.kit import check_image; print(" ".join(check_image()))')
  [[ -z $missing ]] || { echo "error: the kit expects these from the image, which $PY lacks: $missing" >&2; exit 1; }
elif [[ -n $WHEELHOUSE ]]; then
  [[ -d $WHEELHOUSE ]] || { echo "error: --wheelhouse $WHEELHOUSE is not a directory" >&2; exit 2; }
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  "$PY" -c 'import sys; from rql_lite.runs.kit import runtime_requirements; print("\n".join(runtime_requirements(sys.argv[1])))' \
    "$REPO/pyproject.toml" > "$tmp/requirements.txt"
  # pip may add packages, never replace the installed JAX (pip freeze's name==version lines).
  "$PY" -m pip list --format=freeze 2>/dev/null | grep -iE '^(jax|jaxlib|jax[-_]cuda[0-9]*[-_][a-z_-]+)==' > "$tmp/constraints.txt" || true
  echo "[gpu_node] install: pip --no-index from $WHEELHOUSE, pinned: $(paste -sd' ' "$tmp/constraints.txt")"
  "$PY" -m pip install -q --no-index --find-links "$WHEELHOUSE" -c "$tmp/constraints.txt" -r "$tmp/requirements.txt" \
    --disable-pip-version-check || { echo "error: the offline install failed (pip's output above): $WHEELHOUSE lacks wheels for this Python and JAX" >&2; exit 1; }
fi
exec "$PY" -m rql_lite node "${ARGS[@]}"
