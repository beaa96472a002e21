#!/usr/bin/env bash
# Issue 27's experiment on one GPU (run from the repo root on the device machine): does pretraining
# on plain video, then tuning with actions, beat training on action-labelled data alone at equal
# compute, and how does that depend on how much action-labelled data there is?
#
# Compute is counted in optimiser steps at one batch size (the runs share the GPU, so wall minutes
# would not be equal): `scratch_A` trains STEPS steps on A action-labelled scenes; `tune_A` starts
# from a plain video model (`model.conditioned=false`, no action or camera input at all) trained
# PRE steps on PLAIN scenes disjoint from both the action-labelled and the held-out ones, and tunes
# STEPS-PRE steps on the same A scenes with the conditioning added (zero-initialised: `--init`).
# With GAP=1 a second plain model is pretrained on streets only (a domain gap: one scene kind
# against four) and tuned the same way (`tunegap_A`). Every model is evaluated at 9 frames on the
# held-out scripts (PSNR and RPE next to copy-first and shuffled actions), and each tuned model is
# paired against its scratch model on the same clips (training.eval.compare).
#   AMOUNTS  action-labelled scene counts (default "4 16"); scenes from seed 100, all four kinds in turn
#   STEPS    steps per arm (default 1200); PRE: pretraining steps of it (default STEPS/2), or several
#            ("300 600 900": the budget's splits; then every pretrained and tuned arm is named by its
#            split: pretrain_p300, tune_p300_16, ...)
#   PLAIN    plain-video scenes (default 64; seeds from 1000)
#   TRAIN_ARGS / EVAL_ARGS  more arguments for every training.teacher / training.eval (a CPU smoke
#            run: PRESET=tiny TRAIN_ARGS="--set model.height=72 --set model.width_px=128" ...)
#   REUSE    the results folder of an earlier run with the same STEPS, PRESET, plain and held-out scenes:
#            the amounts it evaluated a scratch model for are not trained from scratch again, its
#            evaluations are paired with instead (same clips; training.eval.compare checks). With it, more
#            splits fit one device call: REUSE=bench/results/pretrain AMOUNTS=16 PRE="300 900"
#   STOP_AFTER_S  this call's time limit: every training and evaluation gets what is left of it (a
#            SIGTERM: the teacher saves the step it reached). The same command run again on the warm
#            machine (same RUNS) goes on: renders, trainings and evaluations already done are skipped,
#            a stopped training resumes. Three splits at one amount take ~13 minutes on an H100, past
#            one device call's 10. Collect the results as one file (a call brings back 8 files):
#              STOP_AFTER_S=540 bash bench/pretrain_gpu.sh; tar czf "$OUT/pretrain.tgz" -C /tmp/pretrain/results .
set -euo pipefail
RUNS=${RUNS:-/tmp/pretrain}
source "$(dirname "$0")/gpu_common.sh"
STEPS=${STEPS:-1200}
PRES=${PRE:-$((STEPS / 2))}
for p in $PRES; do
  (( p > 0 && p < STEPS )) || { echo "PRE=$p: each split must be between 0 and STEPS=$STEPS" >&2; exit 2; }
done
splits=$(wc -w <<< "$PRES")
split() { if (( splits > 1 )); then echo "_p$1"; fi; }  # the arm names' tag of split $1
kinds=(""); [[ "${GAP:-0}" == 1 ]] && kinds+=(gap)  # the plain models: matched, and with GAP=1 streets only
AMOUNTS=${AMOUNTS:-4 16}
PRESET=${PRESET:-small}
NPROC=$(nproc)
render() {  # scenes first_seed out [kinds]
  [[ -f "$3/data.json" ]] && return 0  # rendered by an earlier call
  rm -rf "$3"
  limited python3 bench/device_data.py --scenes "$1" --first-seed "$2" --out "$3" --workers "$NPROC" \
    ${4:+--kinds "$4"} > "$RES/data_$(basename "$3").json"
}
teacher() {  # out steps shards workers [extra args]
  local out=$1 steps=$2 shards=$3 workers=$4 status=0
  shift 4
  finished "$RUNS/$out" "$steps" && return 0  # trained to the end by an earlier call
  limited python3 -m training.teacher --shards "$shards" --preset "$PRESET" --set data.workers="$workers" \
    --steps "$steps" --out "$RUNS/$out" --progress-every 100000 ${TRAIN_ARGS:-} "$@" >> "$RES/$out.log" 2>&1 \
    || status=$?
  if [[ -f "$RUNS/$out/summary.json" ]]; then cp "$RUNS/$out/summary.json" "$RES/${out}_summary.json"; fi
  if [[ -f "$RUNS/$out/log.jsonl" ]]; then cp "$RUNS/$out/log.jsonl" "$RES/${out}_log.jsonl"; fi
  return "$status"
}
evaluate() {  # name workers
  [[ -f "$RES/eval_$1/metrics.json" ]] && return 0  # evaluated by an earlier call
  limited python3 -m training.eval --checkpoint "$RUNS/$1/checkpoint.pt" --scenes "$SCENES" --workers "$2" \
    --cache "$RUNS/evalset.npz" --out "$RES/eval_$1" --frames 9 ${EVAL_ARGS:-} > "$RES/eval_$1.log" 2>&1
  rm -f "$RES/eval_$1/grid.png"
}

PLAIN_SCENES=${PLAIN:-64}
say "render: plain $PLAIN_SCENES scenes, action-labelled $AMOUNTS"
alone render "$PLAIN_SCENES" 1000 "$RUNS/plain"
[[ "${GAP:-0}" == 1 ]] && alone render "$PLAIN_SCENES" 2000 "$RUNS/plaingap" street
for a in $AMOUNTS; do alone render "$a" 100 "$RUNS/action$a"; done

reused() {  # reused A: the scratch model of amount A was evaluated by the REUSE run (copied here)
  [[ -n "${REUSE:-}" && -f "$REUSE/eval_scratch_$1/metrics.json" ]] || return 1
  [[ -f "$RES/eval_scratch_$1/metrics.json" ]] || cp -r "$REUSE/eval_scratch_$1" "$RES/"
  echo "scratch_$1: the evaluation of $REUSE/eval_scratch_$1 (not trained again)" >> "$RES/reused.txt"
}
rm -f "$RES/reused.txt"  # said again by every call
scratch=()  # the amounts whose scratch model this run trains
for a in $AMOUNTS; do reused "$a" || scratch+=("$a"); done
amounts=$(wc -w <<< "$AMOUNTS")
phase1=$(( ${#scratch[@]} + splits * ${#kinds[@]} )) phase2=$(( amounts * splits * ${#kinds[@]} ))
runs=$(( phase1 > phase2 ? phase1 : phase2 ))  # training runs side by side at most
workers=$(( (NPROC - 2) / runs > 0 ? (NPROC - 2) / runs : 1 ))
say "phase 1: pretrain ($PRES steps)${scratch[*]:+ and scratch ($STEPS steps: ${scratch[*]})} side by side, $workers loader workers each"
pids=()
for p in $PRES; do
  for kind in "${kinds[@]}"; do
    teacher "pretrain$kind$(split "$p")" "$p" "$(shard_pattern "$RUNS/plain$kind/shards")" "$workers" \
      --set model.conditioned=false & pids+=($!)
  done
done
for a in "${scratch[@]}"; do teacher "scratch_$a" "$STEPS" "$(shard_pattern "$RUNS/action$a/shards")" "$workers" & pids+=($!); done
await "${pids[@]}"

say "phase 2: tune (STEPS minus $PRES steps) from the plain models; the eval set and the scratch evals meanwhile"
pids=() tuned=()
for a in $AMOUNTS; do
  for p in $PRES; do
    for kind in "${kinds[@]}"; do
      tuned+=("tune$kind$(split "$p")_$a")
      teacher "${tuned[-1]}" "$((STEPS - p))" "$(shard_pattern "$RUNS/action$a/shards")" "$workers" \
        --init "$RUNS/pretrain$kind$(split "$p")/checkpoint.pt" & pids+=($!)
    done
  done
done
(
  # the first evaluation renders the held-out clips into the cache the others reuse
  for a in "${scratch[@]}"; do evaluate "scratch_$a" "$([[ -f "$RUNS/evalset.npz" ]] && echo 2 || echo 4)"; done
) & pids+=($!)
await "${pids[@]}"

say "phase 3: evaluate the tuned models, pair them with scratch"
pids=()
for t in "${tuned[@]}"; do
  evaluate "$t" 4 & pids+=($!)
  [[ -f "$RUNS/evalset.npz" ]] || { await "${pids[@]}"; pids=(); }  # no scratch evaluated here: this one renders the clips
done
await "${pids[@]}"
for t in "${tuned[@]}"; do
  [[ -f "$RES/eval_$t/metrics.json" ]] || continue
  python3 -m training.eval.compare "$RES/eval_$t/metrics.json" "$RES/eval_scratch_${t##*_}/metrics.json" \
    --json "$RES/${t%_*}_vs_scratch_${t##*_}.json" > /dev/null
done
say done
