#!/usr/bin/env bash
# Model-quality experiments of issue 24 on one GPU (run from the repo root on the device machine).
# Each arm trains the small teacher for TRAIN_MIN minutes on the same shards, then evaluates it at 9
# frames on the held-out scripts with action following (RPE against the commanded path; the pose
# estimator's floor on the ground-truth renders) next to copy-first and shuffled actions.
#   ARMS      space-separated model.camera values, one teacher each (default: "pose plucker")
#   TRAIN_MIN minutes per teacher (default 6)
# Launch detached (a device command may run 10 minutes) and collect with short calls:
#   setsid nohup env ARMS="pose plucker" bash bench/quality_gpu.sh > /tmp/quality.log 2>&1 &
#   ... then: tar -C /tmp/quality -czf "$OUT/results.tgz" results
set -euo pipefail
DATA=${DATA:-.device/data}
SHARDS=${SHARDS:-"$DATA/train-{000000..000008}.tar"}
SCENES=${SCENES:-corridor_0007,courtyard_0001,courtyard_0008,room_0001,room_0002,room_0006,street_0005,street_0008}
RUNS=${RUNS:-/tmp/quality}
RES="$RUNS/results"
export PYTHONUNBUFFERED=1
mkdir -p "$RES"
W=$(( $(nproc) - 2 ))
ev=(--scenes "$SCENES" --workers "$(nproc)" --cache "$RUNS/evalset.npz")
say() { echo "== $* $(date +%T)" | tee -a "$RES/stages.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RES/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" >> "$RES/gpu.txt"
for arm in ${ARMS:-pose plucker}; do
  say "teacher camera=$arm"
  python3 -m training.teacher --shards "$SHARDS" --preset "${PRESET:-small}" --set data.workers=$W \
    --set model.camera="$arm" --out "$RUNS/teacher_$arm" --minutes "${TRAIN_MIN:-6}" --compile --progress-every 1000
  cp "$RUNS/teacher_$arm/summary.json" "$RES/teacher_${arm}_summary.json"
  cp "$RUNS/teacher_$arm/log.jsonl" "$RES/teacher_${arm}_log.jsonl"
  say "eval camera=$arm"
  python3 -m training.eval --checkpoint "$RUNS/teacher_$arm/checkpoint.pt" "${ev[@]}" --out "$RES/eval_teacher_${arm}9" \
    --frames 9
  rm -f "$RES/eval_teacher_${arm}9/grid.png.tmp"
done
say done
