"""Filter quality on labelled stand-in footage: the confusion table per fault type, recall at and
above each fault's documented threshold, and the false-drop rate on clean paths.

    python bench/filter_quality.py [--per-magnitude 2] [--clean-per-scene 3] [--frames 120] [--workers 2]

Planner paths are rendered in the four stand-in scene kinds (256x144, 90 deg FOV, 30 fps, depth on):
clean ones, and ones with a single fault type at each magnitude in `filter.evaluate.FAULTS` (image
faults through the engine's fault knobs at 4% of frames, pose faults injected into the path 3 times
per trajectory). Then the filter runs with its default settings and every fault frame is looked up.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: fixes sys.path so `filter` is the package)

_common.single_thread_env()

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import pathlib  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import pandas as pd  # noqa: E402

import numpy as np  # noqa: E402

from annotate.actions import ActionSpec  # noqa: E402
from annotate.readers import ReaderConfig, read_trajectory  # noqa: E402
from capture.planner import PlannerConfig, plan_path  # noqa: E402
from capture.standin.scene import make_scene  # noqa: E402
from filter.config import FilterConfig, PoseChecks  # noqa: E402
from filter.pose_checks import pose_scores  # noqa: E402
from filter.evaluate import FAULTS, SetSpec, evaluate, make_labelled_set  # noqa: E402
from filter.reasons import CHECK_REASONS  # noqa: E402
from _common import machine  # noqa: E402
from common.cli import add_dry_run, dry_run  # noqa: E402


REAL = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "real_trajectories"


def real_jitter() -> None:
    """Jitter scores of the real trajectories in tests/data next to planner paths."""
    print("\nJitter on real trajectories vs planner paths (median / 90th percentile over frames):\n")
    print(f"{'trajectory':40} {'frames':>6} {'fps':>5} {'rotation deg/s':>16} {'translation m/s':>17}")

    def row(label: str, poses: np.ndarray, times: np.ndarray) -> None:
        s = pose_scores(poses, times, PoseChecks())
        r, t = s["jitter_rotation"], s["jitter_translation"]
        print(f"{label:40} {len(poses):>6} {1 / np.median(np.diff(times)):>5.1f} "
              f"{np.nanmedian(r):>7.3f} / {np.nanpercentile(r, 90):<7.3f} {np.nanmedian(t):>7.4f} / {np.nanpercentile(t, 90):<7.4f}")

    for path in sorted(REAL.glob("*")):
        if path.suffix in (".tum", ".kitti", ".txt"):
            config = ReaderConfig(duplicate_times="keep_first", source_fps=10.0 if path.suffix == ".kitti" else None)
            traj = read_trajectory(path, config=config)
            row(path.name, traj.poses, traj.timestamps)
    for k, scene in enumerate(("room-1", "corridor-2", "courtyard-3", "street-4")):
        planned = plan_path(make_scene(scene), PlannerConfig(frames=300), ActionSpec(), k)
        row(f"planner {scene}", planned.poses, planned.times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-magnitude", type=int, default=2)
    parser.add_argument("--clean-per-scene", type=int, default=3)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--faults", nargs="*", default=list(FAULTS))
    args = add_dry_run(parser).parse_args()
    if args.dry_run:
        dry_run(arguments=args)
        return
    print(machine())
    spec = SetSpec(per_magnitude=args.per_magnitude, clean_per_scene=args.clean_per_scene, frames=args.frames,
                   faults=tuple(args.faults))
    with tempfile.TemporaryDirectory() as tmp, multiprocessing.Pool(args.workers) as pool:
        start = time.perf_counter()
        labelled = make_labelled_set(pathlib.Path(tmp), spec, pool.imap)
        rendered = time.perf_counter()
        confusion, summary = evaluate(labelled, FilterConfig(), pool.imap)
        done = time.perf_counter()
    frames = int(confusion["frames"].sum())
    print(f"{len(labelled)} trajectories, {frames} frames: rendered in {rendered - start:.0f} s, "
          f"filtered in {done - rendered:.0f} s ({args.workers} workers)\n")
    columns = [r.value for r in CHECK_REASONS if confusion[r.value].sum() > 0]
    table = confusion[["fault", "magnitude", "fault_frames", "detected", "dropped", *columns]]
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.max_rows", 200):
        print("Confusion: rows = injected fault and magnitude; fault_frames = frames carrying it (on clean rows:")
        print("all frames); detected = fault frames flagged with one of its reasons; dropped = fault frames dropped")
        print("for any reason; then how many fault frames (clean rows: all frames) each check flagged.\n")
        print(table.to_string(index=False))
        print("\nRecall at or above the documented threshold (and below it, for information):\n")
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    failing = summary[(summary["fault"] != "clean") & ~(summary["recall"] >= 0.95)]
    clean = summary[summary["fault"] == "clean"]
    print(f"\nfaults under 0.95 recall: {', '.join(failing['fault']) or 'none'}; "
          f"clean false-drop rate: {float(clean['false_drop_rate'].iloc[0]):.4f}" if len(clean) else "")
    real_jitter()


if __name__ == "__main__":
    main()
