#!/usr/bin/env bash
# Model-quality experiments of issue 24 on one GPU (run from the repo root on the device machine).
# Each arm trains the small teacher for TRAIN_MIN minutes on the same shards, then evaluates it at 9
# frames on the held-out scripts with action following (RPE against the commanded path; the pose
# estimator's floor on the ground-truth renders) next to copy-first and shuffled actions.
#   ARMS      space-separated arms, one teacher each: a model.camera value, optionally _ a
#             model.spatial_rope value ("pose_rays": pose embedding, RoPE at the view rays)
#             (default: "pose plucker")
#   TRAIN_MIN minutes per teacher (default 6); TRAIN_STEPS instead: that many optimiser steps (the
#             comparison at equal steps with an arm trained on another GPU or at another time)
#   COMPILE   1 (default): torch.compile the teacher; 0: eager (saves the compile's minute on short runs)
#   GUIDANCE  space-separated CFG scales each teacher is evaluated at (default "1"; 1 = off)
#   SNAPSHOT_EVERY  when set, each teacher keeps its weights every that many steps and
#             bench/quality_curve.py --follow evaluates each as soon as it is written, on the same GPU beside
#             the training (CURVE_ARGS: more training.eval arguments, e.g. --no-rpe): the curve of quality
#             against training and the fitted steps to +2 dB over copy-first; its points exist while the run
#             goes on, so a collect call made mid-run already brings them back
#   TEACHER_ARGS  more training.teacher arguments for every arm (e.g. "--set context.frames=4")
#   DATA_SCENES  when set, the train shards are rendered on the device first (bench/device_data.py:
#             that many stand-in scenes, none of them an eval scene; DATA_ARGS its --set arguments:
#             gpu_common.sh's device_shards) instead of the carried .device/data
# One arm per device call keeps each under the 10-minute command limit (about 7 minutes at TRAIN_MIN=5;
# the device gives a machine back after 30 s idle, so a detached run cannot be collected later):
#   ARMS=pose TRAIN_MIN=5 bash bench/quality_gpu.sh; cp -r /tmp/quality/results "$OUT/"
set -euo pipefail
RUNS=${RUNS:-/tmp/quality}
source "$(dirname "$0")/gpu_common.sh"
device_shards
SHARDS=${SHARDS:-"$DATA/train-{000000..000008}.tar"}
if [[ -n "${TRAIN_STEPS:-}" ]]; then budget=(--steps "$TRAIN_STEPS"); else budget=(--minutes "${TRAIN_MIN:-6}"); fi
[[ "${COMPILE:-1}" == 1 ]] && budget+=(--compile)
[[ -n "${SNAPSHOT_EVERY:-}" ]] && budget+=(--set snapshot_every="$SNAPSHOT_EVERY")
for arm in ${ARMS:-pose plucker}; do
  say "teacher $arm"
  camera=${arm%_*}; rope=grid; [[ "$arm" == *_* ]] && rope=${arm#*_}
  # shellcheck disable=SC2086  # TEACHER_ARGS: more arguments
  teacher_stage "$RUNS/teacher_$arm" --set model.camera="$camera" --set model.spatial_rope="$rope" "${budget[@]}" \
    ${TEACHER_ARGS:-} &
  teacher=$!
  curve=
  if [[ -n "${SNAPSHOT_EVERY:-}" ]]; then  # each snapshot evaluated as soon as it is written, beside the training
    say "curve $arm, following the training"
    # shellcheck disable=SC2086  # CURVE_ARGS: more training.eval arguments
    python3 bench/quality_curve.py "$RUNS/teacher_$arm" --out "$RES/curve_$arm" --follow "$teacher" -- "${ev[@]}" \
      --frames 9 ${CURVE_ARGS:-} &
    curve=$!
  fi
  wait "$teacher"
  cp "$RUNS/teacher_$arm/summary.json" "$RES/teacher_${arm}_summary.json"
  cp "$RUNS/teacher_$arm/log.jsonl" "$RES/teacher_${arm}_log.jsonl"
  if [[ -n "$curve" ]]; then
    wait "$curve"
    say "curve $arm done"
    rm -f "$RES"/curve_"$arm"/eval_step*/grid.png
  fi
  for g in ${GUIDANCE:-1}; do
    say "eval camera=$arm guidance=$g"
    suffix=$([[ "$g" == 1 ]] && echo "" || echo "_g$g")
    python3 -m training.eval --checkpoint "$RUNS/teacher_$arm/checkpoint.pt" "${ev[@]}" \
      --out "$RES/eval_teacher_${arm}9$suffix" --frames 9 --guidance "$g"
  done
done
say done
