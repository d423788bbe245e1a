#!/usr/bin/env bash
# ViPE inference for the EgoX ego-prior renderer, on vipe-dagster's `vipe infer`.
#
# Batch mode (default): every exo camera video of every Ego-Exo4D take,
#   $DATA_DIR/takes/<take>/$VIDEO_SUBDIR/<cam>.mp4  ->  $OUTPUT_DIR/<take>/<cam>_<PIPELINE>[_fixedcam]/
# one after the other on one device (as the reference's script does). Single-video mode (the released
# in-the-wild example): VIDEO=path/to/<clip>/exo.mp4 writes $OUTPUT_DIR/<clip>/ with artifacts named `exo`.
# scripts/render_vipe.sh renders the results. Every setting below can be overridden from the environment.
set -euo pipefail

# ---------------------------------------------------------------- experiment settings
DATA_DIR="${DATA_DIR:-../example/egoexo4d}"                 # holds takes/<take>/$VIDEO_SUBDIR/<cam>.mp4
VIDEO_SUBDIR="${VIDEO_SUBDIR:-frame_aligned_videos/downscaled/448}"
VIDEO="${VIDEO:-}"                                          # one video instead of the takes
OUTPUT_DIR="${OUTPUT_DIR:-vipe_results}"
PIPELINE="${PIPELINE:-lyra}"                                # default | pose_only | no_vda | static_vda | lyra | dav3 | fixed_camera
START_FRAME="${START_FRAME:-0}"
END_FRAME="${END_FRAME:-48}"                                # inclusive; -1 = last frame; clamped to each video
FIXED_CAMERA="${FIXED_CAMERA:-1}"                           # 1: --assume_fixed_camera_pose (static exo cameras)
TAKES="${TAKES:-}"                                          # "takeA takeB"; empty = every take
CAMERAS="${CAMERAS:-}"                                      # "cam01 cam02"; empty = every camNN/gpNN video
EXTRA_ARGS="${EXTRA_ARGS:-}"                                # more `vipe infer` options (--depth_model ..., --long_side 0)
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
# ------------------------------------------------------------------------------------

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
vipe() { "$PYTHON" -m vipe_dagster.vipe_cli "$@"; }

fixed=()
suffix="_${PIPELINE}"
if [ "$FIXED_CAMERA" = "1" ]; then fixed=(--assume_fixed_camera_pose); suffix="${suffix}_fixedcam"; fi
# shellcheck disable=SC2206
extra=($EXTRA_ARGS)

if [ -n "$VIDEO" ]; then
  if [ ! -f "$VIDEO" ]; then echo "error: VIDEO $VIDEO not found" >&2; exit 2; fi
  clip="$(basename "$(dirname "$VIDEO")")"
  vipe infer "$VIDEO" --output "$OUTPUT_DIR/$clip" --start_frame "$START_FRAME" --end_frame "$END_FRAME" \
    "${fixed[@]}" --pipeline "$PIPELINE" "${extra[@]}"
  exit $?
fi

jobs_file="$(mktemp)"
trap 'rm -f "$jobs_file"' EXIT
"$PYTHON" -m vipe_dagster.entry.egoexo_jobs infer --data_dir "$DATA_DIR" --video_subdir "$VIDEO_SUBDIR" \
  --takes "$TAKES" --cameras "$CAMERAS" > "$jobs_file"
total=$(grep -c . "$jobs_file" || true)
if [ "$total" -eq 0 ]; then echo "error: no camera videos under $DATA_DIR/takes/*/$VIDEO_SUBDIR" >&2; exit 2; fi

ok=0; failed=()
i=0
while IFS=$'\t' read -r take cam video nframes; do
  i=$((i + 1))
  end="$END_FRAME"
  if [ "$end" = "-1" ] || [ "$end" -gt $((nframes - 1)) ]; then end=$((nframes - 1)); fi
  out="$OUTPUT_DIR/$take/${cam}${suffix}"
  echo "[$i/$total] $take $cam: frames $START_FRAME..$end, pipeline $PIPELINE -> $out"
  if vipe infer "$video" --output "$out" --name "$cam" --start_frame "$START_FRAME" --end_frame "$end" \
      "${fixed[@]}" --pipeline "$PIPELINE" "${extra[@]}" < /dev/null; then
    ok=$((ok + 1))
  else
    failed+=("$take/$cam")
  fi
done < "$jobs_file"

echo "done: $ok of $total succeeded"
if [ "${#failed[@]}" -gt 0 ]; then echo "failed: ${failed[*]}" >&2; exit 1; fi
