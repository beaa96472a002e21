#!/usr/bin/env bash
# The student experiment of issue 8 on one GPU (run from the repo root on the device machine).
# A teacher checkpoint cannot travel back from the device, so the whole chain runs on one machine:
#   bench   : bench/student.py (memory vs rollout length, frames/s by batch, latency), random weights
#   compiled: (not in all) frames/s at batch 64 with the forward compiled, static memory views
#   graphs  : (not in all) frames/s by batch with CUDA graphs (student: one per block, teacher: one per
#             clip), eager and compiled, the action-to-first-frame latency at batch 1 in both (reaction),
#             plus the CUDA graph test of tests/test_student.py
#   latency : (not in all) per-frame latency at frame 20 and 300, compressed memory vs full cache, with CUDA
#             graphs at batches 1 and 16 (the full cache at frame f timed as a graphed block over exactly
#             that cache) and eager at batch 16, where compute dominates (issue 25's latency growth)
#   reaction: (not in all) the action-to-first-frame latency at batch 1 with CUDA graphs, eager and compiled,
#             students with each step count of REACTION_STEPS (default 1,2,4) vs the teacher
#   curve   : (not in all) the speed half of the speed/quality curve: frames/s of 1-, 2- and 4-step students
#             and the teacher at 10/20/50 steps, CFG 1 and 2, at batches 1 and 16, CUDA graphs
#             (as bench/speed_quality_gpu.sh's speed stage)
#   profile : (not in all) where a block's time goes at batch PROFILE_BATCH (default 16), CUDA graphs: wall
#             time against the device's busy time and the eager ops per block around the graphs, for the
#             students of PROFILE_STUDENTS (default "1f 1": one step, folded and with its commit)
#   teacher : the small teacher, 9-frame clips, TRAIN_MIN minutes, compiled (as bench/teacher_gpu.sh)
#   ode     : ODE init with hybrid forcing, ODE_MIN minutes, 17-frame clips (teacher with position
#             interpolation 0.5 = 2x its clips), 4 updates per teacher trajectory batch, EMA 0.99,
#             noisy blocks at random clip positions (ode_prefix random)
#             (EMA, the ODE stage's default beta1 0.9 and ode_prefix came after run 2, which had none)
#   dmd     : DMD from the ODE checkpoint, DMD_MIN minutes, self-rollouts of 33 frames; the real and fake
#             scores see random DMD_WINDOW-frame windows of them (default 9, the teacher's clips), or with
#             DMD_WINDOW=0 the whole rollout with the teacher's positions stretched 4x (run 2 and run 5);
#             DMD_GUIDANCE the real score's CFG (default 1, the teacher's own sampler; runs 2-6 and 11 used 2),
#             DMD_EMA the generator EMA (default 0.99, as run 7; runs 2-6 and 11 had none)
#             DMD_CONTEXT=K: context forcing, the scores also see K earlier rollout frames (the teacher
#             trained with TEACHER_ARGS="--set data.frames=33 --set context.frames=K")
#   eval    : teacher vs students at 9 frames; students with compressed memory vs window-only (pool 0)
#             on 33-frame clips, whose out-and-back scripts return to the first pose after 32 frames
#             (4x the 8-frame window); EVAL_LONG=0 skips the 33-frame pair; EVAL_VIEW=K adds the same
#             students reading K older frames retrieved by view overlap (memory.select view)
#   STOP_AFTER_S: the teacher, ode, dmd and eval stages stop at this call's limit (gpu_common.sh) and the same
#             command, run again at once on the warm machine, resumes them: a training that ended by its
#             budget and an evaluation already written are not run again
#   EVAL_TEACHER=0 skips the teacher's evaluation; ODE_EVAL_ARGS: more arguments of the ODE student's
#             (e.g. "--no-rpe"; its revisit table comes with it, by the student's own memory);
#             EVAL_ARGS: more arguments of every evaluation (e.g. "--no-rpe --revisit none": PSNR and SSIM
#             only, a few times faster); EVAL_WINDOW=0 skips the 33-frame window-only evaluation (the
#             9-frame evaluation's revisit table has window-only returns already)
#   TEACHER_ARGS more arguments of the teacher stage (e.g. "--set model.spatial_rope=rays"); the
#             students inherit the teacher's model config
#   DATA_SCENES, DATA_ARGS: every stage trains on shards rendered on the device (gpu_common.sh's
#             device_shards), e.g. at 5 fps from 15 fps shards (TEACHER_ARGS and STUDENT_ARGS
#             "--set data.frame_step=3"), whose 33-frame DMD rollouts span 97 stored frames:
#             DATA_SCENES=128 DATA_ARGS="--set clips.window.frames=97"
#   STUDENT_ARGS more arguments of the ODE and DMD stages, e.g. a student trained with the memory it
#             is evaluated with: "--set student.memory.select=view --set student.memory.pool=[1]
#             --set student.memory.max_old=4" (then EVAL_VIEW=4 scores it that way)
# STAGES=all runs them in that order (about 28 minutes on an H200: bench 3, teacher 8 + eval 1, ODE 7 + eval 0.5,
# DMD 4, evals 5.5; run 2 in bench/results/student/run2_*). A machine is held at most 30 minutes, so a
# longer DMD must come out of the rest: e.g. STAGES=teacher,ode,dmd,eval ODE_MIN=5 DMD_MIN=9
# EVAL_STUDENTS=dmd. Because one device command may
# run 10 minutes, launch it detached and collect with short calls while the machine stays warm:
#   setsid nohup env STAGES=all bash bench/student_gpu.sh > /tmp/runs.log 2>&1 &
#   ... then: tar -C /tmp/runs --exclude='*.png' -czf "$OUT/results.tgz" results   (every figure; the
#   grids exceed the 16 MiB a returned file may have)
set -euo pipefail
STAGES=${STAGES:?set STAGES=all or a comma list of bench,compiled,graphs,reaction,latency,curve,profile,teacher,ode,dmd,eval}
[ "$STAGES" = all ] && STAGES=bench,teacher,ode,dmd,eval
RUNS=${RUNS:-/tmp/runs}
source "$(dirname "$0")/gpu_common.sh"
device_shards  # DATA_SCENES (and DATA_ARGS): train on shards rendered here
SHARDS=${SHARDS:-"$DATA/train-{000000..000006}.tar"}
has() { [[ ",$STAGES," == *",$1,"* ]]; }
if has bench; then
  say bench
  python3 bench/student.py --preset small --json "$RES/student_bench.json" | tee "$RES/student_bench.txt"
fi
if has compiled; then
  say compiled
  student_bench student_speed_compiled --preset small --sections speed --batches 64 --compile
fi
if has graphs; then
  say graphs
  python3 -m pytest -q -p no:cacheprovider tests/test_student.py -k captured 2>&1 | tail -3 | tee "$RES/graphs_test.txt"
fi
for mode in graphs compiled_graphs; do  # graphs: frames/s and reaction; reaction alone: reaction
  flags=(--graphs); [ $mode = compiled_graphs ] && flags+=(--compile)
  if has graphs; then
    student_bench "student_speed_$mode" --preset small --sections speed --batches "${BATCHES:-1,8,64}" "${flags[@]}"
  fi
  if has graphs || has reaction; then
    say "reaction $mode"
    student_bench "student_reaction_$mode" --preset small --sections reaction --reaction-steps "${REACTION_STEPS:-1,2,4}" \
      "${flags[@]}"
  fi
done
if has latency; then
  say latency
  student_bench student_latency_graphs --preset small --sections latency --graphs --latency-batches 1,16
  student_bench student_latency_eager16 --preset small --sections latency --latency-batches 16
fi
if has curve; then
  say curve
  speed_curve --preset small --graphs
fi
if has profile; then
  for who in ${PROFILE_STUDENTS:-1f 1}; do
    say "profile $who"
    student_bench "student_profile_$who" --preset small --sections profile --graphs --profile-student "$who" \
      --profile-batch "${PROFILE_BATCH:-16}"
  done
fi
compile=(--compile); [ "${COMPILE:-1}" = 1 ] || compile=()  # COMPILE=0: eager (a CPU smoke run)
# evaluate OUT ARGS...: training.eval into $RES/OUT under STOP_AFTER_S, unless an earlier call wrote it
evaluate() {
  local out=$1
  shift
  # shellcheck disable=SC2086  # EVAL_ARGS: more training.eval arguments
  [[ -f "$RES/$out/metrics.json" ]] || alone limited python3 -m training.eval "$@" "${ev[@]}" ${EVAL_ARGS:-} \
    --out "$RES/$out"
}
if has teacher; then
  say teacher
  # shellcheck disable=SC2086  # TEACHER_ARGS: more arguments, e.g. "--set model.spatial_rope=rays"
  finished "$RUNS/teacher" || alone teacher_stage "$RUNS/teacher" --minutes "${TRAIN_MIN:-7}" "${compile[@]}" \
    ${TEACHER_ARGS:-}
  cp "$RUNS/teacher/summary.json" "$RES/teacher_summary.json"
  if [ "${EVAL_TEACHER:-1}" = 1 ]; then
    evaluate eval_teacher9 --checkpoint "$RUNS/teacher/checkpoint.pt" --frames 9
  fi
fi
if has ode; then
  say ode
  # shellcheck disable=SC2086  # STUDENT_ARGS: more arguments
  finished "$RUNS/ode" || alone ode_stage "$RUNS/ode" "${ODE_MIN:-7}" ${STUDENT_ARGS:-}
  cp "$RUNS/ode/log.jsonl" "$RES/ode_log.jsonl"
  # shellcheck disable=SC2086  # ODE_EVAL_ARGS: more training.eval arguments
  evaluate eval_ode9 --checkpoint "$RUNS/ode/checkpoint.pt" --student --frames 9 ${ODE_EVAL_ARGS:-}
fi
if has dmd; then
  if [ "${DMD_WINDOW:-9}" = 0 ]; then dmd_scores=(--set teacher_rope_time_scale=0.25)  # run 2: whole rollout, stretched
  else dmd_scores=(--set dmd.window="${DMD_WINDOW:-9}"); fi  # windows of the teacher's clip length
  dmd_scores+=(--set dmd.guidance="${DMD_GUIDANCE:-1.0}" --set ema_decay="${DMD_EMA:-0.99}")
  [[ -n "${DMD_CONTEXT:-}" ]] && dmd_scores+=(--set dmd.context="$DMD_CONTEXT")  # context forcing
  say dmd
  # shellcheck disable=SC2086  # STUDENT_ARGS: more arguments
  finished "$RUNS/dmd" || alone limited python3 -m training.student_train --stage dmd \
    --teacher "$RUNS/teacher/checkpoint.pt" --init "$RUNS/ode/checkpoint.pt" \
    --shards "$SHARDS" --out "$RUNS/dmd" --minutes "${DMD_MIN:-4}" --set data.workers=$W --set data.frames=33 \
    --set data.batch_size=16 "${dmd_scores[@]}" --set log_every=5 ${STUDENT_ARGS:-}
  cp "$RUNS/dmd/log.jsonl" "$RES/dmd_log.jsonl"
fi
if has eval; then
  for name in ${EVAL_STUDENTS:-dmd ode}; do
    S="$RUNS/$name/checkpoint.pt"
    [ -f "$S" ] || continue
    say "eval $name"
    [ "$name" = ode ] || evaluate "eval_${name}9" --checkpoint "$S" --student --frames 9
    [ "${EVAL_LONG:-1}" = 1 ] || continue
    evaluate "eval_${name}33_memory" --checkpoint "$S" --student --frames 33
    [ "${EVAL_WINDOW:-1}" = 0 ] || evaluate "eval_${name}33_window" --checkpoint "$S" --student --memory-pool 0 \
      --frames 33
    if [ -n "${EVAL_VIEW:-}" ]; then  # the same student reading EVAL_VIEW older frames retrieved by view overlap
      evaluate "eval_${name}33_view" --checkpoint "$S" --student --memory-select view --memory-pool 1 \
        --memory-max-old "$EVAL_VIEW" --frames 33
    fi
  done
fi
say done
