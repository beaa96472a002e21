"""Filter throughput on one core, next to the cost of decoding the same frames.

    python bench/filter.py [--frames 150] [--trajectories 2] [--sizes 256x144 640x480] [--repeats 2]

Renders planner paths in stand-in scenes into a staging area (PNG frames, depth on), then, pinned to
one core with BLAS/OpenMP threads at 1: (a) decodes every frame with cv2.imread (the baseline),
(b) runs the whole filter (decode + pose and image checks + segments). Prints frames/s of each,
the filter's own cost per frame without decoding, and the ratio to decoding alone.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: fixes sys.path so `filter` is the package)

_common.single_thread_env()

import argparse  # noqa: E402
import pathlib  # noqa: E402
import tempfile  # noqa: E402

import cv2  # noqa: E402

from annotate.actions import ActionSpec  # noqa: E402
from capture.planner import PlannerConfig, plan_path  # noqa: E402
from capture.standin.footage import render_footage  # noqa: E402
from capture.standin.scene import make_scene  # noqa: E402
from filter.config import FilterConfig  # noqa: E402
from capture.staging import frame_files  # noqa: E402
from filter.stage import filter_trajectory  # noqa: E402
from _common import best_of, machine, pin_to_one_core  # noqa: E402
from common.cli import add_dry_run, dry_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--trajectories", type=int, default=2)
    parser.add_argument("--sizes", nargs="*", default=["256x144", "640x480"])
    parser.add_argument("--repeats", type=int, default=2)
    args = add_dry_run(parser).parse_args()
    if args.dry_run:
        dry_run(arguments=args)
        return
    print(machine())
    pin_to_one_core()
    config = FilterConfig()
    print(f"one core; {args.trajectories} trajectories x {args.frames} frames per size, PNG; best of {args.repeats}\n")
    print(f"{'size':>9} {'decode only':>14} {'filter (all)':>14} {'filter minus decode':>20} {'filter / decode':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            width, height = (int(v) for v in size.split("x"))
            folders = []
            for k in range(args.trajectories):
                scene = ("room-1", "street-4", "courtyard-3", "corridor-2")[k % 4]
                path = plan_path(make_scene(scene), PlannerConfig(frames=args.frames), ActionSpec(), k)
                folder, _ = render_footage(scene, path.poses, path.times, pathlib.Path(tmp) / size, f"t{k}", width,
                                           height, depth=True)
                folders.append(folder)
            n = args.frames * len(folders)
            files = [f for folder in folders for f in frame_files(folder, args.frames)]
            decode_s, _ = best_of(args.repeats, lambda: [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files])
            filter_s, results = best_of(args.repeats, lambda: [filter_trajectory(f, config) for f in folders])
            own = filter_s - sum(r.decode_seconds for r in results)
            print(f"{size:>9} {n / decode_s:>10.0f} f/s {n / filter_s:>10.0f} f/s {1000 * own / n:>14.2f} ms/frame "
                  f"{filter_s / decode_s:>15.2f}x")


if __name__ == "__main__":
    main()
