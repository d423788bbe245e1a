#!/usr/bin/env bash
# Measure a CUDA machine in one command (never part of CI); see docs/gpu_bench.md.
#
#   scripts/gpu_bench.sh [--quick] [--json report.json] [--device cuda:0] [--skip-infer] [--skip-render]
#                        [--no-install]
#
# 1. picks a Python ($PYTHON, else the repo's .venv, else python3) and makes the repository importable;
# 2. installs what the engine needs from the repository (pip install -e ".[aria]", i.e. the dependencies
#    pyproject.toml declares) when something is missing and --no-install is not given; offline machines
#    continue with what is importable and the report says what could not run;
# 3. runs python -m vipe_dagster.eval.gpu_bench: environment, CUDA-vs-CPU checks on small inputs (bundle
#    adjustment, plane sweep, splat, ego render), frames/s of infer (512 px) and render-ego (448 px).
# Without CUDA it reports "no CUDA", skips the comparisons and still runs the CPU side (exit status 0).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

INSTALL=1
ARGS=()
for a in "$@"; do
  case "$a" in
    --no-install) INSTALL=0 ;;
    -h|--help) sed -n '2,14p' "$0"; ARGS+=("$a") ;;
    *) ARGS+=("$a") ;;
  esac
done

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"; else PY="$(command -v python3)"; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"
export VIPE_CLOUD_CACHE="${VIPE_CLOUD_CACHE:-off}"

missing="$("$PY" - <<'PYEOF'
import importlib.util
mods = ["torch", "numpy", "scipy", "cv2", "av", "OpenEXR", "fsspec", "pydantic", "tqdm", "PIL", "polars",
        "pyarrow", "projectaria_tools"]
print(" ".join(m for m in mods if importlib.util.find_spec(m) is None))
PYEOF
)"
if [ -n "$missing" ]; then
  if [ "$INSTALL" = 1 ]; then
    echo "== installing the engine's dependencies from the repository (missing: $missing)"
    if ! "$PY" -m pip install -q -e ".[aria]"; then
      echo "warning: pip install failed (no package index reachable?); continuing with what is importable" >&2
    fi
  else
    echo "== not installing (--no-install); missing: $missing"
  fi
fi

echo "== python: $PY"
exec "$PY" -m vipe_dagster.eval.gpu_bench ${ARGS[@]+"${ARGS[@]}"}
