"""`python -m filter STAGING --out OUT [--config filter.yaml] [--set KEY=VALUE ...] [--verdicts FILE]`

Filters every trajectory staged in STAGING and writes OUT/report/ (filter.parquet, frames.parquet,
index.html) and OUT/filter_config.yaml. Reviewers' verdicts are read from --verdicts, or from
OUT/verdicts.csv when it exists. Exit 0 when every trajectory is accounted for (failures included),
2 on a configuration or verdicts error.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import pathlib
import sys
from collections.abc import Sequence

from common.cli import add_dry_run, dry_run, interrupted
from common.config import ConfigError, dump_yaml, load_config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m filter", description=__doc__.splitlines()[0])
    parser.add_argument("staging", type=pathlib.Path, help="staging folder (capture's output)")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="output folder (report/ goes inside)")
    parser.add_argument("--config", type=pathlib.Path, help="YAML of FilterConfig")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--verdicts", type=pathlib.Path, help="verdicts.csv (default: OUT/verdicts.csv if present)")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count(), help="Ray CPUs (default: all)")
    parser.add_argument("--no-progress", action="store_true")
    args = add_dry_run(parser).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from filter.config import FilterConfig
    from filter.report import write_report
    from filter.run import filter_staging, totals
    from filter.verdicts import VerdictError, read_verdicts

    try:
        config = load_config(FilterConfig, args.config, args.overrides)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        return dry_run(staging=args.staging, out=args.out, config=config)
    verdicts_path = args.verdicts or (args.out / "verdicts.csv")
    verdicts = {}
    if args.verdicts is not None or verdicts_path.is_file():
        try:
            verdicts = read_verdicts(verdicts_path)
        except (VerdictError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    from common.raymap import ray_map
    from common.raysession import ray_session

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "filter_config.yaml").write_text(dump_yaml(config))
    try:
        with ray_session(num_cpus=args.num_cpus):
            run = filter_staging(args.staging, config, verdicts, str(verdicts_path),
                                 functools.partial(ray_map, progress=not args.no_progress, desc="filter"))
    except ValueError as exc:  # a verdict for an unknown segment
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted(args.out)
    report = write_report(run, args.out / "report")
    for failed in run.failed:
        print(f"failed: {failed.scene}/{failed.trajectory}: {failed.reason}", file=sys.stderr)
    stats = totals(run)
    print(json.dumps(stats, indent=1))
    print(f"report: {report / 'index.html'}")
    return 0
