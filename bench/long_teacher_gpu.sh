#!/usr/bin/env bash
# Issue 24's teacher trained longer than one device call allows (10 minutes a command), over several
# calls made back to back on the same warm machine (it keeps $RUNS while warm: 30 s). Each call runs
# this same command: the teacher resumes from $RUNS/teacher, trains until STOP_AFTER_S seconds
# (default 420: a SIGTERM, on which it saves the step reached) or the end of its TRAIN_MIN budget
# (default 15; the learning rate anneals over the whole budget), while bench/quality_curve.py
# evaluates each snapshot (every SNAPSHOT_EVERY steps, default 1000) beside it; the call that ends the
# budget also evaluates the final checkpoint with RPE. Collect $RUNS/results after every call:
#   bash bench/long_teacher_gpu.sh; tar czf "$OUT/long.tgz" -C /tmp/long/results .  (a call brings back 8 files)
#   TEACHER_ARGS  more training.teacher arguments (default: view-direction RoPE, --compile)
#   CURVE_ARGS    more training.eval arguments for the snapshots (default --no-rpe)
set -euo pipefail
RUNS=${RUNS:-/tmp/long}
export STOP_AFTER_S=${STOP_AFTER_S:-420}  # before gpu_common.sh, which starts the call's clock
source "$(dirname "$0")/gpu_common.sh"
SHARDS=${SHARDS:-"$DATA/train-{000000..000008}.tar"}
run=$RUNS/teacher
say "teacher: ${TRAIN_MIN:-15} minutes in all, this call at most $STOP_AFTER_S s"
# shellcheck disable=SC2086  # TEACHER_ARGS: more arguments
teacher_stage "$run" --minutes "${TRAIN_MIN:-15}" --set snapshot_every="${SNAPSHOT_EVERY:-1000}" \
  ${TEACHER_ARGS:---compile --set model.spatial_rope=rays} &
teacher=$!
# shellcheck disable=SC2086  # CURVE_ARGS: more training.eval arguments
# under the same deadline: once the teacher has stopped, the curve would go on to evaluate the step it
# stopped at and carry the call past its limit (it did on 2026-12-07: the call was killed, nothing came back)
limited python3 bench/quality_curve.py "$run" --out "$RES/curve" --follow "$teacher" -- "${ev[@]}" --frames 9 \
  ${CURVE_ARGS:---no-rpe} &
curve=$!
status=0
wait "$teacher" || status=$?
curve_status=0
wait "$curve" || curve_status=$?
if (( curve_status == 124 )); then
  say "the curve was cut by STOP_AFTER_S (its evaluated points are kept; the next call goes on)"
elif (( curve_status != 0 )); then
  say "the curve failed (exit $curve_status); the teacher goes on"
fi
rm -f "$RES"/curve/eval_step*/grid.png
cp "$run/log.jsonl" "$RES/teacher_log.jsonl"
cp "$run/summary.json" "$RES/teacher_summary.json"
read -r steps stopped < <(python3 -c "import json, sys; s = json.load(open(sys.argv[1])); print(s['steps'], s['stopped'] or '')" \
  "$run/summary.json")
if [[ $status -ne 0 && -z "$stopped" ]]; then
  say "the teacher failed (exit $status)"
  exit "$status"
fi
if [[ -n "$stopped" ]]; then
  say "stopped by $stopped at step $steps: run this command again at once (same RUNS) to go on"
  exit 0
fi
say "budget spent: final evaluation"
python3 -m training.eval --checkpoint "$run/checkpoint.pt" "${ev[@]}" --frames 9 --out "$RES/eval_teacher9"
rm -f "$RES"/eval_teacher9/grid.png
say done
