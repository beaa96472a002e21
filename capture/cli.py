"""`python -m capture --config capture.yaml --out STAGING [--set KEY=VALUE ...]`

Captures (replay + planner) and ingests into STAGING, writes STAGING/capture_report.parquet and
STAGING/capture_config.yaml, and prints one line per failed trajectory and a summary. Exit 0 when
every trajectory is accounted for (failures included), 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import sys
from collections.abc import Sequence

from common.cli import add_dry_run, dry_run, interrupted
from common.config import ConfigError, dump_yaml, load_config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capture", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=pathlib.Path, help="YAML of CaptureRunConfig (capture, sources, actions)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="staging folder")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count(), help="Ray CPUs (default: all)")
    parser.add_argument("--no-progress", action="store_true")
    args = add_dry_run(parser).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from capture.run import REPORT, CaptureRunConfig, run, write_report

    try:
        config = load_config(CaptureRunConfig, args.config, args.overrides)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        return dry_run(out=args.out, config=config)
    from capture.run import discover_inputs
    from common.raysession import ray_session

    try:  # inputs found and named before Ray starts
        inputs = discover_inputs(config.sources, config.actions)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "capture_config.yaml").write_text(dump_yaml(config))
    try:
        with ray_session(num_cpus=args.num_cpus):
            outcome = run(config, args.out, progress=not args.no_progress, inputs=inputs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted(args.out)
    results = outcome.results
    report = write_report(results, args.out / REPORT)
    for skip in outcome.skipped:
        print(f"skipped: {skip.path}: {skip.reason}", file=sys.stderr)
    for r in results:
        if r.status == "failed":
            print(f"failed: {r.scene}/{r.trajectory}: {r.reason}", file=sys.stderr)
    counts = report["status"].value_counts().to_dict()
    print(f"{len(results)} trajectories: {counts.get('captured', 0)} captured, {counts.get('cached', 0)} cached, "
          f"{counts.get('failed', 0)} failed; {int(report['frames'].sum())} frames in {args.out}")
    return 0
