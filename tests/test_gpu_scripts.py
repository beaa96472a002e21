"""bench/gpu_common.sh's helpers for GPU work longer than one device call: `limited` gives a stage
what is left of STOP_AFTER_S, `await` stops the script (exit 0 and how to go on when the limit came
first, the stage's status otherwise) and `finished` tells a training that ended by its budget from
one that was stopped, so a second call skips the first and resumes the second."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _tools(tmp_path: pathlib.Path, **scripts: str) -> pathlib.Path:
    """A folder to put first on PATH: a stand-in nvidia-smi and the given executables (name: text)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    tools = {"nvidia-smi": '#!/bin/sh\necho "name, memory.total [MiB], driver_version"; echo "none, 0 MiB, 0"\n',
             **scripts}
    for name, text in tools.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _script(tmp_path: pathlib.Path, body: str, stop_after: str | None = None) -> subprocess.CompletedProcess:
    """Run `body` in bash after sourcing gpu_common.sh (RUNS in tmp_path; a stand-in nvidia-smi)."""
    env = {**os.environ, "PATH": f"{_tools(tmp_path)}:{os.environ['PATH']}", "RUNS": str(tmp_path / "runs")}
    env.pop("STOP_AFTER_S", None)
    if stop_after is not None:
        env["STOP_AFTER_S"] = stop_after
    script = f"set -euo pipefail\nsource {ROOT / 'bench' / 'gpu_common.sh'}\n{body}\n"
    return subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def _summary(run: pathlib.Path, steps: int, stopped: str | None) -> None:
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"steps": steps, "stopped": stopped}))


def test_finished_is_a_run_that_ended_by_its_budget_at_the_steps_asked(tmp_path):
    runs = tmp_path / "runs"
    _summary(runs / "done", 1200, None)
    _summary(runs / "stopped", 700, "SIGTERM")
    _summary(runs / "short", 900, None)
    checks = " ".join(f"$(finished $RUNS/{run} {steps} && echo yes || echo no)" for run, steps in (
        ("done", 1200), ("done", ""), ("stopped", 700), ("stopped", ""), ("short", 1200), ("missing", "")))
    done = _script(tmp_path, f"echo {checks}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["yes", "yes", "no", "no", "no", "no"]


def test_the_time_limit_stops_every_stage_and_the_script_says_how_to_go_on(tmp_path):
    start = time.monotonic()
    done = _script(tmp_path, "limited sleep 30 & a=$!\nlimited sleep 30 & b=$!\nawait $a $b\necho after", "2")
    assert time.monotonic() - start < 20, "both stages should have been stopped at the limit"
    assert done.returncode == 0, done.stderr
    assert "after" not in done.stdout
    assert "STOP_AFTER_S=2 came first: run the same command again" in done.stdout
    assert "came first" in (tmp_path / "runs" / "results" / "stages.txt").read_text()


def test_a_failed_stage_stops_the_script_with_its_status_and_a_good_one_goes_on(tmp_path):
    done = _script(tmp_path, "alone true\necho between\nalone sh -c 'exit 3'\necho after", "60")
    assert done.returncode == 3
    assert "between" in done.stdout and "after" not in done.stdout
    assert "a stage failed (exit 3)" in done.stdout and "came first" not in done.stdout
    unlimited = _script(tmp_path, "alone sh -c 'exit 5'\necho after")
    assert unlimited.returncode == 5 and "a stage failed (exit 5)" in unlimited.stdout


# the stand-in python3s below: each records its call in $CALLS, runs `python3 -c` for real and reads
# the --out it was given; what they do with the rest is theirs
FAKE_HEAD = r"""#!/bin/bash
echo "$*" >> "$CALLS"
[[ "$1" == "-c" ]] && exec "$REAL_PYTHON" "$@"
arg() { local want=$1; shift; while (( $# )); do [[ "$1" == "$want" ]] && { echo "$2"; return; }; shift; done; }
out=$(arg --out "$@")
"""

FAKE_PYTHON = FAKE_HEAD + r"""# bench/pretrain_gpu.sh's renders, trainings, evaluations and comparisons in name only
case "$*" in
  *training.eval.compare*) echo '{}' > "$(arg --json "$@")";;
  *training.teacher*) mkdir -p "$out"; echo "{\"steps\": $(arg --steps "$@"), \"stopped\": null}" > "$out/summary.json";;
  *training.eval*) cache=$(arg --cache "$@")
    [[ -f "$cache" ]] || { echo "renders $cache" >> "$CALLS"; sleep 0.5; touch "$cache"; }
    mkdir -p "$out"; echo '{}' > "$out/metrics.json";;
  *device_data.py*) mkdir -p "$out/shards"; touch "$out/shards/train-000000.tar"; echo '{}' > "$out/data.json";;
  *) exec "$REAL_PYTHON" "$@";;
esac
"""


@pytest.mark.parametrize("amounts", ["16", "4 16"])
def test_pretrain_splits_reuse_an_earlier_runs_scratch_evaluation(tmp_path, amounts):
    """REUSE: the scratch model of an amount the earlier run evaluated is not trained again, its
    evaluation is copied and paired with; one evaluation renders the eval set (a scratch one, or with
    none to run, the first tuned one alone) before the others start."""
    bin_dir = _tools(tmp_path, python3=FAKE_PYTHON)
    earlier = tmp_path / "earlier"
    (earlier / "eval_scratch_16").mkdir(parents=True)
    (earlier / "eval_scratch_16" / "metrics.json").write_text('{"earlier": true}')
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNS": str(tmp_path / "runs"),
           "CALLS": str(calls), "REAL_PYTHON": sys.executable, "REUSE": str(earlier), "AMOUNTS": amounts,
           "PRE": "300 900", "STOP_AFTER_S": "120"}
    done = subprocess.run(["bash", "bench/pretrain_gpu.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in calls.read_text().splitlines() if not line.startswith("-c")]
    trained = sorted(line.split("--out ")[1].split()[0].rsplit("/", 1)[1] for line in lines if "training.teacher" in line)
    tuned = [f"tune_p{p}_{a}" for a in amounts.split() for p in (300, 900)]
    scratch = ["scratch_4"] if "4" in amounts.split() else []
    assert trained == sorted(["pretrain_p300", "pretrain_p900", *scratch, *tuned])
    evaluated = [line.split("--out ")[1].split()[0].rsplit("/", 1)[1] for line in lines if "training.eval --" in line]
    assert sorted(evaluated) == sorted(f"eval_{run}" for run in scratch + tuned)
    renders = [i for i, line in enumerate(lines) if line.startswith("renders")]
    assert len(renders) == 1, "one evaluation renders the set, the rest reuse it"
    evals = [i for i, line in enumerate(lines) if "training.eval --" in line]
    assert evals[0] < renders[0] < evals[1], "the evaluation that renders the set should start before the others"
    results = tmp_path / "runs" / "results"
    assert json.loads((results / "eval_scratch_16" / "metrics.json").read_text()) == {"earlier": True}
    assert "scratch_16: the evaluation of" in (results / "reused.txt").read_text()
    pairs = [line for line in lines if "training.eval.compare" in line]
    assert len(pairs) == len(tuned) and all(f"eval_scratch_{line.split('_')[-1].split('.')[0]}" in line for line in pairs)


LONG_PYTHON = FAKE_HEAD + r"""# bench/long_teacher_gpu.sh's teacher and curve in name only: both run until stopped
case "$*" in
  *training.teacher*) mkdir -p "$out"
    trap 'echo "{\"steps\": 70, \"stopped\": \"SIGTERM\"}" > "$out/summary.json"; touch "$out/log.jsonl"; exit 0' TERM
    sleep 60 & wait;;
  *quality_curve.py*) sleep 60 & wait;;  # an evaluation of the step the teacher stopped at, still going
  *) exec "$REAL_PYTHON" "$@";;
esac
"""


def test_long_teacher_call_ends_at_its_limit_with_the_curve_cut_too(tmp_path):
    """The curve evaluating beside the teacher is held to STOP_AFTER_S as the teacher is: on 2026-12-07 it
    went on past the teacher's stop, evaluating the step reached, and the device call was killed at its
    limit with nothing brought back."""
    bin_dir = _tools(tmp_path, python3=LONG_PYTHON)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNS": str(tmp_path / "runs"),
           "REAL_PYTHON": sys.executable, "STOP_AFTER_S": "3", "DATA": str(tmp_path), "CALLS": str(tmp_path / "calls")}
    (tmp_path / "train-000000.tar").touch()
    start = time.monotonic()
    done = subprocess.run(["bash", "bench/long_teacher_gpu.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert time.monotonic() - start < 30, "the curve should have been stopped with the teacher"
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stopped by SIGTERM at step 70: run this command again" in done.stdout
    assert "the curve was cut by STOP_AFTER_S" in (tmp_path / "runs" / "results" / "stages.txt").read_text()


STUDENT_PYTHON = FAKE_HEAD + r"""# bench/student_gpu.sh's trainers and evaluations in name only: the ODE stage runs until stopped, once
case "$*" in
  *training.student_train*) mkdir -p "$out"; touch "$out/log.jsonl" "$out/checkpoint.pt"
    if [[ -f "$out/summary.json" || "$*" != *"--stage ode"* ]]; then  # DMD, or the ODE stage resumed: to the end
      echo '{"steps": 20, "stopped": null}' > "$out/summary.json"; exit 0
    fi
    trap 'echo "{\"steps\": 7, \"stopped\": \"SIGTERM\"}" > "$out/summary.json"; exit 0' TERM
    sleep 60 & wait;;
  *training.eval*) mkdir -p "$out"; echo '{}' > "$out/metrics.json";;
  *) exec "$REAL_PYTHON" "$@";;
esac
"""


def test_student_chain_stops_at_its_limit_and_the_same_command_resumes(tmp_path):
    """STOP_AFTER_S: the ODE stage stopped at the call's limit ends the call (exit 0, how to go on); the
    same command resumes it, then runs DMD and the evaluations; a third call runs nothing again."""
    bin_dir = _tools(tmp_path, python3=STUDENT_PYTHON)
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNS": str(tmp_path / "runs"),
           "CALLS": str(calls), "REAL_PYTHON": sys.executable, "STOP_AFTER_S": "3", "DATA": str(tmp_path),
           "STAGES": "ode,dmd,eval", "EVAL_STUDENTS": "dmd ode"}

    def call() -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "bench/student_gpu.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)

    def ran(what: str) -> list[str]:
        return [line for line in calls.read_text().splitlines() if what in line]

    first = call()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "came first: run the same command again" in first.stdout
    assert len(ran("--stage ode")) == 1 and not ran("--stage dmd") and not ran("training.eval ")
    env["STOP_AFTER_S"] = "60"
    second = call()
    assert second.returncode == 0, second.stdout + second.stderr
    assert len(ran("--stage ode")) == 2 and len(ran("--stage dmd")) == 1
    results = tmp_path / "runs" / "results"
    written = sorted(p.parent.name for p in results.glob("eval_*/metrics.json"))
    assert written == ["eval_dmd33_memory", "eval_dmd33_window", "eval_dmd9", "eval_ode33_memory", "eval_ode33_window",
                       "eval_ode9"]
    before = [line for line in calls.read_text().splitlines() if line.startswith("-m training.")]
    third = call()
    assert third.returncode == 0, third.stdout + third.stderr
    after = [line for line in calls.read_text().splitlines() if line.startswith("-m training.")]
    assert len(before) == 9 and after == before, "a finished training or a written evaluation ran again"


def test_device_shards_renders_once_per_run_with_its_arguments_and_names_the_shards(tmp_path):
    """DATA_SCENES: the shards are rendered on the device with DATA_ARGS passed on, once for a RUNS (a
    second call on the warm machine reuses them), and SHARDS names every one; unset, SHARDS is kept."""
    bin_dir = _tools(tmp_path, python3=FAKE_PYTHON)
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNS": str(tmp_path / "runs"),
           "CALLS": str(calls), "REAL_PYTHON": sys.executable}
    script = (f"set -euo pipefail\nsource {ROOT / 'bench' / 'gpu_common.sh'}\nSHARDS=carried\n"
              "device_shards\necho \"SHARDS=$SHARDS\"\n")

    def call(**more: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", script], cwd=ROOT, env={**env, **more}, capture_output=True, text=True,
                              timeout=60)

    def renders() -> list[str]:
        return [line for line in calls.read_text().splitlines() if "device_data.py" in line]

    assert "SHARDS=carried" in call().stdout and not renders()
    args = {"DATA_SCENES": "3", "DATA_ARGS": "--set clips.window.frames=97 --set seed=2"}
    first = call(**args)
    assert first.returncode == 0, first.stderr
    assert f"SHARDS={tmp_path}/runs/data/shards/train-{{000000..000000}}.tar" in first.stdout
    rendered = renders()
    assert len(rendered) == 1 and "--scenes 3" in rendered[0]
    assert rendered[0].endswith("--set clips.window.frames=97 --set seed=2")
    again = call(**args)
    assert again.returncode == 0 and f"train-{{000000..000000}}.tar" in again.stdout
    assert len(renders()) == 1


def test_the_gpu_scripts_and_the_python_benches_evaluate_in_the_same_held_out_scenes(tmp_path):
    saved = list(sys.path)  # bench/_common.py rewrites sys.path when imported
    try:
        sys.path.insert(0, str(ROOT / "bench"))
        from _common import HELD_OUT_SCENES
    finally:
        sys.path[:] = saved
    scenes = _script(tmp_path, "echo $SCENES")
    assert scenes.returncode == 0, scenes.stderr
    assert scenes.stdout.split() == [",".join(HELD_OUT_SCENES)]
    assert len(HELD_OUT_SCENES) == 8 and all(s.rsplit("_", 1)[0] in ("room", "corridor", "courtyard", "street")
                                             for s in HELD_OUT_SCENES)
