#!/usr/bin/env bash
# Issue 25's speed/quality curve on one GPU (run from the repo root on the device machine, detached:
# about 25 minutes on an H100, a session's device time; collect as bench/quality_chain_gpu.sh says).
#   teacher  : the small teacher, view-direction RoPE (TEACHER_ARGS), TRAIN_MIN minutes (default 5), compiled
#   samplers : the teacher evaluated at 9 frames with each "steps:cfg" of SAMPLERS (default "20:1 10:1 50:1
#              20:2"; RPE for the first, PSNR only for the rest unless RPE_ALL=1)
#   students : for each n of STEP_COUNTS (default "4 2 1"), an ODE student with n steps per block
#              (training.student.warped_steps(n)) trained ODE_MIN minutes (default 3) from that teacher,
#              as bench/student_gpu.sh's ode stage, evaluated at 9 frames with RPE
#   speed    : bench/student.py --sections curve --graphs: frames/s of 1-, 2-, 4-step students and the
#              teacher at 10/20/50 steps, CFG 1 and 2, at batches 1 and 16 (random weights; CURVE_STEPS,
#              CURVE_TEACHER_STEPS must cover STEP_COUNTS and SAMPLERS)
#   join     : bench/speed_quality.py: the table, the curve and the headline (fastest student within
#              1.5 dB of the best teacher sampler, its frames/s against that sampler's; target 10x)
# Results in $RUNS/results (default RUNS=/tmp/sq).
set -euo pipefail
RUNS=${RUNS:-/tmp/sq}
source "$(dirname "$0")/gpu_common.sh"
SHARDS=${SHARDS:-"$DATA/train-{000000..000006}.tar"}
say teacher
# shellcheck disable=SC2086  # TEACHER_ARGS: more arguments
python3 -m training.teacher --shards "$SHARDS" --preset "${PRESET:-small}" --set data.workers=$W --out "$RUNS/teacher" \
  --minutes "${TRAIN_MIN:-5}" --compile --progress-every 1000 ${TEACHER_ARGS:---set model.spatial_rope=rays}
cp "$RUNS/teacher/summary.json" "$RES/teacher_summary.json"
first=1
for sampler in ${SAMPLERS:-20:1 10:1 50:1 20:2}; do
  steps=${sampler%:*}; cfg=${sampler#*:}
  rpe=(); [[ $first = 1 || "${RPE_ALL:-0}" = 1 ]] || rpe=(--no-rpe); first=0
  say "eval teacher $steps steps CFG $cfg"
  python3 -m training.eval --checkpoint "$RUNS/teacher/checkpoint.pt" "${ev[@]}" --frames 9 --steps "$steps" \
    --guidance "$cfg" "${rpe[@]}" --out "$RES/eval_teacher_s${steps}_g${cfg}"
done
for n in ${STEP_COUNTS:-4 2 1}; do
  schedule=$(python3 -c "from training.student import warped_steps; print(list(warped_steps($n)))" | tr -d ' ')
  say "ode student, $n step(s): $schedule"
  # shellcheck disable=SC2086  # STUDENT_ARGS: more arguments
  ode_stage "$RUNS/ode_s$n" "${ODE_MIN:-3}" --set "student.steps=$schedule" ${STUDENT_ARGS:-}
  cp "$RUNS/ode_s$n/log.jsonl" "$RES/ode_s${n}_log.jsonl"
  python3 -m training.eval --checkpoint "$RUNS/ode_s$n/checkpoint.pt" --student "${ev[@]}" --frames 9 \
    --revisit none --out "$RES/eval_student_s$n"
done
say speed
graphs=(--graphs); [[ "${GRAPHS:-1}" = 1 ]] || graphs=()  # GRAPHS=0: eager (a CPU smoke run)
python3 bench/student.py --preset "${PRESET:-small}" --sections curve "${graphs[@]}" --student-steps "${CURVE_STEPS:-1,2,4}" \
  --curve-teacher-steps "${CURVE_TEACHER_STEPS:-10,20,50}" --teacher-cfg 2 --curve-batches 1,16 --json "$RES/speed_curve.json" 2>&1 \
  | grep -v "^W1" | tee "$RES/speed_curve.txt"
say join
python3 bench/speed_quality.py --speed "$RES/speed_curve.json" "$RES"/eval_teacher_s* "$RES"/eval_student_s* \
  --out "$RES/speed_quality"
rm -f "$RES"/eval_*/grid.png
say done
