"""The stand-in as a packaged Unreal Engine Linux game: same layout, same command line.

    <root>/<Name>.sh                       runs <Name>/Binaries/Linux/<Name> <Name> "$@", as UE's does
    <root>/<Name>/Binaries/Linux/<Name>    the game: `python -m capture.standin.packaged "$@"`

`write_packaged_game(root)` lays it out. The command line is read as UE and the UnrealCV plugin
read it (docs/unrealcv.md):
- the map is the first word not starting with `-` after the project's own name (`/Game/Maps/X`
  or `X`; a stand-in scene id or level name such as `room_0002`);
- `UnrealCVPort`, `cvport`, `UnrealCVWidth`, `UnrealCVHeight`, `UnrealCVFOV` are found anywhere in
  the line, case-insensitively, and their value is parsed from the characters right after the
  name, as UE4's `FParse::Value` does: `-UnrealCVPort 9001` is 9001, but `-UnrealCVPort=9001`
  is 0 (the `=` is not a digit) and the game listens on a port the OS picks. `cvport` is also a
  substring of `UnrealCVPort`, so either spelling sets the port; `UnrealCVPort` wins;
- `-RenderOffScreen`, `-unattended`, `-nosound`, `-graphicsadapter=N` and the rest are accepted
  and ignored, as a game ignores flags it has no use for.
It logs UE-style lines (`LogUnrealCV: Warning: Overriding listening port to 9001`) and serves until
killed. For tests of engine supervision, `RELIC_PACKAGED_FAULT` makes it misbehave as real builds
do: `crash_at_start` (exit 1 before listening), `hang_at_start` (never listen), `ignore_port`
(listen on another port), `exit_after=N` (die on request N + 1, code 3); `-RelicFault=...` on the
command line does the same (it reaches instances that Ray workers launch, where a variable set in
the test does not). `-RelicSet=KEY=VALUE` (repeatable) sets any stand-in engine setting, as
`python -m capture.standin --set KEY=VALUE` does (e.g. `-RelicSet=faults.black_frame=0.05`); it is
applied last, over the plugin's size and FOV overrides. The capture pool launches its stand-ins
this way, through the same supervision as a real game (capture/game.py).
"""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import socket
import stat
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_PORT = 9000  # unrealcv.ini's default
FAULT_ENV = "RELIC_PACKAGED_FAULT"
FAULT_FLAG = "-RelicFault"  # the same on the command line: -RelicFault=hang_at_start
SET_FLAG = "-RelicSet"  # an engine setting: -RelicSet=faults.black_frame=0.05
NAME_ENV = "RELIC_PACKAGED_NAME"  # the project's name, which the .sh passes as the first word
ROOT = pathlib.Path(__file__).resolve().parents[2]


def fparse_number(cmdline: str, match: str) -> float | None:
    """UE4's FParse::Value for a number: None when `match` is not in the line (case-insensitive);
    otherwise what Atoi/Atof make of the characters right after it (leading spaces skipped; 0 when
    no number follows, e.g. after `=`)."""
    at = cmdline.lower().find(match.lower())
    if at < 0:
        return None
    number = re.match(r"\s*([-+]?(\d+\.?\d*|\.\d+))", cmdline[at + len(match):])
    return float(number.group(1)) if number else 0.0


@dataclass(frozen=True)
class GameCommandLine:
    project: str
    map: str | None
    port: int
    width: int | None
    height: int | None
    fov: float | None
    flags: tuple[str, ...]  # every `-flag`, as given

    @classmethod
    def parse(cls, project: str, argv: Sequence[str]) -> GameCommandLine:
        words = list(argv)
        if words and words[0] == project:  # the .sh passes the project's name first
            words = words[1:]
        line = " ".join(words)
        maps = [w for w in words if not w.startswith("-")]
        port = fparse_number(line, "UnrealCVPort")
        if port is None:
            port = fparse_number(line, "cvport")
        width, height, fov = (fparse_number(line, k) for k in ("UnrealCVWidth", "UnrealCVHeight", "UnrealCVFOV"))
        return cls(project, maps[0].rstrip("/").rsplit("/", 1)[-1] if maps else None,
                   DEFAULT_PORT if port is None else int(port), None if width is None else int(width),
                   None if height is None else int(height), fov, tuple(w for w in words if w.startswith("-")))


def main(argv: Sequence[str] | None = None) -> int:
    from capture.standin.engine import EngineConfig, FaultConfig
    from capture.standin.scene import parse_scene_spec
    from capture.standin.server import StandinServer
    from common.config import ConfigError, apply_overrides, from_dict, to_dict

    args = list(sys.argv[1:] if argv is None else argv)
    game = GameCommandLine.parse(os.environ.get(NAME_ENV, "RelicStandin"), args)
    flagged = [f.split("=", 1)[1] for f in game.flags if f.lower().startswith(FAULT_FLAG.lower() + "=")]
    sets = [f.split("=", 1)[1] for f in game.flags if f.lower().startswith(SET_FLAG.lower() + "=")]
    fault = flagged[-1] if flagged else os.environ.get(FAULT_ENV, "")
    print(f"LogInit: Command Line: {shlex.join(args)}", flush=True)
    if fault == "crash_at_start":
        print("LogCore: Error: Fatal error: injected crash at start", flush=True)
        return 1
    if fault == "hang_at_start":
        while True:
            time.sleep(60)
    for name, value in (("listening port", game.port), ("width", game.width), ("height", game.height),
                        ("FOV", game.fov)):
        if value is not None:
            print(f"LogUnrealCV: Warning: Overriding {name} to {value}", flush=True)
    settings = {k: v for k, v in (("width", game.width), ("height", game.height), ("fov", game.fov)) if v}
    level = game.map or "0"
    try:
        parse_scene_spec(level)
    except ValueError:  # as UE: the map is not found, the game's default map opens instead
        print(f"LogLoad: Error: Failed to load map '{level}', opening the default map", flush=True)
        level = "0"
    faults = FaultConfig(crash_after=int(fault.split("=", 1)[1])) if fault.startswith("exit_after=") else FaultConfig()
    try:
        config = EngineConfig(scene=level, faults=faults, **settings)  # type: ignore[arg-type]
        if sets:
            config = from_dict(EngineConfig, apply_overrides(to_dict(config), sets), source=SET_FLAG)
        port = 0 if fault == "ignore_port" else game.port
        server = StandinServer(config, "127.0.0.1", port, exit_on_crash=True)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"LogUnrealCV: Warning: Failed to start network server: {exc}", flush=True)
        return 1
    print(f"LogUnrealCV: Warning: Start listening on {server.port}", flush=True)
    print(f"LogLoad: Took 0.1 seconds to LoadMap({server.engine.scene.name})", flush=True)
    return server.serve_until_interrupted()


def write_packaged_game(root: str | pathlib.Path, name: str = "RelicStandin") -> pathlib.Path:
    """Lay out the stand-in as a packaged Linux game under `root`; returns the `.sh` to launch."""
    root = pathlib.Path(root)
    binary = root / name / "Binaries" / "Linux" / name
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text("#!/bin/sh\n"
                      f"{NAME_ENV}={shlex.quote(name)} PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}} "
                      f"exec {shlex.quote(sys.executable)} -c "
                      f"{shlex.quote('import sys; from capture.standin.packaged import main; sys.exit(main())')} "
                      '"$@"\n')
    script = root / f"{name}.sh"
    script.write_text('#!/bin/sh\nUE_PROJECT_ROOT=$(dirname "$0")\n'
                      f'exec "$UE_PROJECT_ROOT/{name}/Binaries/Linux/{name}" {name} "$@"\n')
    for path in (binary, script):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on the port (a probe: connects and closes at once)."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


if __name__ == "__main__":
    sys.exit(main())
