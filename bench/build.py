"""Build throughput, ingest -> shards, on one core, next to the unavoidable codec work on the same
frames (decode the input PNG + encode the JPEG that goes into the shards), same run.

    python bench/build.py [--trajectories 6] [--frames 150] [--size 256x144]

Pre-rendered footage (stand-in planner paths, PNG, formats.md 1.2) is made first, untimed. Then
(a) the codec baseline: every frame decoded with cv2.imread and encoded to JPEG at the build's
quality, one core, one pass before the build and one after (their mean: the VM's speed drifts);
(b) the whole build on a one-CPU local Ray (ingest with its image checks, filter, windows +
palindromes, annotation, JPEG, shards, manifest, report), after the Ray worker has started and
imported the task's code (a fixed cost per worker, printed). Prints frames/s of input
frames for both and their ratio (target >= 0.6); then (c) the per-trajectory task alone, run again
in this process on the staged frames: the ratio the filter's image checks leave, before the rest.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: fixes sys.path so the packages are found)

_common.single_thread_env()

import argparse  # noqa: E402
import importlib  # noqa: E402
import logging  # noqa: E402
import pathlib  # noqa: E402
import shutil  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=6)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", default="256x144")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp) / "footage"
        folders = []
        for k in range(args.trajectories):
            scene = ("room-1", "street-4", "courtyard-3", "corridor-2")[k % 4]
            path = plan_path(make_scene(scene), PlannerConfig(frames=args.frames), ActionSpec(), k)
            folder, _ = render_footage(scene, path.poses, path.times, root, f"t{k}", width, height)
            folders.append(folder)
        files = [f for folder in folders for f in frame_files(folder, args.frames)]
        n = len(files)
        config = from_dict(BuildConfig, {"capture": {"sources": {"ingest": {"roots": [str(root)]},
                                                                "planner": {"trajectories_per_scene": 0}}}})
        quality = config.clips.jpeg_quality
        pin_to_one_core()

        def codec_seconds() -> float:
            start = time.perf_counter()
            for f in files:
                cv2.imencode(".jpg", cv2.imread(str(f), cv2.IMREAD_COLOR), [cv2.IMWRITE_JPEG_QUALITY, quality])
            return time.perf_counter() - start

        codec_before = codec_seconds()

        import ray

        from pipelines.stages import build

        ray.init(num_cpus=1, include_dashboard=False, logging_level=logging.WARNING)
        try:
            out = pathlib.Path(tmp) / "out"
            # start-up and imports are fixed costs per worker and per build, not per frame: measured, then
            # left out (the worker imports the task's module, the main process the shard writer's)
            start = time.perf_counter()
            ray.get(ray.remote(lambda: importlib.import_module("pipelines.trajectory") and None).remote())
            importlib.import_module("webdataset")
            fixed = time.perf_counter() - start
            start = time.perf_counter()
            stats = build(config, out, progress=False)
            whole = time.perf_counter() - start
        finally:
            ray.shutdown()
        task = task_seconds(out / "staging", pathlib.Path(tmp) / "task_work", config)
        codec_after = codec_seconds()  # this VM's speed drifts: the baseline is the mean of one pass either side
        codec = (codec_before + codec_after) / 2
        shutil.rmtree(root)
    print(f"\n{args.trajectories} trajectories x {args.frames} frames at {args.size}, PNG in, JPEG q{quality} out; "
          f"one core\n")
    print(f"codec only (decode PNG + encode JPEG): {n / codec:8.0f} frames/s  (before the build {n / codec_before:.0f}, "
          f"after {n / codec_after:.0f})")
    print(f"whole build, ingest -> shards:         {n / whole:8.0f} frames/s  "
          f"({stats['samples']} samples, {stats['bytes'] / 1e6:.1f} MB)")
    print(f"ratio build / codec:                   {codec / whole:8.2f}  (target >= 0.6)")
    print(f"the trajectory task alone, in process:  {n / task:8.0f} frames/s  (ratio {codec / task:.2f}: the ceiling "
          f"with the filter's image checks, before Ray, capture, shards and the report)")
    print(f"stage seconds: {stats['stage_seconds']}")
    print(f"left out: worker start-up + imports and the shard writer's import, {fixed:.1f} s")


def task_seconds(staging: pathlib.Path, work: pathlib.Path, config: BuildConfig) -> float:
    """The build's per-trajectory task (decode, image checks, filter, clips, JPEG) run again in this
    process over the staged trajectories, with an empty clip cache: its seconds."""
    from pipelines.trajectory import TrajectoryItem, trajectory_task

    items = [TrajectoryItem(folder.parent.name, folder.name, folder, "train", None)
             for folder in sorted(p.parent for p in staging.glob("*/*/poses.csv"))]
    start = time.perf_counter()
    for item in items:
        outcome = trajectory_task(item, config, work, {})
        if "failed" in outcome or "error" in outcome.get("summary", {}):
            raise SystemExit(f"{item.scene}/{item.trajectory}: the task failed in process: {outcome}")
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
