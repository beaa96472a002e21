"""`python -m capture.standin --port P --scene S [--width W --height H --fov F] [faults]`.

Prints `listening on HOST:PORT scene NAME` (flushed) once it accepts connections, so a parent
process launched with `--port 0` can read the port it got.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import pathlib
import sys
from collections.abc import Sequence

from capture.standin.engine import EngineConfig
from capture.standin.server import StandinServer
from common.cli import add_dry_run, dry_run
from common.config import ConfigError, load_config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capture.standin", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="port; 0 picks a free one and prints it")
    parser.add_argument("--scene", help="scene id: a seed (kind by seed) or kind-seed, e.g. street-7")
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--fov", type=float)
    parser.add_argument("--config", type=pathlib.Path, help="YAML of EngineConfig (scene, size, faults, ...)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. faults.black_frame=0.05 (repeatable)")
    parser.add_argument("--fault-log", type=pathlib.Path, help="append a JSON line per injected fault")
    parser.add_argument("--log-level", default="WARNING")
    args = add_dry_run(parser).parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s standin %(levelname)s %(message)s")

    # typed flags replace the file's and --set's values as they are (not re-parsed as YAML: `--scene 7`
    # is the scene named "7", not the integer 7)
    flags = {k: v for k, v in (("scene", args.scene), ("width", args.width), ("height", args.height),
                               ("fov", args.fov)) if v is not None}
    try:
        config = dataclasses.replace(load_config(EngineConfig, args.config, args.overrides), **flags)
        if args.dry_run:
            return dry_run(host=args.host, port=args.port, config=config)
        server = StandinServer(config, args.host, args.port, args.fault_log, exit_on_crash=True)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"listening on {server.host}:{server.port} scene {server.engine.scene.name}", flush=True)
    return server.serve_until_interrupted()
