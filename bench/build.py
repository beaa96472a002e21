"""Build throughput, ingest -> shards, on one core, next to the unavoidable codec work on the same
frames (decode the input PNG + encode the JPEG that goes into the shards), same run, per frame size.

    python bench/build.py [--trajectories 6] [--frames 150] [--sizes 256x144 640x480]

The sizes: the demo build's (256x144, where the filter scores frames at full size) and the capture
camera's default (640x480, scored on a 256-px copy). Pre-rendered footage (stand-in planner paths,
PNG, formats.md 1.2) is made first, untimed, on every core. Then per size, on one core:
(a) the codec baseline: every frame decoded with cv2.imread and encoded to JPEG at the build's
quality, one pass before the build and one after (their mean: the VM's speed drifts);
(b) the whole build on a one-CPU local Ray (ingest with its image checks, filter, windows +
palindromes, annotation, JPEG, shards, manifest, report), after the Ray worker has started and
imported the task's code (a fixed cost per worker, printed). Prints frames/s of input
frames for both and their ratio (target >= 0.7 at 640x480 and 1280x720); then (c) the per-trajectory task alone, run again
in this process on the staged frames: the ratio the filter's image checks leave, before the rest.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: fixes sys.path so the packages are found)

_common.single_thread_env()

import argparse  # noqa: E402
import importlib  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import pathlib  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402

from annotate.actions import ActionSpec  # noqa: E402
from capture.planner import PlannerConfig, plan_path  # noqa: E402
from capture.staging import frame_files  # noqa: E402
from capture.standin.footage import render_footage  # noqa: E402
from capture.standin.scene import make_scene  # noqa: E402
from common.config import from_dict  # noqa: E402
from pipelines.config import BuildConfig  # noqa: E402
from _common import machine, pin_to_one_core  # noqa: E402
from common.cli import add_dry_run, dry_run  # noqa: E402

SCENES = ("room-1", "street-4", "courtyard-3", "corridor-2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=6)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--sizes", nargs="+", default=["256x144", "640x480"])
    args = add_dry_run(parser).parse_args()
    if args.dry_run:
        dry_run(arguments=args)
        return
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes]
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(pathlib.Path(tmp) / f"footage_{w}x{h}", k, args.frames, w, h)
                for w, h in sizes for k in range(args.trajectories)]
        with multiprocessing.Pool() as pool:
            pool.map(_render, jobs)
        pin_to_one_core()
        import ray

        ray.init(num_cpus=1, include_dashboard=False, logging_level=logging.WARNING)
        try:
            # start-up and imports are fixed costs per worker and per build, not per frame: measured, then
            # left out (the worker imports the task's module, the main process the shard writer's)
            start = time.perf_counter()
            ray.get(ray.remote(lambda: importlib.import_module("pipelines.trajectory") and None).remote())
            importlib.import_module("webdataset")
            fixed = time.perf_counter() - start
            for width, height in sizes:
                measure(pathlib.Path(tmp) / f"footage_{width}x{height}", pathlib.Path(tmp) / f"out_{width}x{height}",
                        args.trajectories, args.frames, f"{width}x{height}")
        finally:
            ray.shutdown()
    print(f"\nleft out: worker start-up + imports and the shard writer's import, {fixed:.1f} s")


def _render(job: tuple[pathlib.Path, int, int, int, int]) -> None:
    root, k, frames, width, height = job
    scene = SCENES[k % len(SCENES)]
    path = plan_path(make_scene(scene), PlannerConfig(frames=frames), ActionSpec(), k)
    render_footage(scene, path.poses, path.times, root, f"t{k}", width, height)


def measure(root: pathlib.Path, out: pathlib.Path, trajectories: int, frames: int, size: str) -> None:
    """The three figures for one footage folder, printed."""
    from pipelines.stages import build

    folders = sorted(p.parent for p in root.glob("*/*/poses.csv"))
    files = [f for folder in folders for f in frame_files(folder, frames)]
    n = len(files)
    config = from_dict(BuildConfig, {"capture": {"sources": {"ingest": {"roots": [str(root)]},
                                                            "planner": {"trajectories_per_scene": 0}}}})
    quality = config.clips.jpeg_quality

    def codec_seconds() -> float:
        start = time.perf_counter()
        for f in files:
            cv2.imencode(".jpg", cv2.imread(str(f), cv2.IMREAD_COLOR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        return time.perf_counter() - start

    codec_before = codec_seconds()
    start = time.perf_counter()
    stats = build(config, out, progress=False)
    whole = time.perf_counter() - start
    task = task_seconds(out / "staging", out.with_name(out.name + "_task"), config)
    codec_after = codec_seconds()  # this VM's speed drifts: the baseline is the mean of one pass either side
    codec = (codec_before + codec_after) / 2
    print(f"\n{trajectories} trajectories x {frames} frames at {size}, PNG in, JPEG q{quality} out; one core\n")
    print(f"codec only (decode PNG + encode JPEG): {n / codec:8.0f} frames/s  (before the build {n / codec_before:.0f}, "
          f"after {n / codec_after:.0f})")
    print(f"whole build, ingest -> shards:         {n / whole:8.0f} frames/s  "
          f"({stats['samples']} samples, {stats['bytes'] / 1e6:.1f} MB)")
    print(f"ratio build / codec:                   {codec / whole:8.2f}  (target >= 0.7 at 640x480 and up)")
    print(f"the trajectory task alone, in process:  {n / task:8.0f} frames/s  (ratio {codec / task:.2f}: the ceiling "
          f"with the filter's image checks, before Ray, capture, shards and the report)")
    print(f"stage seconds: {stats['stage_seconds']}")


def task_seconds(staging: pathlib.Path, work: pathlib.Path, config: BuildConfig) -> float:
    """The build's per-trajectory task (decode, image checks, filter, clips, JPEG) run again in this
    process over the staged trajectories, with an empty clip cache: its seconds."""
    from pipelines.trajectory import TrajectoryItem, trajectory_task

    items = [TrajectoryItem(folder.parent.name, folder.name, folder, "train")
             for folder in sorted(p.parent for p in staging.glob("*/*/poses.csv"))]
    start = time.perf_counter()
    for item in items:
        outcome = trajectory_task(item, config, work, {})
        if "failed" in outcome or "error" in outcome.get("summary", {}):
            raise SystemExit(f"{item.scene}/{item.trajectory}: the task failed in process: {outcome}")
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
