#!/usr/bin/env bash
# Issue 24's next GPU session in one chain (run from the repo root on the device machine, detached):
#   1. bench/quality_gpu.sh: DATA_SCENES (default 128) stand-in scenes rendered on the device, the
#      view-direction RoPE teacher (pose_rays) trained TRAIN_MIN minutes (default 12) keeping a snapshot
#      every SNAPSHOT_EVERY steps (default 1500), the curve of quality against training over the
#      snapshots (PSNR, no RPE: bench/quality_curve.py) and the final checkpoint's full evaluation;
#   2. bench/student_gpu.sh from that teacher, on the same shards: a 4-step ODE student trained
#      ODE_MIN minutes (default 3) with the memory it is evaluated with, past frames retrieved by view
#      overlap at full resolution (memory.select view, pool [1], max_old 4), then evaluated at 9 frames
#      and at 33 with that memory and window-only (the revisit table);
#   3. bench/student.py --sections reaction --graphs (issue 25's action-to-first-frame latency).
# About 28 minutes on an H100: a whole session's device time. A device machine is given back after
# 30 s idle, so start it detached and collect it with back-to-back calls, each ending in
#   tar -C /tmp/r --exclude='*.png' -czf "$OUT/results.tgz" results
# (a collect call that comes late finds a fresh machine: the run is lost, as on 2026-12-06; the same day a
# collect call made at once found no machine either). Each snapshot of the curve is evaluated beside the
# training as soon as it is written (quality_gpu.sh: quality_curve.py --follow), so the first collect call
# already brings back the points measured by then.
set -euo pipefail
export RUNS=${RUNS:-/tmp/r}
source "$(dirname "$0")/gpu_common.sh"
DATA_SCENES=${DATA_SCENES-128} SNAPSHOT_EVERY=${SNAPSHOT_EVERY:-1500} TRAIN_MIN=${TRAIN_MIN:-12} ARMS=pose_rays \
  CURVE_ARGS=--no-rpe bash bench/quality_gpu.sh
ln -sfn "$RUNS/teacher_pose_rays" "$RUNS/teacher"
if [[ -d "$RUNS/data/shards" ]]; then
  SHARDS=$(shard_pattern "$RUNS/data/shards")
  export SHARDS
fi
STAGES=ode,eval ODE_MIN=${ODE_MIN:-3} EVAL_STUDENTS=ode \
  STUDENT_ARGS="--set student.memory.select=view --set student.memory.pool=[1] --set student.memory.max_old=4" \
  bash bench/student_gpu.sh
say reaction
student_bench student_reaction_graphs --preset small --sections reaction --graphs
say "chain done"
