"""Capture throughput with 1 and 2 stand-in engines, and memory on a long trajectory.

    python bench/capture.py [--trajectories 8] [--frames 120] [--size 256x144] [--long 3000]

Same run, same planned jobs (the planner, scenes room-1 and street-4): `run_capture` with one
stand-in instance, then with two, each into a fresh staging folder; prints trajectories/s,
frames/s and the scaling efficiency (frames/s with 2 / (2 x frames/s with 1)). Each engine is a
stand-in subprocess, each Ray actor a process, so the figure depends on free cores: say how many.
Memory: one worker in this process captures `--long` frames and a tenth of that; the peak of
traced Python/numpy allocations is printed for both (frames go to disk as they come).
"""

from __future__ import annotations

import _common

import argparse  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402
import ray  # noqa: E402

from annotate.actions import ActionSpec  # noqa: E402
from capture.config import CameraConfig, CaptureConfig, ClientConfig, RetryConfig, StagingConfig, StandinPoolConfig  # noqa: E402
from capture.planner import PlannerConfig, plan_jobs  # noqa: E402
from capture.records import CaptureJob  # noqa: E402
from capture.scheduler import run_capture  # noqa: E402
from capture.worker import CaptureWorker, StandinEndpoint  # noqa: E402
from _common import machine  # noqa: E402
from common.cli import add_dry_run, dry_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=8)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", default="256x144")
    parser.add_argument("--long", type=int, default=3000)
    args = add_dry_run(parser).parse_args()
    if args.dry_run:
        dry_run(arguments=args)
        return
    width, height = (int(v) for v in args.size.split("x"))
    print(f"machine: {machine()}")
    camera = CameraConfig(width=width, height=height)
    jobs = plan_jobs(PlannerConfig(scenes=("room-1", "street-4"), trajectories_per_scene=args.trajectories // 2,
                                   frames=args.frames), ActionSpec())
    total_frames = sum(len(j) for j in jobs)
    print(f"{len(jobs)} trajectories x {args.frames} frames at {width}x{height}, lit png staged")
    ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    rates = {}
    root = pathlib.Path(tempfile.mkdtemp(prefix="bench-capture-"))
    try:
        for instances in (1, 2):
            config = CaptureConfig(camera=camera, standin=StandinPoolConfig(instances=instances, scene="room-1"),
                                   staging=StagingConfig(resume=False), retry=RetryConfig(actor_cpus=1.0))
            staging = root / f"x{instances}"
            start = time.perf_counter()
            results = run_capture(jobs, config, staging, progress=False)
            wall = time.perf_counter() - start
            assert all(r.status == "captured" for r in results), [r.reason for r in results if r.status != "captured"]
            rates[instances] = total_frames / wall
            print(f"{instances} engine(s): {wall:6.1f} s  {len(jobs) / wall:5.2f} trajectories/s  "
                  f"{total_frames / wall:6.1f} frames/s  (includes engine launch)")
        print(f"scaling efficiency 2 vs 1: {rates[2] / (2 * rates[1]):.0%}  (speed-up {rates[2] / rates[1]:.2f}x)")
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    memory(args.long, camera)


def memory(n: int, camera: CameraConfig) -> None:
    root = pathlib.Path(tempfile.mkdtemp(prefix="bench-capture-mem-"))
    config = CaptureConfig(camera=camera, client=ClientConfig(warmup_frames=0), staging=StagingConfig(resume=False))
    worker = CaptureWorker(StandinEndpoint("courtyard-3"), config, str(root))
    try:
        for frames in (max(n // 10, 2), n):
            t = np.arange(frames) / 30.0
            loc = np.stack([300 * np.sin(t / 5), 300 * np.cos(t / 7), np.full(frames, 170.0)], 1)
            rot = np.stack([np.zeros(frames), t * 20, np.zeros(frames)], 1)
            job = CaptureJob("courtyard_0003", f"long{frames}", loc, rot, t, "bench")
            tracemalloc.start()
            start = time.perf_counter()
            attempt = worker.capture(job, "bench")
            wall = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert attempt.ok, attempt.reason
            frame_mb = camera.width * camera.height * 3 / 2**20
            print(f"long trajectory {frames:6d} frames: peak traced {peak / 2**20:6.2f} MiB "
                  f"(all frames held would be {frames * frame_mb:7.1f} MiB), {frames / wall:.1f} frames/s")
    finally:
        worker.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
