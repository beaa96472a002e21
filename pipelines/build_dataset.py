"""Build a dataset: capture -> annotate -> filter -> window -> augment -> shard (formats.md 2).

    python pipelines/build_dataset.py                       # the demo: stand-in scenes, out/demo
    python pipelines/build_dataset.py --config build.yaml --out DIR [--ingest ROOT] [--trajectories PATH]
                                      [--set KEY=VALUE ...] [--ray-address ADDR] [--no-progress]

Stages run as Ray actors/tasks. A re-run resumes: staged trajectories with unchanged inputs are not
captured again, a trajectory's clips are cached under DIR/.work/clips with a fingerprint of
everything they depend on, and the shards are rewritten from those caches in a seeded order, so an
interrupted build followed by a re-run gives the same bytes as one uninterrupted build.
DIR/verdicts.csv (reviewers') is honoured. Exit 0 when every input trajectory is accounted for in
DIR/stats.json (failures included), 2 on a configuration or verdicts error, 130 after Ctrl-C (a
re-run resumes).
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import sys
import time
from collections.abc import Sequence

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from common.cli import add_dry_run, dry_run, interrupted  # noqa: E402
from common.config import ConfigError  # noqa: E402
from pipelines.config import resolve_config  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build_dataset", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=pathlib.Path, help="YAML of BuildConfig (default: the demo build)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/demo"))
    parser.add_argument("--ingest", action="append", default=[], metavar="ROOT", help="pre-rendered footage root")
    parser.add_argument("--trajectories", action="append", default=[], metavar="PATH",
                        help="UE pose CSV log, or a folder of them, to replay in the stand-in scene")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray")
    parser.add_argument("--no-progress", action="store_true")
    args = add_dry_run(parser).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = resolve_config(args.config, args.overrides, args.ingest, args.trajectories)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        return dry_run(out=args.out, config=config)
    from capture.run import discover_inputs
    from common.raysession import ray_session
    from pipelines.stages import BuildError, build

    start = time.perf_counter()
    try:  # the inputs are found and named before anything starts: a clash or a missing root stops here
        inputs = discover_inputs(config.capture.sources, config.capture.actions)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with ray_session(args.ray_address, args.num_cpus):
            stats = build(config, args.out, progress=not args.no_progress, inputs=inputs)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted(args.out)
    print(summary_line(stats, time.perf_counter() - start))
    print(f"review page: {args.out / 'report' / 'index.html'}; stats: {args.out / 'stats.json'}")
    return 0


def summary_line(stats: dict, seconds: float) -> str:
    """One line for the console from stats.json's content."""
    t, f = stats["trajectories"], stats["frames"]
    failed = ", ".join(f"{stage} {n}" for stage, n in sorted(t["failed_by_stage"].items()))
    reasons = sorted(((n, r) for r, n in f["dropped_per_reason"].items() if n), reverse=True)
    dropped = ", ".join(f"{r} {n}" for n, r in reasons)
    samples = ", ".join(f"{split} {n}" for split, n in stats["samples"].items())
    return (f"{t['in']} trajectories: {t['captured']} captured, {t['cached']} cached, {t['failed']} failed"
            f"{f' ({failed})' if failed else ''}; frames: {f['kept']} kept, {f['dropped']} dropped"
            f"{f' ({dropped})' if dropped else ''}; samples: {samples} in {sum(stats['shards'].values())} shards; "
            f"{seconds:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
