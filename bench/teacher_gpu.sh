#!/usr/bin/env bash
# The teacher experiment of issue 7 on one GPU (run from the repo root on the device machine).
#   MODE=smoke  : 150 steps eager vs compiled (throughput), a 1-start eval
#   MODE=short  : short-context training (TRAIN_MIN minutes, 9 frames, compiled), eval at 9 frames (CFG 1 and 2)
#   MODE=long   : PART=1 evaluates the short checkpoint at 33 frames (RoPE extrapolation; position
#                 interpolation without tuning); PART=2 fine-tunes at 33 frames with PI (LONG_MIN
#                 minutes) and evaluates. Each call must fit the device's 10-minute command limit.
# Data: train shards of configs/teacher_data.yaml under DATA; eval in the build's val scenes.
set -euo pipefail
MODE=${MODE:-short}
DATA=${DATA:-.device/data}
SHARDS="$DATA/train-{000000..000006}.tar"
SCENES=${SCENES:-$(< "$(dirname "${BASH_SOURCE[0]}")/held_out_scenes.txt")}
OUT=${OUT:-out/teacher_gpu}
RUNS=${RUNS:-/tmp/runs}
TRAIN_MIN=${TRAIN_MIN:-7}
LONG_MIN=${LONG_MIN:-1.5}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUNS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
W=$(( $(nproc) - 2 ))
common=(--shards "$SHARDS" --preset small --set data.workers=$W --set data.batch_size=32 --progress-every 100)
ev=(--scenes "$SCENES" --workers "$(nproc)" --cache "$RUNS/evalset.npz")
if [ "$MODE" = smoke ]; then
  python3 -m training.teacher "${common[@]}" --out "$RUNS/eager" --steps 150 --set log_every=25
  python3 -m training.teacher "${common[@]}" --out "$RUNS/compiled" --steps 150 --set log_every=25 --compile
  python3 -m training.eval --checkpoint "$RUNS/eager/checkpoint.pt" "${ev[@]}" --out "$OUT/smoke_eval" --starts 1 --steps 10
  cp "$RUNS/eager/log.jsonl" "$OUT/eager_log.jsonl"; cp "$RUNS/compiled/log.jsonl" "$OUT/compiled_log.jsonl"
  exit 0
fi
if [ "$MODE" = short ]; then  # about 9 minutes with TRAIN_MIN=7
  python3 -m training.teacher "${common[@]}" --out "$RUNS/short" --minutes "$TRAIN_MIN" --compile
  cp "$RUNS/short/log.jsonl" "$OUT/short_log.jsonl"; cp "$RUNS/short/summary.json" "$OUT/short_summary.json"
  python3 -m training.eval --checkpoint "$RUNS/short/checkpoint.pt" "${ev[@]}" --out "$OUT/eval_short9" --frames 9
  python3 -m training.eval --checkpoint "$RUNS/short/checkpoint.pt" "${ev[@]}" --out "$OUT/eval_short9_cfg2" --frames 9 --guidance 2
  exit 0
fi
# MODE=long, right after MODE=short on the same (still warm) machine: 33 frames = 4x the transitions.
# Each 33-frame eval samples 504 clips x 3 methods x 20 steps (~2 min on an H200).
test -f "$RUNS/short/checkpoint.pt" || { echo "no $RUNS/short/checkpoint.pt: run MODE=short first" >&2; exit 2; }
if [ "${PART:-1}" = 1 ]; then
  python3 -m training.eval --checkpoint "$RUNS/short/checkpoint.pt" "${ev[@]}" --out "$OUT/eval_long33_extrapolate" --frames 33
  python3 -m training.eval --checkpoint "$RUNS/short/checkpoint.pt" "${ev[@]}" --out "$OUT/eval_long33_pi" --frames 33 --rope-time-scale 0.25
else
  python3 -m training.teacher "${common[@]}" --out "$RUNS/long" --minutes "$LONG_MIN" --init "$RUNS/short/checkpoint.pt" \
    --set data.frames=33 --set data.batch_size=16 --set model.rope_time_scale=0.25 --set optim.warmup_steps=20 --set optim.lr=1e-4
  cp "$RUNS/long/log.jsonl" "$OUT/long_log.jsonl"; cp "$RUNS/long/summary.json" "$OUT/long_summary.json"
  python3 -m training.eval --checkpoint "$RUNS/long/checkpoint.pt" "${ev[@]}" --out "$OUT/eval_long33_pi_tuned" --frames 33
fi
