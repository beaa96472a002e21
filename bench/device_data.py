"""Training shards rendered on a GPU host without Ray (the device machine has none), so the data
set is not capped by what a device call can carry (issue 24: far more training scenes).

The same planner, stand-in renderer, filter, clip maker and shard writer as the build, run in a
process pool: paths are planned in N stand-in scenes (seeds from `--first-seed`, all four kinds in
turn, disjoint from the held-out eval scenes, which use seeds below 100), rendered in-process by the
stand-in engine (no server, no UnrealCV protocol in between), filtered and cut into clips by the
build's trajectory task, and written as train shards. Prints the counts, the seconds per stage and
the machine.

    python bench/device_data.py --scenes 128 --out /tmp/data --workers 16 [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from annotate.actions import ActionSpec  # noqa: E402
from annotate.ue import ue_to_pose  # noqa: E402
from capture.planner import PlannerConfig, plan_jobs  # noqa: E402
from capture.records import CaptureJob  # noqa: E402
from capture.standin.footage import render_footage  # noqa: E402
from common.config import load_yaml  # noqa: E402
from pipelines.config import BuildConfig  # noqa: E402
from pipelines.trajectory import TrajectoryItem, cache_path, read_cache, trajectory_task  # noqa: E402

KINDS = ("room", "corridor", "courtyard", "street")


def _one(job: CaptureJob, staging: str, work: str, config: BuildConfig) -> dict:
    camera = config.capture.capture.camera
    folder, _ = render_footage(job.scene, ue_to_pose(job.locations, job.rotations), job.times, pathlib.Path(staging),
                               job.trajectory, camera.width, camera.height, camera.fov,
                               shadow_resolution=512)  # the capture engines' (and the eval renders') default
    item = TrajectoryItem(job.scene, job.trajectory, folder, "train")
    outcome = trajectory_task(item, config, pathlib.Path(work), {})
    return outcome.get("summary", {"scene": job.scene, "trajectory": job.trajectory,
                                   "error": str(outcome.get("failed"))})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=pathlib.Path, default=pathlib.Path("configs/teacher_data.yaml"),
                        help="build config whose camera, planner length, clip and shard settings are used")
    parser.add_argument("--scenes", type=int, default=128)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="scene kinds taken in turn (e.g. street: one kind only, for a domain-gap variant)")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of --config (e.g. capture.capture.camera.width=1280)")
    args = parser.parse_args(argv)
    config = load_yaml(BuildConfig, args.config, args.set)
    planner = config.capture.sources.planner
    kinds = args.kinds.split(",")
    if not kinds or any(k not in KINDS for k in kinds):
        parser.error(f"--kinds: each of {', '.join(KINDS)}, got {args.kinds!r}")
    scenes = tuple(f"{kinds[i % len(kinds)]}-{args.first_seed + i}" for i in range(args.scenes))
    start = time.perf_counter()
    jobs = plan_jobs(PlannerConfig(scenes=scenes, trajectories_per_scene=planner.trajectories_per_scene,
                                   frames=planner.frames, fps=planner.fps, seed=config.seed), ActionSpec())
    planned = time.perf_counter() - start
    staging, work = args.out / "staging", args.out / ".work"
    with ProcessPoolExecutor(args.workers) as pool:
        summaries = list(pool.map(_one, jobs, [str(staging)] * len(jobs), [str(work)] * len(jobs),
                                  [config] * len(jobs), chunksize=1))
    rendered = time.perf_counter() - start - planned
    from datasets.shards import write_shards  # webdataset: imported where it is needed

    good = sorted((s for s in summaries if "error" not in s and s["clips"]), key=lambda s: (s["scene"], s["trajectory"]))
    samples = (sample for s in good for sample in read_cache(cache_path(work, s["scene"], s["trajectory"])))
    written = write_shards(samples, args.out / "shards", "train", config.shards)
    report = {"scenes": len(scenes), "trajectories": len(jobs), "failed": [s for s in summaries if "error" in s],
              "clips": len(written), "shards": len({w.shard for w in written}), "bytes": sum(w.bytes for w in written),
              "frames": sum(len(j) for j in jobs), "seconds": {"plan": round(planned, 1), "render+filter+clips":
                                                                 round(rendered, 1),
                                                                 "shards": round(time.perf_counter() - start - planned
                                                                                 - rendered, 1)},
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.workers} workers"}
    (args.out / "data.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    return 0 if not report["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
