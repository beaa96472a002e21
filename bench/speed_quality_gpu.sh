#!/usr/bin/env bash
# Issue 25's speed/quality curve on one GPU (run from the repo root on the device machine, detached:
# about 25 minutes on an H100, a session's device time; collect as bench/quality_chain_gpu.sh says).
#   teacher  : the small teacher, view-direction RoPE (TEACHER_ARGS), TRAIN_MIN minutes (default 5), compiled
#   samplers : the teacher evaluated at 9 frames with each "steps:cfg" of SAMPLERS (default "20:1 10:1 50:1
#              20:2"; RPE for the first, PSNR only for the rest unless RPE_ALL=1)
#   students : for each n of STEP_COUNTS (default "4 2 1 1f"), an ODE student with n steps per block
#              (training.student.warped_steps(n); "nf": n steps with the commit folded into the last,
#              student.commit=fold) trained ODE_MIN minutes (default 3) from that teacher, as
#              bench/student_gpu.sh's ode stage, evaluated at 9 frames with RPE
#   speed    : bench/student.py --sections curve --graphs: frames/s of 1-, 2-, 4-step students (commit clean
#              and folded) and the teacher at 10/20/50 steps, CFG 1 and 2, at batches 1 and 16 (random
#              weights; CURVE_STEPS, CURVE_COMMITS, CURVE_TEACHER_STEPS must cover STEP_COUNTS and SAMPLERS)
#   join     : bench/speed_quality.py: the table, the curve and the headline (fastest student within
#              1.5 dB of the best teacher sampler, its frames/s against that sampler's; target 10x)
#   PARALLEL=1: the students train at the same time on the one GPU while the teacher's samplers are
#              evaluated, then are evaluated at the same time (the quality half in one device call:
#              PARALLEL=1 SPEED=0 TRAIN_MIN=2.5 ODE_MIN=2.5, an estimated 8 minutes on an H100)
#   SPEED=0   : no speed stage (time it in its own call, alone on the GPU: STAGES=curve bash
#              bench/student_gpu.sh); SPEED_JSON=FILE joins with such a file
#   COMPILE=0 : the teacher eager (a CPU smoke run)
#   DATA_SCENES, DATA_ARGS: train on shards rendered on the device (gpu_common.sh's device_shards; with the
#              RUNS of a bench/student_gpu.sh run, its teacher and shards are reused); STUDENT_ARGS, EVAL_ARGS:
#              more arguments of the students' trainings and of every evaluation (e.g. "--no-rpe")
#   STOP_AFTER_S: this call's time limit; the same command run again on the warm machine (same RUNS)
#              skips the trainings and evaluations done and resumes a stopped one (bench/gpu_common.sh)
# Results in $RUNS/results (default RUNS=/tmp/sq).
set -euo pipefail
RUNS=${RUNS:-/tmp/sq}
source "$(dirname "$0")/gpu_common.sh"
device_shards  # DATA_SCENES (and DATA_ARGS): train on shards rendered here (or by bench/student_gpu.sh, same RUNS)
SHARDS=${SHARDS:-"$DATA/train-{000000..000006}.tar"}
say teacher
compile=(--compile); [ "${COMPILE:-1}" = 1 ] || compile=()  # COMPILE=0: eager (a CPU smoke run)
if ! finished "$RUNS/teacher"; then
  # shellcheck disable=SC2086  # TEACHER_ARGS: more arguments
  alone teacher_stage "$RUNS/teacher" --minutes "${TRAIN_MIN:-5}" "${compile[@]}" ${TEACHER_ARGS:---set model.spatial_rope=rays}
fi
cp "$RUNS/teacher/summary.json" "$RES/teacher_summary.json"
teacher_evals() {
  local first=1 sampler steps cfg rpe
  for sampler in ${SAMPLERS:-20:1 10:1 50:1 20:2}; do
    steps=${sampler%:*}; cfg=${sampler#*:}
    rpe=(); [[ $first = 1 || "${RPE_ALL:-0}" = 1 ]] || rpe=(--no-rpe); first=0
    [[ -f "$RES/eval_teacher_s${steps}_g${cfg}/metrics.json" ]] && continue  # done by an earlier call
    say "eval teacher $steps steps CFG $cfg"
    # shellcheck disable=SC2086  # EVAL_ARGS: more training.eval arguments
    limited python3 -m training.eval --checkpoint "$RUNS/teacher/checkpoint.pt" "${ev[@]}" --frames 9 --steps "$steps" \
      --guidance "$cfg" "${rpe[@]}" ${EVAL_ARGS:-} --out "$RES/eval_teacher_s${steps}_g${cfg}"
  done
}
train_student() {  # train_student N WORKERS: the N-step ODE student ("Nf": its commit folded)
  local schedule commit=clean
  [[ $1 == *f ]] && commit=fold
  finished "$RUNS/ode_s$1" && return 0  # trained by an earlier call
  schedule=$(python3 -c "from training.student import warped_steps; print(list(warped_steps(${1%f})))" | tr -d ' ')
  say "ode student, ${1%f} step(s): $schedule, commit $commit"
  # shellcheck disable=SC2086  # STUDENT_ARGS: more arguments
  ode_stage "$RUNS/ode_s$1" "${ODE_MIN:-3}" --set "student.steps=$schedule" --set "student.commit=$commit" \
    --set data.workers="$2" ${STUDENT_ARGS:-}
  if [[ -f "$RUNS/ode_s$1/log.jsonl" ]]; then cp "$RUNS/ode_s$1/log.jsonl" "$RES/ode_s$1_log.jsonl"; fi
}
eval_student() {
  [[ -f "$RES/eval_student_s$1/metrics.json" ]] && return 0  # done by an earlier call
  say "eval student, $1 step(s)"
  # shellcheck disable=SC2086  # EVAL_ARGS: more training.eval arguments
  limited python3 -m training.eval --checkpoint "$RUNS/ode_s$1/checkpoint.pt" --student "${ev[@]}" --frames 9 \
    --revisit none ${EVAL_ARGS:-} --out "$RES/eval_student_s$1"
}
counts=(${STEP_COUNTS:-4 2 1 1f})
if [[ "${PARALLEL:-0}" = 1 ]]; then
  # one GPU, several processes: the small model leaves most of an H100 idle, so the students train at
  # the same time (equal minutes under the same contention; their steps are in the logs) while the
  # teacher's samplers are evaluated (the first builds the eval set's cache the student evals reuse)
  per=$(( W / (${#counts[@]} + 1) )); (( per >= 1 )) || per=1
  pids=()
  teacher_evals & pids+=($!)
  for n in "${counts[@]}"; do train_student "$n" "$per" & pids+=($!); done
  await "${pids[@]}"
  pids=()
  for n in "${counts[@]}"; do eval_student "$n" & pids+=($!); done
  await "${pids[@]}"
else
  alone teacher_evals
  for n in "${counts[@]}"; do alone train_student "$n" "$W"; alone eval_student "$n"; done
fi
speed=${SPEED_JSON:-}
if [[ "${SPEED:-1}" = 1 ]]; then
  say speed
  graphs=(--graphs); [[ "${GRAPHS:-1}" = 1 ]] || graphs=()  # GRAPHS=0: eager (a CPU smoke run)
  speed_curve --preset "${PRESET:-small}" "${graphs[@]}"
  speed=$RES/speed_curve.json
fi
rm -f "$RES"/eval_*/grid.png
if [[ -n "$speed" ]]; then
  say join
  python3 bench/speed_quality.py --speed "$speed" "$RES"/eval_teacher_s* "$RES"/eval_student_s* --out "$RES/speed_quality"
else
  say "no join: SPEED=0 and no SPEED_JSON (join later: bench/speed_quality.py --speed FILE $RES/eval_*)"
fi
say done
