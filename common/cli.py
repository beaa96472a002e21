"""What every command line of the project shares: `--dry-run`.

`--dry-run` checks the arguments and resolves the configuration as the real run would (defaults,
then `--config`, then `--set` and the dedicated flags), prints the result as YAML and stops before
any input is read or output written. A data engineer checks a long build's settings with it; the
README test runs every documented command through it, so a documented flag the code refuses fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
from typing import Any

import yaml

from common.config import to_dict

DRY_RUN_HELP = ("check the arguments, resolve the configuration, print it and stop "
                "(nothing is read or written)")


def add_dry_run(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)
    return parser


def dry_run(**resolved: Any) -> int:
    """Print what a run would use (config dataclasses, parsed arguments, plain values) as YAML; exit 0."""
    print(yaml.safe_dump({name: _plain(value) for name, value in resolved.items()}, sort_keys=False), end="")
    return 0


def _plain(value: Any) -> Any:
    if isinstance(value, argparse.Namespace):
        return {k: _plain(v) for k, v in vars(value).items() if k != "dry_run"}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def interrupted(out: Any) -> int:
    """Ctrl-C during a run: one line saying nothing done is lost, instead of a traceback; exit 130."""
    print(f"interrupted: what was staged and cached under {out} is kept; run the same command again to resume",
          file=sys.stderr)
    return 130
