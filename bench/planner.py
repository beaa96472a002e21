"""Planned frames/s and probe cost of the protocol-only planner, next to the scene planner.

    python bench/planner.py [--paths 20] [--frames 300] [--dry-run]

Same run, per stand-in scene kind: the scene planner (`planner.mode: scene`, the stand-in's own
geometry, in process) and the protocol-only planner (`mode: probe`, over the real UnrealCV client
to a stand-in subprocess: depth probe cubes, pawn `moveto` walks). Prints planned frames/s of
each, the ratio, and per planned frame: probe renders (32x32 depth views) and pawn moves.
"""

from __future__ import annotations

import _common

import argparse  # noqa: E402
import time  # noqa: E402

from annotate.actions import ActionSpec  # noqa: E402
from capture.client import EngineClient  # noqa: E402
from capture.config import ClientConfig  # noqa: E402
from capture.planner import PlannerConfig, plan_jobs  # noqa: E402
from capture.probe_planner import plan_level, plan_requests  # noqa: E402
from capture.standin.launch import StandinProcess  # noqa: E402
from _common import machine  # noqa: E402
from common.cli import add_dry_run, dry_run  # noqa: E402

KINDS = ("room-1", "corridor-2", "courtyard-3", "street-4")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=20, help="paths per scene kind")
    parser.add_argument("--frames", type=int, default=300)
    args = add_dry_run(parser).parse_args()
    if args.dry_run:
        dry_run(paths=args.paths, frames=args.frames, kinds=KINDS)
        return
    spec = ActionSpec()
    print(machine())
    print(f"{'scene':12s} {'scene f/s':>10s} {'probe f/s':>10s} {'ratio':>6s} {'renders/frame':>14s} "
          f"{'moves/frame':>12s} {'blocked':>8s}")
    for kind in KINDS:
        scene_config = PlannerConfig(scenes=(kind,), trajectories_per_scene=args.paths, frames=args.frames)
        start = time.perf_counter()
        plan_jobs(scene_config, spec)
        scene_fps = args.paths * args.frames / (time.perf_counter() - start)
        probe_config = PlannerConfig(mode="probe", scenes=(kind,), trajectories_per_scene=args.paths, frames=args.frames)
        with StandinProcess(["--scene", kind]) as engine:
            client = EngineClient(engine.host, engine.port, ClientConfig())
            client.connect()
            plan = plan_level(client, plan_requests(probe_config, spec)[0])
            client.close()
        probe_fps = plan.planned_frames / plan.seconds
        stats = plan.stats
        print(f"{kind:12s} {scene_fps:10.0f} {probe_fps:10.0f} {probe_fps / scene_fps:6.2f} "
              f"{stats['renders'] / plan.planned_frames:14.4f} {stats['moves'] / plan.planned_frames:12.3f} "
              f"{stats['blocked']:8d}")


if __name__ == "__main__":
    main()
