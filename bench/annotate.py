"""Annotation throughput on one core: vectorized path vs a per-frame Python loop, same run.

    python bench/annotate.py [--poses 1000000] [--loop-transitions 20000] [--repeats 3]

Measures transitions/s of relative motion + 13-dim action binning for a trajectory that is already
validated (an `annotate.Trajectory`), then the same math as a straightforward per-frame loop over
a prefix of it (the loop would take minutes on all of it), and checks both agree there. Also
prints the cost of validating the poses and of integrating the motion back. Pinned to one core
with BLAS/OpenMP threads set to 1.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: fixes sys.path so `annotate` is the package)

_common.single_thread_env()

import argparse  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from annotate.actions import PAIRS, STATIC, ActionSpec  # noqa: E402
from annotate.annotation import annotate  # noqa: E402
from annotate.geometry import integrate  # noqa: E402
from annotate.trajectory import Trajectory  # noqa: E402
from _common import best_of, machine, pin_to_one_core  # noqa: E402
from common.cli import add_dry_run, dry_run  # noqa: E402


def synthetic_trajectory(n: int, fps: float, seed: int) -> Trajectory:
    """A smooth, human-like random walk: speeds and turn rates that cover every action bin."""
    rng = np.random.default_rng(seed)
    knots = rng.normal(size=(n // 30 + 2, 6)) * [0.6, 0.3, 1.5, 40.0, 20.0, 6.0]
    motion = np.stack([np.interp(np.arange(n - 1) / 30, np.arange(len(knots)), knots[:, k]) for k in range(6)], axis=1)
    poses = integrate(np.eye(4), motion / fps)
    return Trajectory(poses=poses, timestamps=np.arange(n) / fps, source="synthetic")


def loop_annotate(poses: np.ndarray, dt: float, spec: ActionSpec) -> tuple[np.ndarray, np.ndarray]:
    """The same math, one transition at a time, as one would first write it."""
    motion = np.empty((len(poses) - 1, 6))
    actions = np.zeros((len(poses) - 1, 13), dtype=np.float32)
    for t in range(len(poses) - 1):
        cam, nxt = poses[t, :3, :3], poses[t + 1, :3, :3]
        motion[t, :3] = cam.T @ (poses[t + 1, :3, 3] - poses[t, :3, 3])
        motion[t, 3:] = Rotation.from_matrix(cam.T @ nxt).as_euler("YXZ", degrees=True)
        for column, positive, negative in PAIRS:
            bins = spec.group(column)
            rate = motion[t, column] / dt
            level = 0
            if abs(rate) > bins.dead_zone:
                level = 1 + sum(abs(rate) > edge for edge in bins.edges)
            actions[t, positive if rate > 0 else negative] = level / bins.levels
        actions[t, STATIC] = float(not actions[t, :STATIC].any())
    return motion, actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poses", type=int, default=1_000_000)
    parser.add_argument("--loop-transitions", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = add_dry_run(parser).parse_args()
    if args.dry_run:
        dry_run(arguments=args)
        return
    pin_to_one_core()

    fps, spec = 30.0, ActionSpec()
    traj = synthetic_trajectory(args.poses, fps, seed=0)
    n = len(traj) - 1

    vec_s, result = best_of(args.repeats, lambda: annotate(traj, spec))
    check_s, _ = best_of(
        args.repeats, lambda: Trajectory(poses=traj.poses, timestamps=traj.timestamps, source="synthetic")
    )
    integ_s, back = best_of(args.repeats, lambda: integrate(traj.poses[0], result.motion))
    max_err = float(np.abs(back - traj.poses).max())

    m = min(args.loop_transitions, n)
    loop_s, (loop_motion, loop_actions) = best_of(1, lambda: loop_annotate(traj.poses[: m + 1], 1 / fps, spec))
    motion_diff = float(np.abs(loop_motion - result.motion[:m]).max())
    actions_equal = bool(np.array_equal(loop_actions, result.actions[:m]))

    print(f"machine: {machine()} (1 core used)")
    print(f"numpy {np.__version__} scipy {scipy.__version__}")
    print(f"trajectory: {len(traj):,} poses at {fps:g} fps, {n:,} transitions; best of {args.repeats}")
    active = (result.actions > 0).mean(axis=0)
    print("share of transitions per channel: " + " ".join(f"{v:.2f}" for v in active))
    print()
    print(f"{'path':<42}{'transitions':>14}{'seconds':>10}{'transitions/s':>16}")
    rows = [
        ("vectorized annotate (motion + actions)", n, vec_s),
        ("per-frame Python loop, same math", m, loop_s),
        ("  (validate poses: Trajectory record)", n, check_s),
        ("  (integrate motion back to poses)", n, integ_s),
    ]
    for name, count, seconds in rows:
        print(f"{name:<42}{count:>14,}{seconds:>10.3f}{count / seconds:>16,.0f}")
    ratio = (n / vec_s) / (m / loop_s)
    print()
    print(f"vectorized / loop: {ratio:,.0f}x   target >= 1,000,000 transitions/s/core: "
          f"{'met' if n / vec_s >= 1e6 else 'NOT met'} ({n / vec_s:,.0f})")
    print(f"loop vs vectorized on the first {m:,}: max |motion diff| {motion_diff:.1e}, actions equal: {actions_equal}")
    print(f"integrate(first, relative_motion(poses)) max |error| over {len(traj):,} poses: {max_err:.1e}")


if __name__ == "__main__":
    main()
