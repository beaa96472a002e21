"""Shared by the bench scripts: import hygiene, machine description, timing, one-core pinning.

Scripts here are named after the packages they measure (bench/annotate.py measures `annotate`), so
the script folder is taken off sys.path: `import annotate` must find the package, not the script.
The checkout's root goes first instead, so the scripts run from a plain checkout (no install), and
`datasets` is this project's package even where Hugging Face's is installed.
"""

from __future__ import annotations

import os
import pathlib
import platform
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

_HERE = pathlib.Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if pathlib.Path(p or ".").resolve() not in (_HERE, _HERE.parent)]

T = TypeVar("T")

#: the held-out stand-in scenes every bench script evaluates in (the val scenes of configs/teacher_data.yaml's
#: build, never trained on); one home, bench/held_out_scenes.txt, which the *_gpu.sh scripts read too
HELD_OUT_SCENES: tuple[str, ...] = tuple((_HERE / "held_out_scenes.txt").read_text().strip().split(","))


def add_eval_set_arguments(parser: Any) -> None:
    """An argparse parser's arguments naming an eval set as training.eval makes it: --scenes (default the
    held-out ones), --frames, --fps, --starts, --cache and --workers (`eval_set_of` reads them)."""
    parser.add_argument("--scenes", default=",".join(HELD_OUT_SCENES), help="comma-separated stand-in scenes")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--fps", type=float, default=15.0,
                        help="the rate the scripts step at (training.eval: the checkpoint's)")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--cache", type=pathlib.Path, help="the eval set's cache (training.eval --cache)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)


def eval_set_of(args: Any) -> tuple[Any, Any]:
    """(EvalSetConfig, EvalSet) of `add_eval_set_arguments`' arguments: the cached set, or rendered."""
    from training.eval.groundtruth import EvalSetConfig, cached_eval_set, script_frames

    config = EvalSetConfig(scenes=tuple(s for s in args.scenes.split(",") if s), starts=args.starts,
                           frames=script_frames(args.frames, args.fps), fps=args.fps)
    return config, cached_eval_set(config, args.cache, args.workers)


def single_thread_env() -> None:
    """Ask BLAS/OpenMP for one thread; call before importing numpy."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"


def pin_to_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    return f"{platform.node()} | {cpu} | {os.cpu_count()} cores | {platform.platform()} | python {platform.python_version()}"


def best_of(repeats: int, fn: Callable[[], T]) -> tuple[float, T]:
    """(fastest wall time in seconds, last result) over `repeats` calls."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result  # type: ignore[return-value]
