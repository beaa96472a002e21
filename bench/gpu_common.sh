# Sourced by the bench/*_gpu.sh scripts after they set RUNS (and optionally DATA, SCENES):
# the held-out scenes, results folder, worker counts, eval arguments, `say` and the GPU's identity.
DATA=${DATA:-.device/data}
SCENES=${SCENES:-$(< "$(dirname "${BASH_SOURCE[0]}")/held_out_scenes.txt")}
RES="$RUNS/results"
export PYTHONUNBUFFERED=1
mkdir -p "$RES"
W=$(( $(nproc) - 2 ))
ev=(--scenes "$SCENES" --workers "$(nproc)" --cache "$RUNS/evalset.npz")
say() { echo "== $* $(date +%T)" | tee -a "$RES/stages.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RES/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" >> "$RES/gpu.txt"
# the brace pattern of every train shard in a folder (bench/device_data.py's output): shard_pattern DIR
shard_pattern() {
  local last
  last=$(ls "$1"/train-*.tar | sort | tail -1 | sed 's/.*train-0*\([0-9]*\)\.tar/\1/')
  echo "$1/train-{000000..$(printf %06d "${last:-0}")}.tar"
}
# with DATA_SCENES set: the train shards rendered on the device first (bench/device_data.py: that many
# stand-in scenes, none of them an eval scene, into $RUNS/data, once per RUNS; DATA_ARGS: its
# --set KEY=VALUE arguments, e.g. "--set clips.window.frames=97" for samples a data.frame_step of 3 can
# take 33 frames from), and SHARDS names them; without it SHARDS is left as it is:   device_shards
device_shards() {
  [[ -n "${DATA_SCENES:-}" ]] || return 0
  if [[ ! -f "$RUNS/data/data.json" ]]; then
    say "render $DATA_SCENES scenes ${DATA_ARGS:-}"
    # shellcheck disable=SC2086  # DATA_ARGS: more arguments
    python3 bench/device_data.py --scenes "$DATA_SCENES" --out "$RUNS/data" --workers "$(nproc)" ${DATA_ARGS:-} \
      | tee "$RES/data.json"
  fi
  SHARDS=$(shard_pattern "$RUNS/data/shards")
}
# bench/student.py, its figures in $RES/NAME.json and what it prints in $RES/NAME.txt (compile warnings
# dropped):   student_bench NAME [bench/student.py arguments]
student_bench() {
  local name=$1
  shift
  python3 bench/student.py "$@" --json "$RES/$name.json" 2>&1 | grep -v "^W1" | tee "$RES/$name.txt"
}
# the speed half of issue 25's speed/quality curve (frames/s of the CURVE_STEPS students, each with the
# CURVE_COMMITS, and the teacher at CURVE_TEACHER_STEPS, CFG 1 and 2, at CURVE_BATCHES streams: 1, 16 and
# 64 by default, where a 1-step student's small blocks fill more of the GPU) in $RES/speed_curve.*:
#   speed_curve [more bench/student.py arguments: --preset, --graphs]
speed_curve() {
  student_bench speed_curve --sections curve --student-steps "${CURVE_STEPS:-1,2,4}" \
    --curve-commits "${CURVE_COMMITS:-clean,fold}" \
    --curve-teacher-steps "${CURVE_TEACHER_STEPS:-10,20,50}" --teacher-cfg 2 --curve-batches "${CURVE_BATCHES:-1,16,64}" "$@"
}
# STOP_AFTER_S: this call's time limit, for work longer than one device call. Every stage run through
# `limited` gets what is left of it, then a SIGTERM (the trainers save the step reached and exit; the
# same command resumes them); a script run again on the warm machine skips what is `finished`.
deadline=$(( SECONDS + ${STOP_AFTER_S:-1000000} ))
limited() {  # limited COMMAND...: under what is left of STOP_AFTER_S, if set
  if [[ -n "${STOP_AFTER_S:-}" ]]; then
    timeout -s TERM "$(( deadline - SECONDS > 1 ? deadline - SECONDS : 1 ))" "$@"
  else
    "$@"
  fi
}
# await PID...: wait for stages run side by side; if one failed, stop the script: with exit 0 and how to
# go on when STOP_AFTER_S came first, with the stage's status otherwise
await() {
  local status=0 pid
  for pid in "$@"; do wait "$pid" || status=$?; done
  (( status == 0 )) && return 0
  if [[ -n "${STOP_AFTER_S:-}" ]] && (( SECONDS >= deadline - 1 )); then
    say "this call's STOP_AFTER_S=$STOP_AFTER_S came first: run the same command again at once (same RUNS) to go on"
    exit 0
  fi
  say "a stage failed (exit $status): see its log in $RES"
  exit "$status"
}
alone() { "$@" & await $!; }  # alone COMMAND...: one stage, stopped as `await` says
# finished RUN [STEPS]: the training run in RUN ended by its budget (at STEPS steps, if given), not stopped
finished() {
  [[ -f "$1/summary.json" ]] && python3 -c "import json, sys; s = json.load(open(sys.argv[1])); \
    sys.exit(bool(s['stopped']) or (len(sys.argv) > 2 and s['steps'] != int(sys.argv[2])))" "$1/summary.json" ${2:+"$2"}
}
# the small teacher trained on $SHARDS with every data worker, a log record every 1,000 steps, under
# STOP_AFTER_S (`limited`):   teacher_stage OUT [more training.teacher arguments: budget, --compile, --set ...]
teacher_stage() {
  local out=$1
  shift
  limited python3 -m training.teacher --shards "$SHARDS" --preset "${PRESET:-small}" --set data.workers="$W" \
    --out "$out" --progress-every 1000 "$@"
}
# the ODE stage's recipe from the teacher at $RUNS/teacher on $SHARDS, under STOP_AFTER_S (`limited`):
# 17-frame clips (the teacher with position interpolation 0.5 = 2x its clips), 4 updates per teacher
# trajectory batch, EMA 0.99:
#   ode_stage OUT MINUTES [more training.student_train arguments]
ode_stage() {
  local out=$1 minutes=$2
  shift 2
  limited python3 -m training.student_train --stage ode --teacher "$RUNS/teacher/checkpoint.pt" --shards "$SHARDS" \
    --out "$out" --minutes "$minutes" --set data.workers="$W" --set data.frames=17 --set data.batch_size=16 \
    --set teacher_rope_time_scale=0.5 --set ode_reuse=4 --set ema_decay=0.99 "$@"
}
