"""`python -m annotate <pose file> [--format F] [--fps F] --out actions.parquet` (formats.md section 6)."""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from annotate.annotation import annotate, write_parquet
from annotate.config import AnnotateConfig
from annotate.readers import PoseFormat, read_trajectory
from annotate.resample import Interpolation, resample
from annotate.trajectory import TrajectoryError
from common.cli import add_dry_run, dry_run
from common.config import ConfigError, load_config, to_dict


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m annotate",
        description="Annotate a camera pose file with per-transition relative motion and 13-dim actions.",
    )
    parser.add_argument("path", type=pathlib.Path, help="pose file (UE CSV, TUM, KITTI or RealEstate10K)")
    parser.add_argument(
        "--format", choices=[f.value for f in PoseFormat], help="pose format (default: by extension, then content)"
    )
    parser.add_argument("--fps", type=float, help="resample to this frame rate before annotating")
    parser.add_argument("--method", choices=[m.value for m in Interpolation], help="resampling interpolation")
    parser.add_argument("--source-fps", type=float, help="frame rate of a pose file without times (KITTI)")
    parser.add_argument("--times", type=pathlib.Path, help="KITTI times file (one time in seconds per line)")
    parser.add_argument("--config", type=pathlib.Path, help="YAML with the annotate settings (AnnotateConfig)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a setting, e.g. actions.rotation.dead_zone=3 (repeatable)",
    )
    parser.add_argument("--out", type=pathlib.Path, required=True, help="output parquet file")
    return add_dry_run(parser)


def resolve_config(args: argparse.Namespace) -> AnnotateConfig:
    """Config file, then --set overrides, then the dedicated flags (which win)."""
    flags = []
    if args.fps is not None:
        flags.append(f"resample.fps={args.fps!r}")
    if args.method is not None:
        flags.append(f"resample.method={args.method}")
    if args.source_fps is not None:
        flags.append(f"reader.source_fps={args.source_fps!r}")
    return load_config(AnnotateConfig, args.config, [*args.overrides, *flags])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = resolve_config(args)
        if args.dry_run:
            return dry_run(path=args.path, out=args.out, config=config)
        traj = read_trajectory(args.path, args.format, config.reader, times=args.times)
        if config.resample.fps is not None:
            traj = resample(traj, config.resample.fps, config.resample.method)
        result = annotate(traj, config.actions)
        write_parquet(
            result,
            args.out,
            {
                "source": str(args.path),
                "format": traj.meta["format"],
                "dropped": traj.meta.get("dropped", []),
                "config": to_dict(config),
            },
        )
    except (TrajectoryError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = result.counts()
    active = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
    duration = traj.timestamps[-1] - traj.timestamps[0]
    print(f"{args.path}: {len(traj)} poses over {duration:.2f} s -> {len(result)} transitions")
    dropped = traj.meta.get("dropped", [])
    if dropped:
        where = ", ".join(str(d["line"]) for d in dropped[:10]) + (", ..." if len(dropped) > 10 else "")
        print(f"dropped {len(dropped)} row(s) repeating the previous time (lines {where})")
    print(f"active: {active}")
    print(f"wrote {args.out}")
    return 0
