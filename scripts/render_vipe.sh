#!/usr/bin/env bash
# Ego-prior renders (the EgoX renderer) of every ViPE result of every Ego-Exo4D take, on vipe-dagster.
#
# Jobs: every $VIPE_RESULTS/<take>/<cam>[_<config>]/ (scripts/infer_vipe.sh writes them) whose take has an
# annotations/ego_pose/<split>/camera_pose/*.json under $DATA_DIR; output
#   $OUT_DIR/<take>/<cam>/test_output_<config>[_mean_bg][_fisheye]_pts<POINT_SIZE>/{frame_%06d.png, ego_Prior.mp4}
# Workers: one per visible GPU, jobs handed out round-robin with CUDA_VISIBLE_DEVICES=<gpu> (GPUs from
# $AVAILABLE_GPUS, else $CUDA_VISIBLE_DEVICES, else nvidia-smi); without a GPU one worker per CPU core.
# A new job starts when a worker is free (no oversubscription). Logs: $OUT_DIR/logs/<take>__<cam>.log.
# Every setting below can be overridden from the environment.
set -euo pipefail

# ---------------------------------------------------------------- experiment settings
DATA_DIR="${DATA_DIR:-../example/egoexo4d}"          # annotations/ego_pose/..., takes/<take>/trajectory/...
VIPE_RESULTS="${VIPE_RESULTS:-vipe_results}"
OUT_DIR="${OUT_DIR:-ego_view_rendering}"
POINT_SIZE="${POINT_SIZE:-5.0}"
START_FRAME="${START_FRAME:-0}"                      # ViPE frames, inclusive
END_FRAME="${END_FRAME:--1}"                         # -1 = the last ViPE frame
SOURCE_START_FRAME="${SOURCE_START_FRAME:-}"         # take frame of START_FRAME (empty: START_FRAME)
FISH_EYE="${FISH_EYE:-1}"                            # --fish_eye_rendering
MEAN_BG="${MEAN_BG:-1}"                              # --use_mean_bg
ONLY_BG="${ONLY_BG:-0}"                              # --only_bg
TAKES="${TAKES:-}"                                   # "takeA takeB"; empty = every take
CAMERAS="${CAMERAS:-}"                               # "cam01 cam02"; empty = every camera
AVAILABLE_GPUS="${AVAILABLE_GPUS:-}"                 # "0,1,3"; empty = the visible GPUs
RENDER_DEVICE="${RENDER_DEVICE:-}"                   # cuda | cpu; empty = cuda with GPUs, else cpu
MAX_WORKERS="${MAX_WORKERS:-}"                       # empty = number of GPUs (or CPU cores)
EXTRA_ARGS="${EXTRA_ARGS:-}"                         # more render_vipe_pointcloud.py options
# ------------------------------------------------------------------------------------

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

gpus=()
if [ -n "$AVAILABLE_GPUS" ]; then
  IFS=',' read -r -a gpus <<< "$AVAILABLE_GPUS"
elif [ -n "${CUDA_VISIBLE_DEVICES:-}" ] && [ "${CUDA_VISIBLE_DEVICES}" != "-1" ]; then
  IFS=',' read -r -a gpus <<< "$CUDA_VISIBLE_DEVICES"
elif command -v nvidia-smi > /dev/null 2>&1; then
  mapfile -t gpus < <(nvidia-smi --query-gpu=index --format=csv,noheader 2> /dev/null || true)
fi
if [ "${#gpus[@]}" -gt 0 ]; then
  device="${RENDER_DEVICE:-cuda}"
  workers="${MAX_WORKERS:-${#gpus[@]}}"
else
  device="${RENDER_DEVICE:-cpu}"
  workers="${MAX_WORKERS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2> /dev/null || echo 1)}"
fi

flags=(--point_size "$POINT_SIZE" --start_frame "$START_FRAME" --end_frame "$END_FRAME" --device "$device")
[ "$FISH_EYE" = "1" ] && flags+=(--fish_eye_rendering)
[ "$MEAN_BG" = "1" ] && flags+=(--use_mean_bg)
[ "$ONLY_BG" = "1" ] && flags+=(--only_bg)
[ -n "$SOURCE_START_FRAME" ] && flags+=(--source_start_frame "$SOURCE_START_FRAME")
# shellcheck disable=SC2206
flags+=($EXTRA_ARGS)

jobs_file="$(mktemp)"
trap 'rm -f "$jobs_file"' EXIT
"$PYTHON" -m vipe_dagster.entry.egoexo_jobs render --data_dir "$DATA_DIR" --vipe_results "$VIPE_RESULTS" \
  --takes "$TAKES" --cameras "$CAMERAS" > "$jobs_file"
total=$(grep -c . "$jobs_file" || true)
if [ "$total" -eq 0 ]; then echo "error: no renderable ViPE results under $VIPE_RESULTS" >&2; exit 2; fi
mkdir -p "$OUT_DIR/logs"
echo "$total render job(s) on $workers worker(s), device $device${gpus:+, GPUs ${gpus[*]}}"

declare -A job_of=()
failed=()
running=0
reap() {  # wait for one worker to finish and record its result
  local pid=""
  if wait -n -p pid; then :; else [ -n "$pid" ] && failed+=("${job_of[$pid]}"); fi
  running=$((running - 1))
}
i=0
while IFS=$'\t' read -r take cam rdir pose gopro online; do
  while [ "$running" -ge "$workers" ]; do reap; done
  args=(--input_dir "$rdir" --out_dir "$OUT_DIR" --ego_camera_pose_path "$pose")
  [ "$gopro" != "-" ] && args+=(--exo_camera_pose_path "$gopro")
  [ "$online" != "-" ] && args+=(--online_calibration_path "$online")
  gpu=""
  if [ "${#gpus[@]}" -gt 0 ]; then gpu="${gpus[$((i % ${#gpus[@]}))]}"; fi
  log="$OUT_DIR/logs/${take}__$(basename "$rdir").log"
  echo "launch $take/$(basename "$rdir") CUDA_VISIBLE_DEVICES=${gpu:-none} device=$device log=$log"
  (
    if [ -n "$gpu" ]; then export CUDA_VISIBLE_DEVICES="$gpu"; else export CUDA_VISIBLE_DEVICES=""; fi
    if [ "$device" = "cpu" ]; then export OMP_NUM_THREADS=1; fi
    exec "$PYTHON" "$REPO/ego_view_rendering/render_vipe_pointcloud.py" "${args[@]}" "${flags[@]}" \
      < /dev/null > "$log" 2>&1
  ) &
  job_of[$!]="$take/$(basename "$rdir")"
  running=$((running + 1))
  i=$((i + 1))
done < "$jobs_file"
while [ "$running" -gt 0 ]; do reap; done

echo "done: $((total - ${#failed[@]})) of $total rendered into $OUT_DIR"
if [ "${#failed[@]}" -gt 0 ]; then
  for f in "${failed[@]}"; do echo "failed: $f (log: $OUT_DIR/logs/${f/\//__}.log)" >&2; done
  exit 1
fi
