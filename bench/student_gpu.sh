#!/usr/bin/env bash
# The student experiment of issue 8 on one GPU, in calls that each fit the device's 10-minute limit
# and must follow each other while the machine is warm (checkpoints live in $RUNS on that machine):
#   STAGE=teacher : the small teacher, 9 frames, TRAIN_MIN minutes, compiled (as bench/teacher_gpu.sh)
#   STAGE=ode     : ODE init with hybrid forcing from it, ODE_MIN minutes, 17-frame clips
#   STAGE=dmd     : DMD from the ODE checkpoint, DMD_MIN minutes, self-rollouts of 33 frames
#                   (teacher at RoPE time scale 0.25, i.e. 4x its clips)
#   STAGE=eval    : teacher vs student at 9 frames; student with compressed memory vs window-only on
#                   33-frame out-and-back revisits; bench/student.py speed figures
set -euo pipefail
STAGE=${STAGE:?set STAGE=teacher|ode|dmd|eval}
DATA=${DATA:-.device/data}
SHARDS="$DATA/train-{000000..000006}.tar"
SCENES=${SCENES:-corridor_0007,courtyard_0001,courtyard_0008,room_0001,room_0002,room_0006,street_0005,street_0008}
OUT=${OUT:-out/student_gpu}
RUNS=${RUNS:-/tmp/runs}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUNS"
W=$(( $(nproc) - 2 ))
ev=(--scenes "$SCENES" --workers "$(nproc)" --cache "$RUNS/evalset.npz")
case "$STAGE" in
  teacher)
    python3 -m training.teacher --shards "$SHARDS" --preset small --set data.workers=$W --out "$RUNS/teacher" \
      --minutes "${TRAIN_MIN:-7}" --compile --progress-every 1000
    cp "$RUNS/teacher/summary.json" "$OUT/teacher_summary.json" ;;
  ode)
    python3 -m training.student_train --stage ode --teacher "$RUNS/teacher/checkpoint.pt" --shards "$SHARDS" \
      --out "$RUNS/ode" --minutes "${ODE_MIN:-3}" --set data.workers=$W --set data.frames=17 --set data.batch_size=16
    cp "$RUNS/ode/log.jsonl" "$OUT/ode_log.jsonl" ;;
  dmd)
    python3 -m training.student_train --stage dmd --teacher "$RUNS/teacher/checkpoint.pt" --init "$RUNS/ode/checkpoint.pt" \
      --shards "$SHARDS" --out "$RUNS/dmd" --minutes "${DMD_MIN:-4}" --set data.workers=$W --set data.frames=33 \
      --set data.batch_size=8 --set teacher_rope_time_scale=0.25
    cp "$RUNS/dmd/log.jsonl" "$OUT/dmd_log.jsonl" ;;
  eval)
    S=${STUDENT:-$RUNS/dmd/checkpoint.pt}
    python3 -m training.eval --checkpoint "$RUNS/teacher/checkpoint.pt" "${ev[@]}" --out "$OUT/eval_teacher9" --frames 9
    python3 -m training.eval --checkpoint "$S" --student "${ev[@]}" --out "$OUT/eval_student9" --frames 9
    python3 -m training.eval --checkpoint "$S" --student "${ev[@]}" --out "$OUT/eval_student33_memory" --frames 33
    python3 -m training.eval --checkpoint "$S" --student --memory-pool 0 "${ev[@]}" --out "$OUT/eval_student33_window" --frames 33 ;;
esac
