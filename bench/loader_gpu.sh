#!/usr/bin/env bash
# The loader figures of issue 25 on the GPU host (run from the repo root on the device machine):
# frames/s per DataLoader worker against N raw decoders at once (N = 1, 4, 8), and the JPEG bytes
# decoded on the GPU (nvJPEG) against the workers' own decode, at 256x144 and 1280x720. The shards
# are rendered there (bench/device_data.py: no Ray on that host), 33-frame clips at JPEG q90 as the
# demo build writes them. Needs webdataset (carry its wheel) and torchvision (the host has it).
#   RUNS=/tmp/loader bash bench/loader_gpu.sh     -> $RUNS/results/loader_{256x144,1280x720}.txt
# SIZES (default "256x144 1280x720"), WORKERS ("1 4 8"), DECODE ("workers device": both tables; "device":
# the GPU decode rows only), REPEATS (3), SCENES (8 at 256x144, 16 at larger sizes), FRAMES (a path's
# frames at larger sizes, default 66: two clips; a path renders and filters at 720p at ~1.3 frames/s on
# one core, so 4 paths of the planner's default length took over 170 s on the 16-core host, and 16
# short ones in parallel take about a minute). A worker reads 20,000 frames per
# run at 256x144 and 20,000 x 256x144 / (width x height) at other sizes (the same bytes).
set -euo pipefail
RUNS=${RUNS:-/tmp/loader}
mkdir -p "$RUNS/results"
for size in ${SIZES:-256x144 1280x720}; do
  width=${size%x*}; height=${size#*x}
  data=(--set capture.capture.camera.width="$width" --set capture.capture.camera.height="$height"
        --set clips.jpeg_quality=90 --set capture.sources.planner.trajectories_per_scene=1)
  scenes=${SCENES:-8}
  if (( width * height > 256 * 144 )); then
    scenes=${SCENES:-16}
    data+=(--set capture.sources.planner.frames="${FRAMES:-66}")
  fi
  [[ -f "$RUNS/$size/data.json" ]] || python3 bench/device_data.py --scenes "$scenes" --out "$RUNS/$size" \
    "${data[@]}" > "$RUNS/results/data_$size.json"
  python3 bench/loader.py --out "$RUNS/$size" --workers ${WORKERS:-1 4 8} --decode ${DECODE:-workers device} \
    --repeats "${REPEATS:-3}" --frames-per-worker $(( 20000 * 256 * 144 / (width * height) )) \
    | tee "$RUNS/results/loader_$size.txt"
done
