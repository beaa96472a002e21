"""The build's scale model: per-stage costs measured on this machine, fitted, checked on a build ten
times the demo's size, then projected to a RELIC-size build (docs/scaling.md).

    python bench/scale.py [--check 10] [--calibrate 1 2 3] [--engines 16] [--nodes 8] [--cores 16]

1. Calibration: the demo build (4 stand-in scenes, planned paths of 150 frames, 256x144, two
   engines, a local Ray on every core) at `--calibrate` times its paths, each into a fresh folder
   (no caches), after one untimed warm-up build (Ray workers start and import once). Each stage's
   seconds (stats.json `stage_seconds`) are fitted by least squares as fixed + per unit, the unit
   being what the stage's work grows with: capture — frames per engine instance (the engines run at
   once); filter+clips — frames per Ray CPU (one task per trajectory); report — trajectories;
   shards — shard bytes (the driver writes them, one stream); card — samples.
2. Check: the wall time of a build `--check` times the demo is predicted from that fit, printed,
   then the build is run and timed; predicted / measured per stage and in all.
3. The same fit at 1280x720 (RELIC's frame size; 4 and 8 paths of 60 frames), the bytes and
   samples per input frame there, and the peak memory of one trajectory task at 720p for 60 and 240
   frames (a fresh process each: its peak resident set).
4. Projection: 1,600 minutes of 16 fps video at 1280x720 (1,536,000 frames) in 350 scenes, paths
   of `--path-seconds`, captured on `--engines` instances and filtered on `--nodes` x `--cores` Ray
   CPUs, with this machine's per-core speed, capturing with the stand-in's measured rate and with
   `--engine-fps` (a real engine's 720p frames/s per instance: measure yours): wall time per stage,
   core-hours, shard bytes, peak memory per node.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: fixes sys.path so the packages are found)

_common.single_thread_env()

import argparse  # noqa: E402
import copy  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from _common import machine  # noqa: E402
from common.cli import add_dry_run, dry_run  # noqa: E402
from common.config import from_dict  # noqa: E402
from pipelines.config import DEMO, BuildConfig  # noqa: E402

STAGES = ("capture", "filter+clips", "report", "shards", "card")
RELIC_FRAMES = 1_600 * 60 * 16  # 1,600 minutes at 16 fps
RELIC_SCENES = 350


@dataclass(frozen=True)
class Run:
    """One build's size and its measured seconds."""

    frames: int  # input frames (captured)
    trajectories: int
    samples: int
    bytes: int
    engines: int
    cpus: int
    seconds: dict[str, float]  # per stage
    wall: float  # the whole build() call

    def units(self, stage: str) -> float:
        return {"capture": self.frames / self.engines, "filter+clips": self.frames / self.cpus,
                "report": self.trajectories, "shards": self.bytes, "card": self.samples}[stage]


@dataclass(frozen=True)
class Cost:
    """A stage's seconds = fixed + per_unit x units."""

    fixed: float
    per_unit: float

    def seconds(self, units: float) -> float:
        return self.fixed + self.per_unit * units


def fit(runs: list[Run]) -> tuple[dict[str, Cost], float]:
    """Per-stage fixed + per-unit costs (least squares over the runs; a negative slope read as a
    constant cost, a negative fixed part as none, the slope refitted through the origin), and the
    build's seconds outside the stages."""
    costs = {}
    for stage in STAGES:
        x = np.array([r.units(stage) for r in runs], dtype=float)
        y = np.array([r.seconds[stage] for r in runs], dtype=float)
        slope, fixed = np.polyfit(x, y, 1)
        if slope < 0:  # no growth measured (the stage's cost is noise around a constant)
            fixed, slope = float(y.mean()), 0.0
        elif fixed < 0:
            fixed, slope = 0.0, float(x @ y / (x @ x))
        costs[stage] = Cost(float(fixed), float(slope))
    other = float(np.mean([r.wall - sum(r.seconds.values()) for r in runs]))
    return costs, other


def predict(costs: dict[str, Cost], other: float, run: Run) -> dict[str, float]:
    out = {stage: costs[stage].seconds(run.units(stage)) for stage in STAGES}
    out["all"] = sum(out.values()) + other
    return out


def demo_config(width: int, height: int, per_scene: int, frames: int) -> BuildConfig:
    data: dict[str, Any] = copy.deepcopy(DEMO)
    data["capture"]["capture"]["camera"].update(width=width, height=height)
    data["capture"]["sources"]["planner"].update(trajectories_per_scene=per_scene, frames=frames)
    if per_scene < 2 or frames < 90:  # the demo damages path 0 and path 1 of two scenes, 2-2.5 s in
        data["capture"]["sources"]["planner"]["faults"] = []
    return from_dict(BuildConfig, data, source="bench/scale.py")


def build_run(config: BuildConfig, out: pathlib.Path, cpus: int) -> Run:
    from pipelines.stages import build

    start = time.perf_counter()
    stats = build(config, out, progress=False)
    wall = time.perf_counter() - start
    import pandas as pd

    table = pd.read_parquet(out / "trajectories.parquet")
    return Run(frames=int(table["frames"].sum()), trajectories=int(len(table)),
               samples=sum(stats["samples"].values()), bytes=int(stats["bytes"]),
               engines=config.capture.capture.standin.instances, cpus=cpus,
               seconds={s: float(stats["stage_seconds"][s]) for s in STAGES}, wall=wall)


def _render_hd(root: pathlib.Path, frames: int, seed: int = 7) -> pathlib.Path:
    """A planned stand-in path of `frames` frames rendered at 1280x720 as pre-rendered footage; its folder."""
    from annotate.actions import ActionSpec
    from capture.planner import PlannerConfig, plan_path
    from capture.standin.footage import render_footage
    from capture.standin.scene import make_scene

    folder = root / f"f{frames}"
    path = plan_path(make_scene("room-1"), PlannerConfig(frames=frames), ActionSpec(), seed)
    render_footage("room-1", path.poses, path.times, folder, "t", 1280, 720)
    return next(p.parent for p in folder.glob("*/*/poses.csv"))


def _task_memory(staged: str, frames: int) -> float:
    """Peak resident MiB of this (fresh) process after one trajectory task (decode, image checks,
    filter, clips, JPEG) over the staged 1280x720 trajectory."""
    from pipelines.trajectory import TrajectoryItem, trajectory_task

    folder = pathlib.Path(staged)
    outcome = trajectory_task(TrajectoryItem(folder.parent.name, folder.name, folder, "train"),
                              demo_config(1280, 720, 1, frames), folder.parent.parent / "work", {})
    if "failed" in outcome:
        raise SystemExit(f"the task failed: {outcome['failed']}")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibrate", type=int, nargs="+", default=[1, 2, 3], help="demo sizes of the fit")
    parser.add_argument("--check", type=int, default=10, help="the checked build, in demo sizes (0: none)")
    parser.add_argument("--engines", type=int, default=16, help="projection: engine instances")
    parser.add_argument("--nodes", type=int, default=8, help="projection: Ray CPU nodes")
    parser.add_argument("--cores", type=int, default=16, help="projection: CPUs per node")
    parser.add_argument("--path-seconds", type=float, default=20.0, help="projection: seconds per path")
    parser.add_argument("--engine-fps", type=float, default=20.0,
                        help="projection: also with a real engine capturing this many 720p frames/s per instance")
    parser.add_argument("--task-memory", nargs=2, metavar=("STAGED", "FRAMES"), help=argparse.SUPPRESS)
    args = add_dry_run(parser).parse_args()
    if args.task_memory:  # the child process of the memory measurement
        print(_task_memory(args.task_memory[0], int(args.task_memory[1])))
        return
    if args.dry_run:
        dry_run(arguments=args)
        return
    import ray

    cpus = os.cpu_count() or 1
    print(machine())
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.ERROR)
        try:
            build_run(demo_config(256, 144, 1, 60), tmp / "warm-up", cpus)  # clips and shards too
            runs = [build_run(demo_config(256, 144, 2 * k, 150), tmp / f"demo-x{k}", cpus) for k in args.calibrate]
            costs, other = fit(runs)
            print(f"\ncalibration at 256x144 (demo x{args.calibrate}; {cpus} Ray CPUs, 2 engines):")
            show_costs(costs, other, runs)
            if args.check:
                size = demo_config(256, 144, 2 * args.check, 150)
                paths = 4 * 2 * args.check
                planned = Run(frames=paths * 150, trajectories=paths, samples=round(_per(runs, "samples") * paths * 150),
                              bytes=round(_per(runs, "bytes") * paths * 150), engines=2, cpus=cpus,
                              seconds={}, wall=0.0)
                expected = predict(costs, other, planned)
                print(f"\ncheck: demo x{args.check} ({paths} paths, {paths * 150} frames), predicted before it ran: "
                      f"{expected['all']:.1f} s")
                measured = build_run(size, tmp / f"demo-x{args.check}", cpus)
                got = {**measured.seconds, "all": measured.wall}
                expected = predict(costs, other, measured)  # the same, from the sizes it really had
                print(f"{'stage':<14}{'predicted s':>12}{'measured s':>12}{'ratio':>8}")
                for stage in (*STAGES, "all"):
                    print(f"{stage:<14}{expected[stage]:12.1f}{got[stage]:12.1f}{expected[stage] / got[stage]:8.2f}")
            hd = [build_run(demo_config(1280, 720, k, 60), tmp / f"hd-x{k}", cpus) for k in (1, 2)]
            hd_costs, hd_other = fit(hd)
            print(f"\ncalibration at 1280x720 (4 and 8 paths of 60 frames; {cpus} Ray CPUs, 2 engines):")
            show_costs(hd_costs, hd_other, hd)
        finally:
            ray.shutdown()
        memory = {}
        for frames in (60, 240):  # a fresh interpreter each: its peak is the task's own
            staged = _render_hd(tmp / "memory", frames)
            done = subprocess.run([sys.executable, __file__, "--task-memory", str(staged), str(frames)],
                                  capture_output=True, text=True, check=True)
            memory[frames] = float(done.stdout.split()[-1])
        print(f"\none trajectory task at 1280x720, peak resident: 60 frames {memory[60]:.0f} MiB, "
              f"240 frames {memory[240]:.0f} MiB")
        project(args, hd_costs, hd_other, hd, memory, cpus)


def _per(runs: list[Run], what: str) -> float:
    """`what` (samples or bytes) per input frame over the runs."""
    return sum(getattr(r, what) for r in runs) / sum(r.frames for r in runs)


def show_costs(costs: dict[str, Cost], other: float, runs: list[Run]) -> None:
    units = {"capture": "s per frame per engine", "filter+clips": "s per frame per CPU", "report": "s per path",
             "shards": "s per MB", "card": "s per sample"}
    for stage in STAGES:
        scale = 1e6 if stage == "shards" else 1.0
        measured = ", ".join(f"{r.seconds[stage]:.2f}" for r in runs)
        print(f"  {stage:<13} fixed {costs[stage].fixed:6.2f} s + {costs[stage].per_unit * scale:.3g} {units[stage]}"
              f"   (measured {measured} s)")
    print(f"  outside the stages {other:.2f} s; bytes per input frame {_per(runs, 'bytes') / 1e3:.1f} kB, "
          f"samples per input frame {_per(runs, 'samples'):.4f}; builds {', '.join(f'{r.wall:.1f}' for r in runs)} s")


def project(args: argparse.Namespace, costs: dict[str, Cost], other: float, hd: list[Run],
            memory: dict[int, float], cpus_here: int) -> None:
    """The RELIC-size build from the 720p fit, printed with its inputs."""
    frames = RELIC_FRAMES
    path_frames = round(16 * args.path_seconds)
    paths = round(frames / path_frames)
    total_cpus = args.nodes * args.cores
    shard_bytes = _per(hd, "bytes") * frames
    samples = _per(hd, "samples") * frames
    rest = {"filter+clips": costs["filter+clips"].fixed + costs["filter+clips"].per_unit * frames / total_cpus,
            "report": costs["report"].seconds(paths), "shards": costs["shards"].seconds(shard_bytes),
            "card": costs["card"].seconds(samples)}
    captures = {"the stand-in": costs["capture"].per_unit}
    if args.engine_fps:
        captures[f"an engine at {args.engine_fps:g} frames/s"] = 1.0 / args.engine_fps
    print(f"\nprojection: {frames:,} frames at 1280x720 ({RELIC_SCENES} scenes, {paths:,} paths of "
          f"{args.path_seconds:g} s), {args.engines} engine instances, {args.nodes} nodes x {args.cores} CPUs "
          f"at this machine's per-core speed ({cpus_here} cores here); stages run one after another")
    for stage, seconds in rest.items():
        print(f"  {stage:<13} {seconds / 3600:8.2f} h")
    for name, per_frame in captures.items():
        capture = costs["capture"].fixed + per_frame * frames / args.engines
        wall = capture + sum(rest.values()) + other
        print(f"  capture with {name}: {capture / 3600:.2f} h ({per_frame * frames / 3600:,.0f} engine-hours); "
              f"wall {wall / 3600:.2f} h")
    filter_core_h = costs["filter+clips"].per_unit * frames / 3600  # per_unit: CPU-seconds per frame
    print(f"  filter+clips  {filter_core_h:8.1f} core-hours")
    print(f"  shards        {shard_bytes / 1e9:8.1f} GB in {samples:,.0f} samples (the driver writes them alone: "
          f"{costs['shards'].per_unit * 1e6:.4f} s per MB)")
    per_frame_mem = (memory[240] - memory[60]) / 180
    per_task = memory[60] + per_frame_mem * (path_frames - 60)
    print(f"  memory        one task {per_task:.0f} MiB for a {path_frames}-frame path ({memory[60]:.0f} at 60 frames, "
          f"{memory[240]:.0f} at 240: {per_frame_mem:.2f} MiB per frame); {args.cores} tasks per node: "
          f"{args.cores * per_task / 1024:.1f} GiB")


if __name__ == "__main__":
    main()
